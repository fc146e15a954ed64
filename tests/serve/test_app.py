"""Tests of ``unetseg.serve.app``."""

from __future__ import annotations

import io
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from PIL import Image

from tests.fixtures import audio_model, shared, tiny_model_file, wav_bytes
from unetseg.serve import ServeOptions, create_app, load_models


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("serve")
    return [tiny_model_file(root, "pad", width=4, depth=2), tiny_model_file(root, size=[32, 32]),
            audio_model(root, bias=3.0)]


def client(models: list[Path], **options: object) -> TestClient:
    opts = ServeOptions(backend="torch", **options)  # type: ignore[arg-type]
    return TestClient(create_app(load_models(models, opts), opts))


IMAGE = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)


def test_health_models_docs_and_page(models: list[Path]) -> None:
    with client(models) as c:
        assert c.get("/health").json()["status"] == "ok"
        listed = c.get("/models").json()
        assert [m["name"] for m in listed] == ["pad", "resize", "birds"]
        assert [m["kind"] for m in listed] == ["image", "image", "audio"]
        assert listed[0]["classes"] == ["background", "call"] and listed[0]["input"]["mode"] == "pad"
        assert c.get("/docs").status_code == 200 and "/predict" in c.get("/openapi.json").json()["paths"]
        page = c.get("/")
        assert page.status_code == 200 and "unetseg" in page.text and "cdn" not in page.text.lower()
        assert c.get("/static/main.js").status_code == 200 and c.get("/static/review/geometry.js").status_code == 200


def test_predict_png_raw_and_multipart_give_the_same_mask(models: list[Path]) -> None:
    with client(models) as c:
        raw = c.post("/predict?model=pad", content=png_bytes(IMAGE))
        multi = c.post("/predict?model=pad", files={"file": ("../../etc/passwd", png_bytes(IMAGE), "image/png")})
        assert raw.status_code == multi.status_code == 200 and raw.headers["content-type"] == "image/png"
        assert raw.content == multi.content
        mask = np.asarray(Image.open(io.BytesIO(raw.content)))
        assert mask.shape == (40, 56) and set(np.unique(mask)) <= {0, 255}
        resized = np.asarray(Image.open(io.BytesIO(c.post("/predict?model=resize", content=png_bytes(IMAGE)).content)))
        assert resized.shape == (40, 56)  # at the original size


