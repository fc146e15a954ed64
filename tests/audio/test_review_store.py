"""Tests of ``unetseg.audio.review_store``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import make_review
from unetseg.audio.review import Review
from unetseg.audio.review_store import review_annotations
from unetseg.core.errors import UnetsegError


def test_review_annotations_make_a_dataset(tmp_path: Path) -> None:
    from unetseg.audio.datasets import build_annotated_dataset
    from unetseg.audio.spectrogram import SpectrogramConfig

    review = make_review(tmp_path)
    review.change("e2", {"state": "deleted"})
    reviewed = review_annotations(tmp_path / "reviews")
    assert [len(v) for v in reviewed.events.values()] == [2]
    built = build_annotated_dataset(list(reviewed.events), reviewed.events, tmp_path / "data",
                                    SpectrogramConfig.from_dict(reviewed.spectrogram))
    assert sum(built.windows.values()) > 0 and built.classes == ["background", "call"]
    (review.folder / "review.json").write_text(json.dumps({**review.data, "recording": "gone.wav"}))
    with pytest.raises(UnetsegError, match="gone.wav is missing"):
        review_annotations(tmp_path / "reviews")


def test_two_stores_on_one_folder_keep_every_edit(tmp_path: Path) -> None:
    """Two servers (two ReviewStores, as two processes have) on one review folder: every edit is kept."""
    from concurrent.futures import ThreadPoolExecutor

    from unetseg.audio.review_store import ReviewStore

    review = make_review(tmp_path, events=40)
    stores = [ReviewStore(tmp_path / "reviews"), ReviewStore(tmp_path / "reviews")]
    ids = [e["id"] for e in review.events]

    def edit(k: int) -> bool:
        store = stores[k % 2]
        with store.lock(review.name):
            return store.load(review.name).change(ids[k], {"label": f"w{k}"}).overwrote

    with ThreadPoolExecutor(8) as pool:
        assert not any(pool.map(edit, range(len(ids))))
    final = {e["id"]: e["label"] for e in Review.load(review.folder).events}
    assert final == {i: f"w{k}" for k, i in enumerate(ids)}


_EDITOR = """
import sys
from unetseg.audio.review_store import ReviewStore
store = ReviewStore(sys.argv[1])
lost = 0
for k, event_id in enumerate(sys.argv[3].split(",")):
    with store.lock(sys.argv[2]):
        lost += store.load(sys.argv[2]).change(event_id, {"label": f"{sys.argv[4]}{k}"}).overwrote
print(lost)
"""


@pytest.mark.slow
def test_two_processes_on_one_review_keep_all_80_edits(tmp_path: Path) -> None:
    """Two processes (as two ``serve --review R``) edit 80 distinct events of one review at once: the file
    lock keeps every edit and none says ``overwrote``."""
    import subprocess
    import sys

    review = make_review(tmp_path, events=80)
    ids = [e["id"] for e in review.events]
    halves = {"a": ids[0::2], "b": ids[1::2]}
    procs = [subprocess.Popen([sys.executable, "-c", _EDITOR, str(tmp_path / "reviews"), review.name,
                               ",".join(part), tag], stdout=subprocess.PIPE, text=True)
             for tag, part in halves.items()]
    assert [p.communicate(timeout=120)[0].strip() for p in procs] == ["0", "0"]
    final = {e["id"]: e["label"] for e in Review.load(review.folder).events}
    want = {i: f"{tag}{k}" for tag, part in halves.items() for k, i in enumerate(part)}
    assert final == want


def test_a_review_trains_from_the_model_that_made_it_while_that_model_is_unchanged(tmp_path: Path) -> None:
    from tests.fixtures import audio_model, write_wav
    from unetseg.audio.annotations import Event
    from unetseg.audio.review_store import create_review, reviewed_model
    from unetseg.models.modelfile import load_model

    model = audio_model(tmp_path)
    meta = {"name": "birds", "sha256": load_model(model).digest, "path": str(model)}
    create_review(tmp_path / "reviews", "song", write_wav(tmp_path / "song.wav"), [Event(0.2, 0.5, None, None, "bird")],
                  meta, {"sample_rate": 22050}, ["background", "bird"])
    assert reviewed_model(tmp_path / "reviews") == model
    audio_model(tmp_path, bias=1.0)  # the same file, other weights: not the model that made the review
    assert reviewed_model(tmp_path / "reviews") is None
    model.unlink()
    assert reviewed_model(tmp_path / "reviews") is None
