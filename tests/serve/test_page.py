"""The web page in a real headless Chromium (Debian's ``chromium``, driven by Playwright): a CamVid image
and a bird recording uploaded through the page, screenshots saved; a recording reviewed (zoom, select, drag,
delete, draw, label, keys, reload, export, two tabs); an hour-long recording opened and scrolled by tiles.

``UNETSEG_SERVE_MODELS`` (image model, audio model) and ``UNETSEG_SCREENSHOTS`` (a folder) let the same
test take the README's screenshots with trained models."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fixtures import audio_model, shared, tiny_model_file


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is missing; .ci/run installs it from .ci/apt-packages.txt")
        pytest.skip("chromium not installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(paths: list[Path], options: object) -> Iterator[str]:
    """The app on a free local port, served by uvicorn in a thread; yields its address."""
    import uvicorn

    from unetseg.serve import create_app, load_models

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(load_models(paths, options), options), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def browser_page(**kwargs: object) -> Iterator[tuple]:
    """A headless Debian chromium page (1400x1000), and the list its page errors go to."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page, errors, context
        finally:
            browser.close()


def _multiclass_model(tmp: Path) -> Path:
    """An untrained three-class image model at native size: its argmax gives regions of every class (the last
    layer's weights scaled up and its biases zeroed, so the image's content decides each pixel's class)."""
    return tiny_model_file(tmp, "pad", name="streets", classes=("background", "road", "car"),
                           colours=[(0, 0, 0), (128, 64, 128), (64, 0, 128)], seed=0, last=(50.0, 0.0))


@pytest.mark.slow
def test_page_in_a_real_browser(tmp_path: Path) -> None:
    from unetseg.serve import ServeOptions

    image = sorted((shared("camvid-mini") / "test").glob("*.png"))[0]
    recording = shared("bird-audio") / "spinetail" / "spinetail.wav"
    given = os.environ.get("UNETSEG_SERVE_MODELS")
    paths = given.split(",") if given else [_multiclass_model(tmp_path), audio_model(tmp_path, bias=3.0)]
    shots = Path(os.environ.get("UNETSEG_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    options = ServeOptions(backend="torch")
    with running(paths, options) as url, browser_page() as (page, errors, _):
        page.goto(url + "/")
        page.wait_for_function("document.querySelectorAll('#model option').length == 2")
        page.set_input_files("#file", str(image))
        page.wait_for_selector("#overlay[data-ready='1']", timeout=60_000)
        assert page.locator("#legend tbody tr").count() >= 2
        assert page.locator("#legend tbody tr").first.locator(".swatch").count() == 0  # background is not drawn
        assert "error" not in (page.locator("#error").text_content() or "")
        # review the image's objects: delete the first, give the second another class, download the rest
        count = page.locator("#objects tbody tr").count()
        assert count >= 2
        page.locator("#objects tbody tr").first.click()
        page.keyboard.press("d")
        assert "deleted" in _classes(page.locator("#objects tbody tr").first)
        page.keyboard.press("n")
        other = page.evaluate("[...document.querySelectorAll('#object-class option')].map(o => o.value)"
                              ".find(v => v !== document.querySelector('#object-class').value)")
        page.locator("#object-class").select_option(other)
        assert "corrected" in _classes(page.locator("#objects tbody tr").nth(1))
        with page.expect_download() as download:
            page.locator("#download-objects").click()
        saved = tmp_path / "objects.json"
        download.value.save_as(saved)
        kept = json.loads(saved.read_text())["annotations"]
        assert len(kept) == count - 1 and kept[0]["review"] == "corrected" and kept[0]["category_id"] == int(other)
        page.screenshot(path=str(shots / "serve-image.png"), full_page=True)
        page.set_input_files("#file", str(recording))
        page.wait_for_selector("#viewport[data-ready='1']", timeout=120_000)
        page.wait_for_function("document.querySelectorAll('#events tbody tr').length > 0")
        page.wait_for_selector("#track img[data-loaded='1']")
        assert "resamples to 22.05 kHz" in page.locator("#audio-note").text_content()
        assert abs(page.evaluate(_TRACK_WIDTH) - page.evaluate(_VIEW_WIDTH)) <= 2  # opened fitted: all of it in view
        assert not page.locator("#denoised").is_disabled()
        page.screenshot(path=str(shots / "serve-recording.png"), full_page=True)
        # an error shows as the one line the API gives, naming the file; the earlier result is gone
        page.set_input_files("#file", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"junk"}])
        page.wait_for_selector("#error:not([hidden])")
        assert page.locator("#error").text_content().startswith("error: broken.png: not a readable image")
        assert page.locator("#image-view").is_hidden() and page.locator("#audio-view").is_hidden()
        assert not errors, errors
    assert (shots / "serve-image.png").stat().st_size > 10_000


