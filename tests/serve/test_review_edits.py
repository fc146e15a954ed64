"""Tests of the review page's API beyond single events (issue 31): undo and redo of every kind of edit, kept
across a server restart; numbered exports with a band in every Raven row; reference layers and events from a
table; the score threshold; empty reviews; the file's own spectrogram and the overview; deleting a review;
a re-upload; a server-side recordings folder; "find the rest" refusals; training on what the page makes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.fixtures import audio_model, wav_bytes, write_wav


def _app(tmp: Path, **options: object) -> TestClient:
    from unetseg.serve import ServeOptions, create_app, load_models

    opts = ServeOptions(backend="torch", review=tmp / "reviews", **options)
    return TestClient(create_app(load_models([audio_model(tmp, bias=3.0)], opts), opts))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp = tmp_path_factory.mktemp("edits")
    (tmp / "recordings" / "sub").mkdir(parents=True)
    write_wav(tmp / "recordings" / "sub" / "far.wav", 2.0)
    with _app(tmp, recordings=tmp / "recordings") as c:
        yield c


def _new(c: TestClient, name: str, seed: int, detect: bool = True) -> dict:
    r = c.post(f"/reviews?name={name}.wav&detect={str(detect).lower()}", content=wav_bytes(3.0, seed=seed))
    assert r.status_code == 201, r.text
    return r.json()


def _event(doc: dict, event_id: str) -> dict | None:
    return next((e for e in doc["events"] if e["id"] == event_id), None)


def test_undo_and_redo_every_kind_of_edit_also_after_a_restart(served: TestClient, tmp_path: Path) -> None:
    c = served
    doc = _new(c, "undo", 11)
    first = doc["events"][0]
    name = doc["name"]
    assert doc["undo"] == 0 and c.post(f"/reviews/{name}/undo").status_code == 409  # nothing to undo: one line
    c.patch(f"/reviews/{name}/events/{first['id']}", json={"begin": 0.05, "end": 0.4, "label": "wren"})
    c.patch(f"/reviews/{name}/events/{first['id']}", json={"state": "accepted"})
    added = c.post(f"/reviews/{name}/events", json={"begin": 2.0, "end": 2.5, "low": 500, "high": 900}).json()["event"]
    c.delete(f"/reviews/{name}/events/{first['id']}")
    table = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tClass\n" \
            "1\tSpectrogram 1\t1\t1.0\t1.5\t1000\t4000\tfrog\n2\tSpectrogram 1\t1\t2.2\t2.9\t800\t3000\tfrog\n"
    r = c.post(f"/reviews/{name}/layers?table=person.txt&as=events", content=table.encode())
    assert r.status_code == 200, r.text
    assert sum(e["label"] == "frog" for e in r.json()["events"]) == 2 and r.json()["undo"] == 5
    # undo them one at a time, in reverse: the batch from the table, the delete, the addition, ...
    doc = c.post(f"/reviews/{name}/undo").json()
    assert not any(e["label"] == "frog" for e in doc["events"])  # the table's two events: one edit
    assert _event(c.post(f"/reviews/{name}/undo").json(), first["id"])["state"] == "accepted"
    assert _event(c.post(f"/reviews/{name}/undo").json(), added["id"]) is None  # the added box is gone
    doc = c.post(f"/reviews/{name}/undo").json()
    assert _event(doc, first["id"])["state"] == "corrected" and _event(doc, first["id"])["label"] == "wren"
    # another server on the same folder (a restart, then a reload of the page) undoes the rest
    from unetseg.serve import ServeOptions, create_app, load_models

    opts = ServeOptions(backend="torch", review=c.app.state.reviews.root)
    with TestClient(create_app(load_models([audio_model(tmp_path)], opts), opts)) as again:
        doc = again.post(f"/reviews/{name}/undo").json()
        assert _event(doc, first["id"]) == {**first, "revision": _event(doc, first["id"])["revision"]}  # as detected
        assert doc["undo"] == 0 and doc["redo"] == 5
        doc = again.post(f"/reviews/{name}/redo").json()
        assert _event(doc, first["id"])["label"] == "wren" and doc["redo"] == 4
        # a new edit ends what could be redone
        again.patch(f"/reviews/{name}/events/{first['id']}", json={"label": "tit"})
        assert again.get(f"/reviews/{name}").json()["redo"] == 0
        assert again.post(f"/reviews/{name}/redo").status_code == 409


def test_the_raven_export_numbers_rows_as_the_page_and_gives_every_row_a_band(served: TestClient) -> None:
    c = served
    doc = _new(c, "numbers", 12, detect=False)
    name = doc["name"]
    for box in ({"begin": 1.0, "end": 1.5, "low": 1000, "high": 2000}, {"begin": 0.5, "end": 0.8},  # time-only
                {"begin": 2.0, "end": 2.4, "low": 3000, "high": 4000}):
        assert c.post(f"/reviews/{name}/events", json=box).status_code == 200
    c.delete(f"/reviews/{name}/events/e1")
    new = c.post(f"/reviews/{name}/events", json={"begin": 0.01, "end": 0.02, "low": 100, "high": 200}).json()
    assert new["event"]["id"] == "e4"  # the next number: nothing is renumbered
    rows = [line.split("\t") for line in c.get(f"/reviews/{name}/export?format=raven").text.splitlines()]
    assert [int(r[0]) for r in rows[1:]] == [4, 2, 3]  # sorted by time, numbered as the page numbers them
    bands = {int(r[0]): (float(r[5]), float(r[6])) for r in rows[1:]}  # numbers in every row
    assert bands[4] == (100.0, 200.0) and bands[2] == tuple(doc["model_band"]) == (0.0, 11025.0)


def test_layers_threshold_empty_reviews_and_the_file_view(served: TestClient) -> None:
    from PIL import Image

    c = served
    doc = _new(c, "blank", 13, detect=False)
    name = doc["name"]
    assert doc["events"] == [] and doc["model"] == {"name": None} and doc["model_band"] == [0.0, 11025.0]
    audacity = b"0.5\t0.9\twren\n\\\t12000\t14000\n"  # above what a 22.05 kHz model hears: a 44.1 kHz file's band
    r = c.post(f"/reviews/{name}/layers?table=other.txt", content=audacity)
    assert r.status_code == 400 and "band" in r.json()["detail"] and "other.txt" in r.json()["detail"]
    r = c.post(f"/reviews/{name}/layers?table=other.txt", content=b"0.5\t0.9\twren\n\\\t2000\t4000\n")
    layer = r.json()["layers"][0]
    assert layer["name"] == "other.txt" and layer["events"][0]["label"] == "wren" and r.json()["events"] == []
    for body, table, words in ((b"junk", "x.txt", "x.txt"), (b"0.5\t0.9\tw\n", "x.png", "not a table"),
                               (b"", "y.txt", "empty")):
        r = c.post(f"/reviews/{name}/layers?table={table}", content=body)
        assert r.status_code == 400 and words in r.json()["detail"], r.text
    assert c.patch(f"/reviews/{name}", json={"min_score": 0.4}).json()["view"] == {"min_score": 0.4}
    assert c.get(f"/reviews/{name}").json()["view"]["min_score"] == 0.4
    assert c.patch(f"/reviews/{name}", json={"min_score": 2}).status_code == 422
    # the file's own spectrogram: fft / 2 rows up to its Nyquist frequency (as geometry.fileRows), in colour
    png = c.get(f"/reviews/{name}/tile?begin=0&seconds=3&width=200&view=file&fft=256&colours=viridis")
    picture = np.asarray(Image.open(io.BytesIO(png.content)))
    assert picture.shape == (128, 200, 3)
    assert c.get(f"/reviews/{name}/tile?begin=0&seconds=3&view=file&fft=300").status_code == 400
    line = c.get(f"/reviews/{name}/overview?width=30").json()
    assert len(line["db"]) == 30 and max(line["db"]) > -40 and line["seconds"] == pytest.approx(3.0)
    # a search needs reviewed boxes first
    r = c.post(f"/reviews/{name}/find")
    assert r.status_code == 400 and "a few boxes" in r.json()["detail"]
    assert c.get(f"/reviews/{name}/find").status_code == 404


def test_re_upload_opens_the_review_and_a_review_can_be_deleted(served: TestClient) -> None:
    c = served
    doc = _new(c, "again", 14)
    r = c.post("/reviews?name=again-copy.wav", content=wav_bytes(3.0, seed=14))
    assert r.status_code == 200 and r.json()["existing"] and r.json()["name"] == doc["name"]
    root = c.app.state.reviews.root
    r = c.delete(f"/reviews/{doc['name']}")
    assert r.status_code == 200 and r.json()["moved_to"].startswith(".deleted/")
    assert (root / r.json()["moved_to"] / "review.json").is_file()  # moved, not erased
    assert doc["name"] not in [x["name"] for x in c.get("/reviews").json()]
    gone = doc["name"]
    assert c.get(f"/reviews/{gone}").status_code == 404 and c.delete(f"/reviews/{gone}").status_code == 404
    assert c.delete("/reviews/..%2F..").status_code in (400, 404)


def test_recordings_of_a_server_folder_open_without_upload(served: TestClient, tmp_path: Path) -> None:
    c = served
    assert c.get("/health").json()["recordings"] is True
    listed = c.get("/recordings").json()
    assert [x["path"] for x in listed] == ["sub/far.wav"]
    r = c.post("/recordings/review?path=sub/far.wav&detect=false")
    assert r.status_code == 201 and r.json()["recording"] == "far.wav" and r.json()["events"] == []
    assert c.post("/recordings/review?path=sub/far.wav").json()["existing"]
    root = Path(c.app.state.server.options.recordings)
    outside = write_wav(tmp_path / "outside.wav", 1.0)
    os.symlink(outside, root / "link.wav")
    for path in ("../outside.wav", str(outside), "link.wav", "sub/../../x.wav", "nope.wav", "sub"):
        r = c.post(f"/recordings/review?path={path}")
        assert r.status_code == 400 and "\n" not in r.json()["detail"] and str(tmp_path) not in r.json()["detail"]
    assert "link.wav" not in [x["path"] for x in c.get("/recordings").json()]


def test_train_on_the_pages_review_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A 1 s recording is padded to a window (it was refused); a review with no events is refused in one line
    and leaves no folder behind; --reviewed-only is a train option."""
    from unetseg.audio.annotations import Event
    from unetseg.audio.review_store import create_review, dataset_from_review
    from unetseg.audio.spectrogram import SpectrogramConfig
    from unetseg.cli import main

    spec = SpectrogramConfig().to_dict()
    root = tmp_path / "reviews"
    create_review(root, "short", write_wav(tmp_path / "short.wav", 1.01), [Event(0.2, 0.5, 2000.0, 4000.0, "bird")],
                  {"name": None}, spec, ["background", "bird"])
    create_review(root, "long", write_wav(tmp_path / "long.wav", 4.0), [Event(1.0, 1.5, 2000.0, 4000.0, "bird")],
                  {"name": None}, spec, ["background", "bird"])
    built = dataset_from_review(root, tmp_path / "data")
    assert sum(built.windows.values()) >= 2
    empty = tmp_path / "empty"
    create_review(empty, "none", write_wav(tmp_path / "none.wav", 2.0), [], {"name": None}, spec,
                  ["background", "bird"])
    runs = tmp_path / "runs"
    assert main(["train", "--data", str(empty), "--runs-dir", str(runs), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "no kept (not deleted) events to train on" in err and len(err.strip().splitlines()) == 1
    assert not runs.exists() or not any(runs.iterdir())  # nothing left behind
    assert main(["train", "--data", str(root), "--reviewed-only", "--runs-dir", str(runs), "--epochs", "1"]) == 2
    assert "no reviewed (accepted, corrected or added) events" in capsys.readouterr().err
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.slow
def test_train_on_reviews_the_page_made_with_a_1_s_recording(tmp_path: Path) -> None:
    """What the page makes with no model (the prior's spectrogram, each file's own rate): a 1.01 s bat
    recording and spinetail, each with a few drawn boxes, train."""
    from tests.fixtures import shared
    from unetseg.audio.annotations import read_annotations
    from unetseg.audio.review_store import create_review
    from unetseg.audio.spectrogram import PRESETS
    from unetseg.cli import main

    bats = shared("bat-calls-whombat")
    bat = "XC824040-Carollia_castanea-2013.01.17-CL00312_A_15"
    spinetail = shared("bird-audio") / "spinetail"
    root = tmp_path / "reviews"
    for name, wav, table in (("bat", bats / f"{bat}.wav", bats / f"{bat}.Table.1.selections.txt"),
                             ("spinetail", spinetail / "spinetail.wav", spinetail / "spinetail.txt")):
        boxes = sorted(read_annotations(table), key=lambda e: e.begin)[:5]
        review = create_review(root, name, wav, [], {"name": None}, PRESETS["prior"].to_dict(), ["background", "call"])
        review.add_many([{"begin": e.begin, "end": e.end, "low": e.low, "high": e.high, "label": "call"}
                         for e in boxes], state="added")
    runs = tmp_path / "runs"
    assert main(["train", "--data", str(root), "--reviewed-only", "--runs-dir", str(runs), "--epochs", "1",
                 "--no-test", "--no-progress"]) == 0
    assert list(runs.glob("*/weights/best.safetensors"))
