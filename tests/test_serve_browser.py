"""The web page in a real headless Chromium (Debian's ``chromium``, driven by Playwright): a CamVid image
and a bird recording uploaded through the page, the overlay and the events table waited for, screenshots
saved.

``UNETSEG_SERVE_MODELS`` (image model, audio model) and ``UNETSEG_SCREENSHOTS`` (a folder) let the same
test take the README's screenshots with trained models.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from .conftest import shared
from .test_reliability import _model
from .test_serve import audio_model

pytestmark = pytest.mark.slow  # run by make test-slow (and .ci/run), not by make test


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


def test_page_in_a_real_browser(tmp_path: Path) -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from unetseg.serve import ServeOptions, create_app, load_models

    executable = chromium()
    image = sorted((shared("camvid-mini") / "test").glob("*.png"))[0]
    recording = shared("bird-audio") / "spinetail" / "spinetail.wav"
    given = os.environ.get("UNETSEG_SERVE_MODELS")
    paths = given.split(",") if given else [_model(tmp_path, "pad"), audio_model(tmp_path, bias=3.0)]
    shots = Path(os.environ.get("UNETSEG_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    options = ServeOptions(backend="torch")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(load_models(paths, options), options), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.querySelectorAll('#model option').length == 2")
            page.set_input_files("#file", str(image))
            page.wait_for_selector("#overlay[data-ready='1']", timeout=60_000)
            assert page.locator("#legend tbody tr").count() >= 2
            assert "error" not in (page.locator("#error").text_content() or "")
            page.screenshot(path=str(shots / "serve-image.png"), full_page=True)
            page.set_input_files("#file", str(recording))
            page.wait_for_selector("#spectrogram[data-ready='1']", timeout=120_000)
            page.wait_for_function("document.querySelectorAll('#events tbody tr').length > 0")
            assert page.locator("#play-denoised").get_attribute("src")
            page.screenshot(path=str(shots / "serve-recording.png"), full_page=True)
            # an error shows as the one line the API gives
            page.set_input_files("#file", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"junk"}])
            page.wait_for_selector("#error:not([hidden])")
            assert page.locator("#error").text_content().startswith("error: upload: not a readable image")
            assert not errors, errors
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert (shots / "serve-image.png").stat().st_size > 10_000