# The page's own geometry module, the review as the API gives it, and the scale the page shows: what the tests
# need of the page's state, read as a user's script could (no page globals).
GEOMETRY = ("const g = await import('/static/review/geometry.js'); "
            "const doc = await (await fetch('/reviews/' + NAME)).json(); "
            "const pxs = parseFloat(document.querySelector('#zoom-value').dataset.pxs); "
            "const fft = Number(document.querySelector('#fft').value); "
            "const view = { pxs, rows: g.fileRows(doc.sample_rate / 2, fft), band: doc.model_band }; "
            "const v = document.querySelector('#viewport');")
_TRACK_WIDTH = "document.querySelector('#track').getBoundingClientRect().width"
_VIEW_WIDTH = "document.querySelector('#viewport').clientWidth"
_PXS = "parseFloat(document.querySelector('#zoom-value').dataset.pxs)"


def _in_page(page: object, name: str, body: str) -> object:
    return page.evaluate(f"(async () => {{ {GEOMETRY.replace('NAME', repr(name))} {body} }})()")


def _classes(row: object) -> list[str]:
    return (row.get_attribute("class") or "").split()


def _row_has(state: str | None, label: str | None = None) -> str:
    """A page expression: some row of the events table is in ``state`` (any when None) and has ``label``."""
    tests = ([f"r.classList.contains('{state}')"] if state else []) + ([f"r.cells[5].textContent === '{label}'"]
                                                                       if label else [])
    return f"[...document.querySelectorAll('#events tbody tr')].some(r => {' && '.join(tests)})"


def _selected_id() -> str:
    return "(document.querySelector('#events tbody tr.selected') || {dataset: {}}).dataset.id"


def _box_centre(page: object, name: str, number: int) -> tuple[float, float]:
    """Where event ``number`` (1-based, as the page numbers them) is on the screen."""
    box = _in_page(page, name, f"const b = g.boxOf(g.sortEvents(doc.events)[{number - 1}], view); "
                               "return [b.x0, b.x1, b.y0, b.y1, v.scrollLeft];")
    rect = page.locator("#boxes").bounding_box()
    return rect["x"] + (box[0] + box[1]) / 2 - box[4], rect["y"] + (box[2] + box[3]) / 2


def _events(url: str, name: str) -> list[dict]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/reviews/{name}") as r:
        return json.loads(r.read())["events"]