def test_predict_json_areas_polygons_rle_and_options(models: list[Path]) -> None:
    from pycocotools import mask as mask_utils

    with client(models) as c:
        low = c.post("/predict?model=pad&format=json&mask=true&threshold=0.01", content=png_bytes(IMAGE)).json()
        high = c.post("/predict?model=pad&format=json&threshold=0.99", content=png_bytes(IMAGE)).json()
        assert sum(k["pixels"] for k in low["classes"]) == 40 * 56 and low["threshold"] == 0.01
        assert low["classes"][1]["pixels"] >= high["classes"][1]["pixels"]
        decoded = mask_utils.decode({"size": low["rle"]["call"]["size"], "counts": low["rle"]["call"]["counts"]})
        assert int(decoded.sum()) == low["classes"][1]["pixels"]
        assert all(r["class"] == "call" for r in low["regions"]) and "mask_png" in low and "mask_png" not in high
        assert "objects" not in low
        found = c.post("/predict?model=pad&format=json&objects=true&threshold=0.3", content=png_bytes(IMAGE)).json()
        objects = found["objects"]  # each region of one class, for review on the page: largest first
        assert len(objects) == len(found["regions"])
        assert sum(o["area"] for o in objects) == found["classes"][1]["pixels"]
        assert [o["area"] for o in objects] == sorted((o["area"] for o in objects), reverse=True)
        for o in objects[:3]:
            decoded = mask_utils.decode({"size": o["rle"]["size"], "counts": o["rle"]["counts"]})
            ys, xs = decoded.nonzero()
            assert o["label"] == "call" and int(decoded.sum()) == o["area"] and 0 <= o["score"] <= 1
            assert o["box"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        tiled = c.post("/predict?model=pad&format=json&tile=32&tta=true", content=png_bytes(IMAGE))
        assert tiled.status_code == 200
        assert c.post("/predict?model=resize&tile=32", content=png_bytes(IMAGE)).status_code == 400
        assert c.post("/predict?model=pad&threshold=2", content=png_bytes(IMAGE)).status_code == 422
        assert c.post("/predict?model=nope", content=png_bytes(IMAGE)).status_code == 404
        assert c.post("/predict?model=birds", content=png_bytes(IMAGE)).status_code == 400


def test_requests_that_arrive_together_are_batched(models: list[Path]) -> None:
    opts = ServeOptions(backend="torch", max_batch=8)
    served = load_models(models[1:2], opts)
    app = create_app(served, opts)
    with TestClient(app) as c:
        results = []
        threads = [threading.Thread(target=lambda: results.append(c.post("/predict", content=png_bytes(IMAGE))))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.status_code == 200 for r in results) and len({r.content for r in results}) == 1
        assert max(served["resize"].batcher.batches) > 1


@pytest.mark.parametrize("fmt", ["json", "raven", "audacity", "csv"])
def test_detect_formats(models: list[Path], fmt: str) -> None:
    with client(models) as c:
        r = c.post(f"/detect?format={fmt}", content=wav_bytes())
        assert r.status_code == 200, r.text
        if fmt == "json":
            body = r.json()
            assert body["model"] == "birds" and abs(body["duration"] - 2.0) < 0.01 and body["events"]
            assert body["raven"].startswith("Selection\t")
        else:
            header = {"raven": "Selection\tView", "csv": "label,onset_s", "audacity": ""}[fmt]
            assert r.text.startswith(header) and len(r.text.strip().splitlines()) >= 1


def test_detect_denoise_and_spectrogram_links_are_fetched_once(models: list[Path]) -> None:
    with client(models) as c:
        body = c.post("/detect?denoise=true&spectrogram=true", files={"f": ("x.wav", wav_bytes())}).json()
        wav = c.get(body["denoised"])
        assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
        y, sr = sf.read(io.BytesIO(wav.content))
        assert sr == 22050 and abs(len(y) / sr - 2.0) < 0.05
        assert c.get(body["denoised"]).status_code == 404  # once
        picture = c.get(body["spectrogram"]["url"])
        assert picture.status_code == 200 and Image.open(io.BytesIO(picture.content)).height == len(
            body["spectrogram"]["row_hz"])


def test_token_guards_everything_but_health_and_the_page(models: list[Path], monkeypatch) -> None:
    with client(models, token="s3cret") as c:
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
        for method, path in (("get", "/models"), ("get", "/docs"), ("post", "/predict"), ("post", "/detect")):
            assert getattr(c, method)(path).status_code == 401
        assert c.get("/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.post("/predict", content=png_bytes(IMAGE), headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_cors_only_when_asked(models: list[Path]) -> None:
    origin = {"Origin": "http://lab.example", "Access-Control-Request-Method": "POST"}
    with client(models) as c:
        assert "access-control-allow-origin" not in c.options("/predict", headers=origin).headers
    with client(models, cors=["http://lab.example"]) as c:
        assert c.options("/predict", headers=origin).headers["access-control-allow-origin"] == "http://lab.example"


def test_limits_are_413_and_bad_files_400_in_one_line(models: list[Path]) -> None:
    with client(models, max_upload_mb=0.01, max_pixels=1000, max_seconds=1.0) as c:
        big = c.post("/predict", content=b"\0" * 200_000)
        assert big.status_code == 413 and "--max-upload-mb" in big.json()["detail"]
        bomb = c.post("/predict?model=pad", content=png_bytes(IMAGE))  # 2240 pixels > 1000
        assert bomb.status_code == 413 and "--max-pixels" in bomb.json()["detail"]
    with client(models, max_seconds=1.0) as c:
        long = c.post("/detect", content=wav_bytes(1.5))
        assert long.status_code == 413 and "--max-seconds" in long.json()["detail"]
    with client(models) as c:
        for path, data in (("/predict", png_bytes(IMAGE)[:60]), ("/predict", b""), ("/detect", b"RIFF....WAVEjunk"),
                           ("/detect", wav_bytes()[:30])):
            r = c.post(path, content=data)
            detail = r.json()["detail"]
            assert r.status_code == 400 and "\n" not in detail and "/tmp" not in detail, (path, detail)


def test_upload_files_are_removed_after_requests_and_errors(models: list[Path], monkeypatch) -> None:
    scratch = Path(tempfile.mkdtemp())
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with client(models) as c:
        c.post("/predict?model=pad", content=png_bytes(IMAGE))
        c.post("/predict?model=pad", content=b"not an image")
        c.post("/detect", content=wav_bytes())
        c.post("/detect", content=b"junk")
        assert not [p for p in scratch.iterdir() if p.name.startswith("unetseg-upload-")]


def test_a_full_queue_answers_503_with_retry_after_at_once(models: list[Path]) -> None:
    opts = ServeOptions(backend="torch", queue=1)
    served = load_models(models[2:], opts)
    release = threading.Event()
    detector = served["birds"].detector
    real = detector.run

    def slow(*a: object, **k: object) -> object:
        release.wait(20)
        return real(*a, **k)

    detector.run = slow  # type: ignore[method-assign]
    with TestClient(create_app(served, opts)) as c:
        first = threading.Thread(target=lambda: c.post("/detect", content=wav_bytes()))
        first.start()
        time.sleep(0.5)
        start = time.monotonic()
        busy = c.post("/detect", content=wav_bytes())
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and time.monotonic() - start < 2
        release.set()
        first.join()
        assert c.post("/detect", content=wav_bytes()).status_code == 200  # and it recovers


def test_real_camvid_image_and_bird_recording(models: list[Path]) -> None:
    camvid = shared("camvid-mini")
    birds = shared("bird-audio")
    image = sorted((camvid / "test").glob("*.png"))[0]
    with client(models) as c:
        r = c.post("/predict?model=pad&format=json", content=image.read_bytes())
        assert r.status_code == 200 and (r.json()["width"], r.json()["height"]) == Image.open(image).size
        r = c.post("/detect?format=json", content=(birds / "spinetail" / "spinetail.wav").read_bytes())
        assert r.status_code == 200 and r.json()["duration"] > 10


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_slow_uploads_take_no_place_and_stalled_ones_get_408(models: list[Path]) -> None:
    import socket

    import httpx
    import uvicorn

    opts = ServeOptions(backend="torch", queue=4, read_timeout=3.0)
    app = create_app(load_models(models, opts), opts)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    slow = []
    try:
        for _ in range(4):  # as many slow clients as the queue has places, 10 bytes each of a 500 kB body
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /predict?model=pad HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 500000\r\n\r\n" + b"\x89PNG\r\n\x1a\n\0\0")
            slow.append(sock)
        time.sleep(0.5)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            codes = [c.post("/predict?model=pad", content=png_bytes(IMAGE)).status_code for _ in range(6)]
            assert codes == [200] * 6, codes
        for sock in slow:  # nothing more arrives: each stalled upload is answered 408 and dropped
            sock.settimeout(10)
            assert b" 408 " in sock.recv(4096).split(b"\r\n")[0]
    finally:
        for sock in slow:
            sock.close()
        server.should_exit = True
        thread.join(10)


@pytest.mark.slow
def test_memory_stays_flat_over_300_varied_requests(models: list[Path]) -> None:
    """300 requests, each with a tile size never asked before (ONNX Runtime, a session per setting): without
    the bound on kept engines RSS grew 187 MB over the last 240; with it, it stays flat."""
    opts = ServeOptions(backend="onnxruntime")
    with TestClient(create_app(load_models(models[:1], opts), opts)) as c:
        def burst(first: int, last: int) -> None:
            for i in range(first, last):
                r = c.post(f"/predict?model=pad&tile={16 + 4 * i}&tta={'true' if i % 2 else 'false'}",
                           content=png_bytes(IMAGE))
                assert r.status_code == 200

        burst(0, 60)
        start = _rss()
        burst(60, 300)
        grown = _rss() - start
        served = c.app.state.models["pad"]  # type: ignore[attr-defined]
        assert len(served.variants) <= 4
    print(f"RSS grew {grown / 2**20:.1f} MB over 240 requests of new tiles and flips")
    assert grown < 40 * 2**20, f"RSS grew {grown / 2**20:.0f} MB over 240 requests"


def test_a_png_declaring_100000_pixels_a_side_is_413(models: list[Path]) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")
    with client(models) as c:
        r = c.post("/predict?model=pad", content=bomb)
    assert r.status_code == 413 and "--max-pixels" in r.json()["detail"]


def test_requests_at_work_share_one_memory_budget(models: list[Path]) -> None:
    """Each /predict takes its image's share of the memory budget (decoding, probabilities, outputs) while it
    works; one that would pass what is left is turned away at once (503, Retry-After) instead of growing the
    server (16 images of 6000x6000 at once took it from 0.8 to 4.6 GB)."""
    from unetseg.serve.batcher import Budget, Busy

    budget = Budget(100)
    with budget.take(60):
        with pytest.raises(Busy), budget.take(50):
            pass
        with budget.take(40):
            assert budget.used == 100
    assert budget.used == 0
    with budget.take(500):  # alone, a request always runs (its size was checked against the limits already)
        pass
    big = np.random.default_rng(1).integers(0, 255, (600, 600, 3), dtype=np.uint8)
    with client(models) as c:
        server = c.app.state.server  # type: ignore[attr-defined]
        need = server.models["pad"].engine.image_bytes(600, 600)
        server.memory = Budget(need + need // 2)
        with server.memory.take(need // 2 + 1):  # another request holds a third of the budget
            busy = c.post("/predict?model=pad", content=png_bytes(big))
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert c.post("/predict?model=pad", content=png_bytes(IMAGE)).status_code == 200  # a small one fits
        assert c.post("/predict?model=pad", content=png_bytes(big)).status_code == 200
        assert server.memory.used == 0
