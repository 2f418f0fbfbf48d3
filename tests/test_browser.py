"""End to end: Debian's chromium, driven by Playwright, on the real demo server."""
import shutil

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


def serve_shipped(env: dict):
    """demo.py's app on the shipped checkpoint with ``env`` set, served on 127.0.0.1; yields its url
    (for a module fixture). The demo module is imported here if no test imported it yet, and then
    left for the tiny server's fixture to import its own."""
    import sys
    from tests.conftest import SHIPPED_CHECKPOINT
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    mp.setenv("WLM_PREBUILD", "0")
    mp.delenv("WLM_CHECKPOINT", raising=False)
    had = sys.modules.get("demo")
    import demo as demo_module
    if had is None:
        sys.modules.pop("demo", None)
    app = demo_module.load_app(str(SHIPPED_CHECKPOINT))
    demo = demo_module.build_demo(app)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False)
    yield url
    demo.close()
    mp.undo()


def chromium():
    """A headless Debian chromium (for a module fixture)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(300)


def test_generate(page):
    (ROOT / "test-output").mkdir(exist_ok=True)
    tab(page, "Side by side")
    page.fill("#prompt textarea", "w1 w2 zebra")
    page.click("#generate")
    page.wait_for_function(
        "() => { const n = document.querySelector('#notes'); return n && n.innerText.includes('zebra') &&"
        " n.innerText.includes('Step by step'); }",
        timeout=30_000)
    left = page.inner_text("#fp32-text")
    right = page.inner_text("#qint8-text")
    assert left.startswith("w1 w2 zebra") and len(left.split()) > 10
    assert right.startswith("w1 w2 zebra") and len(right.split()) > 10
    assert "words/s" in page.inner_text("#fp32-stats") and "words/s" in page.inner_text("#qint8-stats")
    # every generated word carries both probabilities on hover
    titles = page.eval_on_selector_all("#fp32-text .wlm-word", "els => els.map(e => e.title)")
    assert len(titles) == 100 and all("p(fp32) = " in t and "p(qint8) = " in t for t in titles)


# The run with this unknown word is finished and every part of the page shows it (the panes,
# notes and table render one after the other): the final summary names the word, so does the
# pane, and a parting in the summary has its boxed word and its table.
FINISHED = """w => {
  const n = document.querySelector('#notes').innerText, t = document.querySelector('#fp32-text');
  if (!n.includes('Step by step') || !n.includes(w) || !t.innerText.includes(w)) return false;
  if (!n.includes('Identical for the first')) return true;
  const d = t.querySelector('.wlm-diverge');
  return !!d && document.querySelector('#parting').innerText.includes(d.innerText.trim());
}"""


def parting_seed(prompt: str) -> int:
    """A seed whose run of the served app parts (found through the app itself, in this process)."""
    import sys
    app = sys.modules["demo"].app
    for seed in range(200):
        *_, last = app.side.generate(prompt, 100, 1.0, seed, False)
        if "Identical for the first" in last[4]:
            return seed
    pytest.fail(f"no seed of 200 made the tiny models part after {prompt!r}")


def test_parting_word_shows_both_top_words(page):
    seed = parting_seed("w3 zzpart")
    tab(page, "Side by side")
    page.fill("#prompt textarea", "w3 zzpart")
    page.fill("#seed textarea, #seed input", str(seed))
    page.locator("#seed textarea, #seed input").blur()       # commit the value before the click reads it
    page.wait_for_timeout(200)
    page.click("#generate")
    page.wait_for_function(FINISHED, arg="zzpart", timeout=60_000)
    notes = page.inner_text("#notes")
    assert "Identical for the first" in notes and f"--seed {seed} " in notes
    marked = page.inner_text("#fp32-text .wlm-diverge")
    table = page.inner_text("#parting")
    assert "Where the texts part" in table and "p(fp32)" in table and "p(qint8)" in table
    assert marked.strip() in table
    rows = page.eval_on_selector_all("#parting tbody tr", "els => els.length")
    assert rows >= 5


def test_non_default_variant_in_the_right_pane(page):
    tab(page, "Side by side")
    page.click("#variant input")
    page.get_by_role("option", name="ort-int8", exact=True).click()
    page.wait_for_function("() => document.querySelector('#right-title').innerText.includes('ort-int8')",
                           timeout=30_000)
    page.fill("#prompt textarea", "w2 zzvariant")
    page.click("#generate")
    page.wait_for_function("() => { const n = document.querySelector('#notes').innerText; return n.includes("
                           "'Step by step') && n.includes('zzvariant') && n.includes('ort-int8'); }", timeout=90_000)
    titles = page.eval_on_selector_all("#qint8-text .wlm-word", "els => els.map(e => e.title)")
    assert titles and all("p(ort-int8) = " in t for t in titles)


def test_measure(page):
    out = ROOT / "test-output"
    tab(page, "Measure")
    page.click("#measure-variants label:has-text('qint8-per-channel')")       # a second variant
    page.click("#measure")
    page.wait_for_function(
        "() => document.querySelector('#status') && document.querySelector('#status').innerText.includes('test tokens')",
        timeout=60_000)
    table = page.inner_text("#table")
    assert "fp32" in table and "qint8" in table and "speed-up" in table and "top-1 agree" in table
    assert "qint8-per-channel" in table and "engine" in table
    assert page.eval_on_selector_all("#size-trade svg .point", "els => els.length") == 3      # each model named
    page.wait_for_timeout(1500)                      # let the plots draw
    page.screenshot(path=str(out / "demo.png"), full_page=True)
    assert (out / "demo.png").stat().st_size > 10_000


def test_where_int8_loses(page):
    """The panel on the tiny model: Analyse fills the summary, the table and the three charts;
    the weights picture follows the chosen part."""
    tab(page, "Where int8 loses")
    page.click("#analyse")
    page.wait_for_function("() => { const s = document.querySelector('#inspect-status'); "
                           "return s && s.innerText.includes('The part that costs most'); }", timeout=90_000)
    marks = {k: page.eval_on_selector_all(f"#{k} svg {m}", "els => els.length")
             for k, m in (("sqnr-plot", ".dot"), ("sensitivity-plot", ".dot"), ("parts-time-plot", ".bar"))}
    assert marks["sqnr-plot"] >= 9 and marks["sensitivity-plot"] >= 5 and marks["parts-time-plot"] >= 8, marks
    names = page.inner_text("#parts-time-plot")
    assert "fp32" in names and "qint8" in names and "decoder" in names        # every model and part named
    assert "lstm.0" in page.inner_text("#inspect-table")
    assert page.eval_on_selector_all("#hist-plot svg .line", "els => els.length") == 2     # per tensor, per channel
    page.click("#hist-part input")
    page.get_by_role("option", name="lstm.1", exact=True).click()
    page.wait_for_function("() => document.querySelector('#hist-plot').innerText.includes('lstm.1')", timeout=30_000)
    assert "weight_hh" in page.inner_text("#hist-plot")
    page.locator("#inspect-status").scroll_into_view_if_needed()
    page.screenshot(path=str(ROOT / "test-output" / "where-int8-loses.png"), full_page=True)