@pytest.mark.slow
def test_review_page_edits_are_kept_and_exported(tmp_path: Path) -> None:
    from unetseg.audio.annotations import read_annotations
    from unetseg.audio.review_store import create_review
    from unetseg.serve import ServeOptions

    folder = shared("bird-audio") / "spinetail"
    reference = read_annotations(folder / "spinetail.txt")
    model = audio_model(tmp_path, bias=3.0)
    root = tmp_path / "reviews"
    create_review(root, "spinetail", folder / "spinetail.wav", reference, {"name": "birds"},
                  {"sample_rate": 22050}, ["background", "bird"])
    options = ServeOptions(backend="torch", review=root)
    with running([model], options) as url, browser_page() as (page, errors, context):
        page.goto(url + "/#review=spinetail")
        page.wait_for_selector("#track img[data-loaded='1']")
        assert page.locator("#events tbody tr").count() == len(reference)
        assert "of 19.5 s" in page.locator("#view-range").text_content()
        # zoom in and out with the keys: twice, then half the pixels per second
        page.locator("#viewport").focus()
        fitted = page.evaluate(_PXS)
        page.keyboard.press("+")
        page.keyboard.press("-")
        page.keyboard.press("-")
        assert page.evaluate(_PXS) == pytest.approx(fitted / 2)
        page.keyboard.press("+")
        page.wait_for_selector("#track img[data-loaded='1']")
        # select box 1 and drag it 50 px to the right (50 / pxs seconds)
        x, y = _box_centre(page, "spinetail", 1)
        before = _events(url, "spinetail")
        first = min(before, key=lambda e: e["begin"])
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 25, y, steps=5)
        page.mouse.move(x + 50, y, steps=5)
        page.mouse.up()
        page.wait_for_function("document.querySelector('#events tbody tr.selected').textContent.includes('corrected')")
        moved = next(e for e in _events(url, "spinetail") if e["id"] == first["id"])
        assert moved["state"] == "corrected" and abs(moved["begin"] - first["begin"] - 50 / fitted) < 0.05
        # delete another with the key d, after choosing it in the table
        page.locator("#events tbody tr").nth(2).click()
        third = page.locator("#events tbody tr").nth(2).get_attribute("data-id")
        page.locator("#viewport").focus()
        page.keyboard.press("d")
        page.wait_for_function(f"document.querySelector('#events tbody tr[data-id=\"{third}\"]').classList"
                               ".contains('deleted')")
        page.wait_for_function(f"{_selected_id()} && {_selected_id()} !== '{third}'")  # on to the box after it
        # next / accept by key
        page.keyboard.press("n")
        chosen = page.evaluate(_selected_id())
        page.keyboard.press("a")
        page.wait_for_function(f"document.querySelector('#events tbody tr[data-id=\"{chosen}\"]').classList"
                               ".contains('accepted')")
        # draw a new box where no box is, then label it
        rect = page.locator("#boxes").bounding_box()
        free = _in_page(page, "spinetail", "for (let x = v.scrollLeft + 10; x < v.scrollLeft + "
                        "Math.min(v.clientWidth, g.xOf(doc.duration, pxs)) - 60; x += 10) { let ok = true; "
                        "for (let dx = 0; dx <= 50; dx += 5) for (let y = 200; y <= 240; y += 5) "
                        "if (g.hit(doc.events, null, x + dx, y, view)) ok = false; if (ok) return x - v.scrollLeft; } "
                        "return null;")
        assert free is not None
        page.mouse.move(rect["x"] + free, rect["y"] + 200)
        page.mouse.down()
        page.mouse.move(rect["x"] + free + 50, rect["y"] + 240, steps=5)
        page.mouse.up()
        page.wait_for_function(_row_has("added"))
        page.locator("#label").fill("wren")
        page.locator("#label").press("Enter")
        page.wait_for_function(_row_has("added", "wren"))
        # play the selection: the player gets the clip and the playhead runs
        page.keyboard.press("Space")
        page.wait_for_function("document.querySelector('#player').src.startsWith('blob:')")
        # the state is on the server: a reload shows it
        page.reload()
        page.wait_for_selector("#track img[data-loaded='1']")
        states = page.evaluate("[...document.querySelectorAll('#events tbody tr')].map(r => r.cells[7].textContent)")
        assert sorted(set(states)) == ["accepted", "added", "corrected", "deleted", "unreviewed"]
        # export the corrected Raven table through the page
        with page.expect_download() as download:
            page.locator("#export-raven").click()
        path = tmp_path / "export.txt"
        download.value.save_as(path)
        rows = [line.split("\t") for line in path.read_text().splitlines()]
        assert rows[0][-1] == "Review" and len(rows) - 1 == len(reference)  # one deleted, one added
        assert {r[-1] for r in rows[1:]} == {"accepted", "added", "corrected", "unreviewed"}
        assert any(r[7] == "wren" and r[-1] == "added" for r in rows[1:])
        assert len(read_annotations(path)) == len(reference)
        # two tabs on one recording: the second tab's edit of an event the first changed says so
        other = context.new_page()
        other.goto(url + "/#review=spinetail")
        other.wait_for_selector("#track img[data-loaded='1']")
        target = page.locator("#events tbody tr.unreviewed").first.get_attribute("data-id")
        other.locator(f"#events tbody tr[data-id='{target}']").click()  # the second tab has the event open
        page.locator(f"#events tbody tr[data-id='{target}']").click()
        page.locator("#label").fill("tab1")
        page.locator("#label").press("Enter")
        page.wait_for_function(_row_has(None, "tab1"))
        other.locator("#label").fill("tab2")
        other.locator("#label").press("Enter")
        other.wait_for_selector("#conflict:not([hidden])")
        # the edit replaced one it had not seen (or, had its poll seen tab1's edit first, it says so)
        assert "another tab" in other.locator("#conflict").text_content()
        page.screenshot(path=str(Path(os.environ.get("UNETSEG_SCREENSHOTS", tmp_path)) / "serve-review.png"),
                        full_page=True)
        assert not errors, errors


