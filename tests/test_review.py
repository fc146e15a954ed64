"""Review folders and the ``/reviews`` API: events corrected, kept on disk, exported and read back as
annotations; bad requests get one line; nothing outside the review folder can be reached."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from unetseg.audio.annotations import Event, read_annotations
from unetseg.audio.review import Review
from unetseg.audio.review_store import create_review, review_annotations
from unetseg.core.errors import UnetsegError

from .test_serve import audio_model, wav_bytes


def _wav(path: Path, seconds: float = 3.0, sr: int = 22050) -> Path:
    path.write_bytes(wav_bytes(seconds, sr))
    return path


def _review(tmp: Path, events: int = 0) -> Review:
    """A review of a 3 s song: three events, or ``events`` evenly spread ones."""
    events = [Event(0.2, 0.5, 2000.0, 4000.0, "bird", 0.9), Event(1.0, 1.4, 2500.0, 3500.0, "bird", 0.7),
              Event(2.0, 2.3, None, None, "bird", 0.6)] if not events else \
        [Event(k * 2.9 / events, k * 2.9 / events + 0.05, None, None, "bird", 0.5) for k in range(events)]
    return create_review(tmp / "reviews", "song", _wav(tmp / "song.wav"), events, {"name": "m"},
                         {"sample_rate": 22050}, ["background", "bird"])


def test_a_review_keeps_states_and_exports_the_corrected_table(tmp_path: Path) -> None:
    review = _review(tmp_path)
    assert review.folder == tmp_path / "reviews" / "song"
    assert [e["state"] for e in review.events] == ["unreviewed"] * 3
    change = review.change("e1", {"begin": 0.25})
    assert change.event["state"] == "corrected" and change.event["detected"]["begin"] == 0.2
    assert not change.overwrote
    review.change("e2", {"state": "deleted"})
    added = review.add({"begin": 2.5, "end": 2.8, "low": 1000.0, "high": 2000.0, "label": "frog"})
    assert added.event["state"] == "added" and added.event["id"] == "e4"
    # a writer that saw an older revision of e1 still wins, and is told so
    assert review.change("e1", {"label": "wren"}, seen=0).overwrote
    again = Review.load(review.folder)  # every change is on disk
    assert again.counts() == {"unreviewed": 1, "accepted": 0, "corrected": 1, "added": 1, "deleted": 1}
    table = read_annotations(review.folder / "song.selections.txt")
    assert [(e.begin, e.label) for e in table] == [(0.25, "wren"), (2.0, "bird"), (2.5, "frog")]
    raven = again.export("raven", deleted=True).splitlines()
    assert raven[0].endswith("\tReview") and [r.split("\t")[-1] for r in raven[1:]] == [
        "corrected", "deleted", "unreviewed", "added"]
    assert len(read_annotations_text(again.export("raven", deleted=True))) == 3  # deleted rows are not read
    csv = again.export("csv").splitlines()
    assert csv[0].endswith(",review") and csv[1].endswith(",corrected")
    assert [e.label for e in again.annotations(reviewed_only=True)] == ["wren", "frog"]
    # a second review of the same name is a new folder: nothing a person made is replaced
    assert _review(tmp_path).folder.name == "song-2"


def read_annotations_text(text: str) -> list[Event]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.selections.txt"
        path.write_text(text)
        return read_annotations(path)


def test_bad_changes_are_refused_with_one_line(tmp_path: Path) -> None:
    review = _review(tmp_path)
    for fields, words in [({"begin": 2.0, "end": 1.0}, "not a span inside"), ({"end": 99.0}, "not a span inside"),
                          ({"low": 5000.0}, "band"), ({"low": None}, "both low and high"),
                          ({"high": 20000.0}, "band"), ({"label": "a\tb"}, "label"),
                          ({"state": "maybe"}, "state"), ({"colour": 1}, "unknown event field")]:
        with pytest.raises(UnetsegError, match=words) as e:
            review.change("e1", fields)
        assert "\n" not in str(e.value)
    assert Review.load(review.folder).events[0]["state"] == "unreviewed"  # nothing was saved
    (review.folder / "review.json").write_text("{")
    with pytest.raises(UnetsegError, match="review.json: not a review file"):
        Review.load(review.folder)


def test_review_annotations_make_a_dataset(tmp_path: Path) -> None:
    from unetseg.audio.datasets import build_annotated_dataset
    from unetseg.audio.spectrogram import SpectrogramConfig

    review = _review(tmp_path)
    review.change("e2", {"state": "deleted"})
    reviewed = review_annotations(tmp_path / "reviews")
    assert [len(v) for v in reviewed.events.values()] == [2]
    built = build_annotated_dataset(list(reviewed.events), reviewed.events, tmp_path / "data",
                                    SpectrogramConfig.from_dict(reviewed.spectrogram))
    assert sum(built.windows.values()) > 0 and built.classes == ["background", "call"]
    (review.folder / "review.json").write_text(json.dumps({**review.data, "recording": "gone.wav"}))
    with pytest.raises(UnetsegError, match="gone.wav is missing"):
        review_annotations(tmp_path / "reviews")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    from unetseg.serve import ServeOptions, create_app, load_models

    tmp = tmp_path_factory.mktemp("reviews")
    options = ServeOptions(backend="torch", review=tmp / "reviews")
    with TestClient(create_app(load_models([audio_model(tmp, bias=3.0)], options), options)) as c:
        yield c


def test_upload_review_edit_and_export_through_the_api(served: TestClient) -> None:
    c = served
    assert c.get("/health").json()["reviews"] == "kept"
    paths = c.get("/openapi.json").json()["paths"]  # the API under the page is documented at /docs
    assert set(paths["/reviews/{name}/events/{event_id}"]) == {"patch", "delete"}
    assert {"/reviews", "/reviews/{name}", "/reviews/{name}/tile", "/reviews/{name}/audio",
            "/reviews/{name}/export", "/reviews/{name}/events"} <= set(paths)
    assert c.get("/docs").status_code == 200
    r = c.post("/reviews?name=my%20song.wav", content=wav_bytes(3.0))
    assert r.status_code == 201, r.text
    doc = r.json()
    name = doc["name"]
    assert name == "my_song" and doc["events"] and doc["row_hz"][0] > doc["row_hz"][-1]
    first = doc["events"][0]
    assert any(row["name"] == name for row in c.get("/reviews").json())
    r = c.patch(f"/reviews/{name}/events/{first['id']}", json={"begin": 0.1, "end": 0.6, "low": 1000, "high": 5000,
                                                            "label": "wren", "seen": first["revision"]})
    assert r.status_code == 200 and r.json()["event"]["state"] == "corrected" and not r.json()["overwrote"]
    stale = c.patch(f"/reviews/{name}/events/{first['id']}", json={"state": "accepted", "seen": first["revision"]})
    assert stale.json()["overwrote"]  # another tab changed it since: last write wins, and says so
    r = c.post(f"/reviews/{name}/events", json={"begin": 2.0, "end": 2.5, "low": 500, "high": 900, "label": "frog"})
    assert r.status_code == 200 and r.json()["event"]["state"] == "added"
    frog = r.json()["event"]["id"]
    assert c.delete(f"/reviews/{name}/events/{frog}").json()["event"]["state"] == "deleted"
    table = c.get(f"/reviews/{name}/export?format=raven")
    assert table.status_code == 200 and "attachment" in table.headers["content-disposition"]
    rows = [line.split("\t") for line in table.text.splitlines()]
    assert rows[0][-1] == "Review" and [rows[1][7], rows[1][-1]] == ["wren", "accepted"]
    assert "deleted" not in table.text and "deleted" in c.get(f"/reviews/{name}/export?deleted=true").text
    tile = c.get(f"/reviews/{name}/tile?begin=0&seconds=2&width=300")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    from PIL import Image

    picture = np.asarray(Image.open(io.BytesIO(tile.content)))
    assert picture.shape == (len(doc["row_hz"]), 300) and picture.max() > 0
    late = np.asarray(Image.open(io.BytesIO(c.get(f"/reviews/{name}/tile?begin=2&seconds=2&width=300").content)))
    assert late[:, 160:].max() == 0  # past the end of the 3 s recording: black
    clip = c.get(f"/reviews/{name}/audio?begin=0.5&end=1.5&low=2000&high=4000")
    y, sr = sf.read(io.BytesIO(clip.content))
    assert clip.status_code == 200 and sr == 22050 and len(y) == 22050
    assert c.get(f"/reviews/{name}").json()["revision"] >= 4


@pytest.mark.parametrize("method,path,body,status,words", [
    ("get", "/reviews/nope", None, 404, "no review named 'nope'"),
    ("get", "/reviews/..%2F..%2Fetc", None, 404, None),
    ("get", "/reviews/%2E%2E", None, 400, "not a plain name"),
    ("get", "/reviews/.hidden", None, 400, "not a plain name"),
    ("get", "/reviews/song/tile?begin=-1&seconds=1", None, 422, "begin"),
    ("get", "/reviews/song/tile?begin=0&seconds=99999", None, 422, "seconds"),
    ("get", "/reviews/song/tile?begin=50&seconds=1", None, 400, "past the recording's end"),
    ("get", "/reviews/song/audio?begin=1&end=1", None, 400, "a clip must last"),
    ("get", "/reviews/song/audio?begin=0&end=1&low=3000&high=2000", None, 400, "band"),
    ("get", "/reviews/song/export?format=xls", None, 422, "format"),
    ("patch", "/reviews/song/events/e1", {"begin": "x"}, 422, "begin"),
    ("patch", "/reviews/song/events/e1", {"path": "/etc/passwd"}, 422, "path"),
    ("patch", "/reviews/song/events/e99", {"state": "accepted"}, 404, "no event 'e99'"),
    ("patch", "/reviews/song/events/e1", {"begin": 5.0, "end": 4.0}, 400, "not a span inside"),
    ("post", "/reviews/song/events", {"begin": 1.0}, 422, "end"),
    ("delete", "/reviews/song/events/e1?seen=-1", None, 422, "seen"),
    ("post", "/reviews?name=x.wav", b"junk", 400, "x.wav: not a readable audio file"),
])
def test_bad_review_requests_get_one_line(served: TestClient, method: str, path: str, body: object, status: int,
                                          words: str | None) -> None:
    c = served
    if not any(r["name"] == "song" for r in c.get("/reviews").json()):
        assert c.post("/reviews?name=song.wav", content=wav_bytes(3.0)).status_code == 201
    kwargs = {"json": body} if isinstance(body, dict) else {"content": body} if body else {}
    r = getattr(c, method)(path, **kwargs) if method != "delete" else c.delete(path)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "/tmp" not in detail
    if words:
        assert words in detail


def test_no_request_reaches_outside_the_review_folder(served: TestClient, tmp_path: Path) -> None:
    c = served
    root = c.app.state.reviews.root
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "review.json").write_text("{}")
    (root / "link").symlink_to(outside)  # a link inside pointing out is refused too
    for name in ["link", "..", "../secret", "%2e%2e%2fsecret", str(outside)]:
        r = c.get(f"/reviews/{name}")
        page = r.headers["content-type"].startswith("text/html")  # '..' is normalised to the page itself
        assert r.status_code in (400, 404) or page, (name, r.status_code)
    assert "link" not in [row["name"] for row in c.get("/reviews").json()]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert c.post("/reviews?name=../../evil.wav", content=wav_bytes(1.0)).status_code == 201
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert all(p.parent == root for p in root.iterdir())


def test_detect_review_then_dataset_from_the_review(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from unetseg.cli import main

    model = audio_model(tmp_path, bias=3.0)
    rec = _wav(tmp_path / "rec.wav", 4.0)
    assert main(["audio", "detect", "--model", str(model), "--input", str(rec), "--output", str(tmp_path / "out"),
                 "--review", "--backend", "torch"]) == 0
    folder = tmp_path / "out" / "review" / "rec"
    review = Review.load(folder)
    # the recording is a file inside the review (a hard link: no copy on one disk), its source recorded
    assert review.recording == folder / "rec.wav" and review.recording.read_bytes() == rec.read_bytes()
    assert review.data["source"] == str(rec.resolve()) and review.events
    review.change(review.events[0]["id"], {"state": "accepted"})
    # a second detect into the same output keeps the person's review
    assert main(["audio", "detect", "--model", str(model), "--input", str(rec), "--output", str(tmp_path / "out"),
                 "--review", "--overwrite", "--backend", "torch"]) == 0
    assert Review.load(folder).counts()["accepted"] == 1
    assert main(["audio", "dataset", "--review", str(tmp_path / "out" / "review"), "--output",
                 str(tmp_path / "data"), "--window", "64", "--overlap", "0"]) == 0
    assert any((tmp_path / "data" / "train" / "masks").iterdir())
    from unetseg.cli.images import _dataset_of_reviews
    from unetseg.core.config import Config

    cfg = Config()
    cfg.train.runs_dir = str(tmp_path / "runs")
    data = _dataset_of_reviews(str(tmp_path / "out" / "review"), {}, cfg)  # what train --data does with a review
    assert data == str(tmp_path / "runs" / "out-review-data" / "dataset") and cfg.train.name == "out-review"
    assert _dataset_of_reviews(str(tmp_path / "data"), {}, cfg) == str(tmp_path / "data")  # not a review
    assert main(["audio", "dataset", "--output", str(tmp_path / "d2")]) != 0
    assert "error: give --audio (with --annotations) or --review" in capsys.readouterr().err
    assert not (tmp_path / "d2").exists()


def test_sf_reads_clip(tmp_path: Path) -> None:
    """A clip is read from its span only, at the file's own rate, and band-passed."""
    from unetseg.audio.view import clip_wav

    sr = 44100
    t = np.arange(2 * sr) / sr
    y = 0.3 * np.sin(2 * np.pi * 500 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)
    sf.write(tmp_path / "two.wav", y, sr)
    out, rate = sf.read(io.BytesIO(clip_wav(tmp_path / "two.wav", 0.5, 1.5, 4000, 8000)))
    spectrum = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(len(out), 1 / rate)
    assert rate == sr and len(out) == sr
    assert spectrum[np.argmin(abs(freqs - 6000))] > 100 * spectrum[np.argmin(abs(freqs - 500))]


