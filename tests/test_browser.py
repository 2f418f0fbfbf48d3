"""End to end: Debian's chromium, driven by Playwright, on the real demo server."""
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(demo_server):
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1800})
        page.goto(demo_server)
        yield page
        browser.close()


def test_generate_then_measure(page):
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    page.fill("#prompt textarea", "w1 w2 zebra")
    page.click("#generate")
    page.wait_for_function(
        "() => { const n = document.querySelector('#notes'); return n && n.innerText.includes('zebra') &&"
        " (n.innerText.includes('part at word') || n.innerText.includes('same 100 words')); }",
        timeout=30_000)
    left = page.inner_text("#fp32-text")
    right = page.inner_text("#qint8-text")
    assert left.startswith("w1 w2 zebra") and len(left.split()) > 10
    assert right.startswith("w1 w2 zebra") and len(right.split()) > 10
    assert "words/s" in page.inner_text("#fp32-stats") and "words/s" in page.inner_text("#qint8-stats")

    page.click("#measure")
    page.wait_for_function(
        "() => document.querySelector('#status') && document.querySelector('#status').innerText.includes('test tokens')",
        timeout=60_000)
    table = page.inner_text("#table")
    assert "fp32" in table and "qint8" in table and "speed-up" in table
    page.wait_for_timeout(1500)                      # let the plots draw
    page.screenshot(path=str(out / "demo.png"), full_page=True)
    assert (out / "demo.png").stat().st_size > 10_000