@pytest.mark.slow
def test_an_hour_long_recording_opens_in_under_3_s_and_scrolls_by_tiles(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    from unetseg.audio.annotations import Event
    from unetseg.audio.review_store import create_review
    from unetseg.serve import ServeOptions

    sr, hour = 22050, 3600
    path = tmp_path / "hour.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 1, "PCM_16") as f:  # written a minute at a time
        for _ in range(hour // 60):
            t = np.arange(60 * sr) / sr
            y = 0.01 * rng.standard_normal(len(t)) + 0.2 * np.sin(2 * np.pi * 3000 * t) * ((t % 30) < 0.5)
            f.write(y.astype(np.float32))
    events = [Event(s, s + 0.5, 2500.0, 3500.0, "bird", 0.9) for s in range(0, hour, 30)]
    create_review(tmp_path / "reviews", "hour", path, events, {"name": "birds"}, {"sample_rate": sr},
                  ["background", "bird"])
    options = ServeOptions(backend="torch", review=tmp_path / "reviews")
    with running([audio_model(tmp_path)], options) as url, browser_page() as (page, errors, _):
        tiles: list[str] = []
        page.on("request", lambda r: tiles.append(r.url) if "/tile?" in r.url else None)
        page.goto(url + "/")  # the page and its scripts once, as a returning user has them
        start = time.monotonic()
        page.goto(url + "/#review=hour")
        page.wait_for_function("document.querySelectorAll('#track img[data-loaded=\"1\"]').length >= 3")
        opened = time.monotonic() - start
        print(f"an hour-long recording opened in {opened:.2f} s")
        assert opened < 3.0, f"the hour-long recording took {opened:.2f} s to open"
        assert page.locator("#events tbody tr").count() == len(events)
        shown = len(tiles)
        assert shown < 12  # a screen of tiles, not the hour (703 tiles at 100 px/s)
        pxs = page.evaluate(_PXS)
        assert abs(pxs * 600 - page.evaluate(_VIEW_WIDTH)) <= 2  # over 20 minutes: the first 10 in view
        page.evaluate(f"document.querySelector('#viewport').scrollLeft = 1800 * {pxs}")  # half an hour on
        page.wait_for_function("[...document.querySelectorAll('#track img[data-loaded=\"1\"]')]"
                               f".some(i => parseInt(i.style.left) >= {1800 * pxs - 512})")
        begins = [float(t.split("begin=")[1].split("&")[0]) for t in tiles[shown:]]
        assert len(tiles) > shown and any(1500 < b <= 1800 for b in begins)
        assert page.locator("#track img").count() < 20  # tiles far from the view are dropped
        assert "30:00" in page.locator("#view-range").text_content() or "1800.0" in page.locator(
            "#view-range").text_content()
        assert not errors, errors