@pytest.mark.slow
def test_detect_review_train_detect_loop_on_spinetail(tmp_path: Path) -> None:
    """detect -> review (a person's corrections: the detections deleted, the reference boxes drawn) -> train on
    the review folder -> detect with the new model, without leaving unetseg."""
    from unetseg.cli import main

    from .conftest import shared

    folder = shared("bird-audio") / "spinetail"
    model = audio_model(tmp_path, bias=3.0)
    assert main(["audio", "detect", "--model", str(model), "--input", str(folder / "spinetail.wav"), "--output",
                 str(tmp_path / "out"), "--review", "--backend", "torch"]) == 0
    review = Review.load(tmp_path / "out" / "review" / "spinetail")
    for e in list(review.events):
        review.change(e["id"], {"state": "deleted"})
    for e in read_annotations(folder / "spinetail.txt"):
        review.add({"begin": e.begin, "end": e.end, "low": e.low, "high": e.high, "label": "bird"})
    assert main(["train", "--data", str(tmp_path / "out" / "review"), "--epochs", "1", "--base-width", "8", "--depth",
                 "2", "--no-progress", "--workers", "0", "--runs-dir", str(tmp_path / "runs"), "--name", "reviewed",
                 "--no-test", "--instances", "off"]) == 0
    data = tmp_path / "runs" / "out-review-data" / "dataset"
    assert (data / "dataset.yaml").is_file() and any((data / "train" / "masks").iterdir())
    best = tmp_path / "runs" / "reviewed" / "weights" / "best.safetensors"
    assert main(["audio", "detect", "--model", str(best), "--input", str(folder / "spinetail.wav"), "--output",
                 str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "spinetail.selections.txt").is_file()


def test_a_tile_is_the_models_image_of_its_span_whatever_the_chunks(tmp_path: Path) -> None:
    from unetseg.audio.recordings import load_audio
    from unetseg.audio.spectrogram import SpectrogramConfig, spectrogram_image
    from unetseg.audio.view import spectrogram_tile

    path = tmp_path / "two.wav"
    t = np.arange(3 * 44100) / 44100
    sf.write(path, 0.3 * np.sin(2 * np.pi * 3000 * t) * ((t % 0.5) < 0.05), 44100)
    cfg = SpectrogramConfig()  # resamples to 22,050 Hz
    whole, _ = spectrogram_image(load_audio(path, 22050)[0], 22050, cfg)
    hop, win, c0, width = cfg.hop_length, cfg.win, 100, 200
    begin = (c0 * hop + win / 2) / 22050 - 0.5 * hop / 22050  # pixel x shows column c0 + x
    tile = spectrogram_tile(path, cfg, begin, width * hop / 22050, width)
    assert tile.shape == (whole.shape[0], width)
    assert np.abs(tile.astype(int) - whole[:, c0:c0 + width]).max() <= 2  # resampled per span: edges differ a hair
    chunked = spectrogram_tile(path, cfg, begin, width * hop / 22050, width, chunk=37)  # each chunk resampled
    assert np.abs(chunked.astype(int) - tile).max() <= 1 and (chunked != tile).mean() < 0.001
    wide = spectrogram_tile(path, cfg, 0.0, 4.0, 100)  # 4 s in 100 px: the loudest column of each pixel
    assert wide[:, 76:].max() == 0 and wide.max() >= whole.max() - 2  # black past the 3 s end; calls kept


def test_a_recording_outside_its_review_folder_is_never_served(served: TestClient, tmp_path: Path) -> None:
    """Issue 28: a review.json naming an absolute path or ``../``, or a recording that is a link out, is refused
    with one 4xx line by the document, tile and clip endpoints; a damaged review leaves the list whole."""
    c = served
    root = c.app.state.reviews.root
    secret = _wav(tmp_path / "secret.wav", 1.0)
    base = c.post("/reviews?name=base.wav", content=wav_bytes(1.0)).json()["name"]
    data = json.loads((root / base / "review.json").read_text())
    made = []
    for name, recording in (("absolute", str(secret)), ("dotdot", "../../secret.wav"), ("linked", "linked.wav"),
                            ("badmodel", "badmodel.wav")):
        folder = root / name
        folder.mkdir()
        if name == "linked":
            (folder / "linked.wav").symlink_to(secret)
        if name == "badmodel":
            (folder / "badmodel.wav").write_bytes(secret.read_bytes())
        doc = {**data, "recording": recording, **({"model": "x"} if name == "badmodel" else {})}
        (folder / "review.json").write_text(json.dumps(doc))
        made.append(name)
    for name in made:
        for url in (f"/reviews/{name}", f"/reviews/{name}/tile?begin=0&seconds=1",
                    f"/reviews/{name}/audio?begin=0&end=1"):
            r = c.get(url)
            assert 400 <= r.status_code < 500, (url, r.status_code, r.text)
            assert "\n" not in r.json()["detail"] and str(tmp_path) not in r.json()["detail"]
    listed = [row["name"] for row in c.get("/reviews").json()]
    assert base in listed and not set(made) & set(listed)
    assert c.get(f"/reviews/{base}/audio?begin=0&end=0.5&low=1e-300").status_code == 400  # was a LinAlgError 500
    event = c.get(f"/reviews/{base}").json()["events"][0]["id"]
    assert c.patch(f"/reviews/{base}/events/{event}", json={"begin": True}).status_code == 422  # not 1.0 s
    assert c.patch(f"/reviews/{base}/events/{event}", json={"begin": 0, "end": 0.5}).status_code == 200


def test_two_stores_on_one_folder_keep_every_edit(tmp_path: Path) -> None:
    """Two servers (two ReviewStores, as two processes have) on one review folder: every edit is kept."""
    from concurrent.futures import ThreadPoolExecutor

    from unetseg.audio.review_store import ReviewStore

    review = _review(tmp_path, events=40)
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

    review = _review(tmp_path, events=80)
    ids = [e["id"] for e in review.events]
    halves = {"a": ids[0::2], "b": ids[1::2]}
    procs = [subprocess.Popen([sys.executable, "-c", _EDITOR, str(tmp_path / "reviews"), review.name,
                               ",".join(part), tag], stdout=subprocess.PIPE, text=True)
             for tag, part in halves.items()]
    assert [p.communicate(timeout=120)[0].strip() for p in procs] == ["0", "0"]
    final = {e["id"]: e["label"] for e in Review.load(review.folder).events}
    want = {i: f"{tag}{k}" for tag, part in halves.items() for k, i in enumerate(part)}
    assert final == want
