"""Tests of ``unetseg.serve.review``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from tests.fixtures import audio_model, wav_bytes, write_wav


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
        assert c.post("/reviews?name=song.wav", content=wav_bytes(3.0, seed=1)).status_code == 201
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


def test_a_recording_outside_its_review_folder_is_never_served(served: TestClient, tmp_path: Path) -> None:
    """Issue 28: a review.json naming an absolute path or ``../``, or a recording that is a link out, is refused
    with one 4xx line by the document, tile and clip endpoints; a damaged review leaves the list whole."""
    c = served
    root = c.app.state.reviews.root
    secret = write_wav(tmp_path / "secret.wav", 1.0)
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
