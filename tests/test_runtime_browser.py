"""The browser view in real headless Chromium (Debian's, driven by Playwright): the page loads, the MJPEG frames
advance, the metrics update. The screenshot goes to build/test-artifacts/browser.png."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from runtime_nets import build_tiny

from fpgagen.runtime.model import load_face_detector
from fpgagen.runtime.pipeline import Pipeline
from fpgagen.runtime.server import StreamServer
from fpgagen.runtime.sources import Arrays
from fpgagen.runtime.web import WebServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "test-artifacts"


def _astronaut_pan(n):
    import skimage.data

    photo = skimage.data.astronaut()
    return [np.ascontiguousarray(photo[40:360, 8 * i % 160:8 * i % 160 + 320]) for i in range(n)]


def _contrast(css_a: str, css_b: str) -> float:
    """WCAG contrast ratio of two CSS rgb() colours (4.5 is the minimum for body text)."""
    def luminance(css):
        rgb = [int(v) / 255 for v in css[css.index("(") + 1:css.index(")")].split(",")[:3]]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(css_a), luminance(css_b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_browser_page_streams_frames_and_metrics(tmp_path):
    pytest.importorskip("playwright", reason="pip install playwright (the dev extra)")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (.ci/run installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    before = set(threading.enumerate())
    acc = build_tiny(tmp_path)
    detector = load_face_detector(acc.build_dir, "reference")
    web = WebServer(port=0, title="tiny test net on reference", log=lambda m: None).start()
    stream = StreamServer(port=0, log=lambda m: None).start()

    def frames():
        pan = _astronaut_pan(20)
        for i in range(100_000):
            yield pan[i % len(pan)]

    pipe = Pipeline(Arrays(frames(), fps=12), detector, [web, stream], preview_fps=12, metrics_every=0,
                    log=lambda m: None).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1100, "height": 560})
            page_errors, requested = [], []
            # a script error would leave the page silently stale
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.on("request", lambda req: requested.append(req.url))
            page.goto(web.url, timeout=10_000)
            # the /detections.json link is readable on the dark page: its colour contrasts with the background
            link, body = (page.evaluate(f"getComputedStyle(document.querySelector('{sel}')).{prop}")
                          for sel, prop in (("a", "color"), ("body", "backgroundColor")))
            assert _contrast(link, body) >= 4.5, (link, body)
            assert "fpgagen face detection" in page.inner_text("h1")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('frame')",
                                   timeout=10_000)
            page.wait_for_function("document.getElementById('live').naturalWidth > 0", timeout=10_000)

            def state():
                frame = int(page.inner_text("#status").split()[1].rstrip(":"))
                rows = {r.split("\t")[0]: r.split("\t") for r in page.inner_text("#metrics tbody").splitlines()}
                # the pixels the <img> shows now (the MJPEG's current frame), via a same-origin canvas
                pixels = page.evaluate("""() => { const img = document.getElementById('live');
                    const c = document.createElement('canvas'); c.width = img.naturalWidth;
                    c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
                    return Array.from(g.getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 97 == 0));
                    }""")
                return frame, int(rows["inference"][1]), np.array(pixels)

            f1, n1, px1 = state()
            deadline = time.monotonic() + 8  # a loaded machine may deliver the next MJPEG part late
            while True:
                time.sleep(0.5)
                f2, n2, px2 = state()
                if (f2 > f1 and n2 > n1 and not np.array_equal(px1, px2)) or time.monotonic() > deadline:
                    break
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser.png"))
            browser.close()
    finally:
        pipe.stop()
    assert not page_errors, page_errors
    assert not [u for u in requested if "favicon" in u], requested  # no request for a missing favicon
    assert f2 > f1 and n2 > n1, (f1, f2, n1, n2)  # frames advance, metrics update
    assert px1.size > 1000 and not np.array_equal(px1, px2)  # the picture itself changes
    assert (ARTIFACTS / "browser.png").stat().st_size > 10_000
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(threading.enumerate()) - before
