"""How low can it go, in a real browser on the real checkpoint and the real test split: a visitor
picks the 2-bit preset in Your recipe and writes with it, and the side by side's right pane is that
recipe, parting from fp32 within a few words; the ladder's cliff and budget curve are on the page in
light and dark, their text legible. Screenshots go to test-output/."""
import re
import shutil

import pytest

from tests.conftest import ROOT, SHIPPED_CHECKPOINT
from tests.test_browser import ARGS, CHROMIUM
from tests.test_browser_glance import CONTRAST

pytestmark = [pytest.mark.browser, pytest.mark.wikitext]
TWO_BITS = "everything at 2 bits, groups of 32 (falls apart)"


@pytest.fixture(scope="module")
def lowbit_url(tmp_path_factory, wikitext):
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    import sys
    mp = pytest.MonkeyPatch()
    mp.setenv("WLM_DATA", str(wikitext))
    mp.setenv("WLM_CACHE", str(tmp_path_factory.mktemp("lowbit-cache")))
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


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def choose(page, elem_id: str, option: str) -> None:
    page.click(f"#{elem_id} input")
    page.get_by_role("option", name=option, exact=True).click()


def test_your_2_bit_recipe_writes_in_the_side_by_side_and_falls_apart(lowbit_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(lowbit_url)
    page.wait_for_selector("#qint8-text .wlm-word", timeout=120_000)          # the first generation is there
    page.get_by_role("tab", name="Your recipe").click()
    choose(page, "recipe-preset", TWO_BITS)
    page.wait_for_function("() => document.querySelector('#recipe-decoder input').value === 'int2-g32'",
                           timeout=30_000)
    page.click("#recipe-write")
    page.wait_for_function("() => (document.querySelector('#right-title') || {}).innerText?.includes('recipe:')",
                           timeout=180_000)
    page.wait_for_function("() => (document.querySelector('#notes') || {}).innerText?.includes('Step by step')",
                           timeout=180_000)
    title = page.inner_text("#right-title")
    assert "embedding=int2-g32 lstm=int2-g32 decoder=int2-g32" in title and "computed in fp32" in title
    notes = page.inner_text("#notes")
    parted = re.search(r"Identical for the first (\d+) of 100 words", notes)
    assert parted and int(parted.group(1)) <= 5, notes                        # 2 bits: apart within a few words
    left = page.eval_on_selector_all("#fp32-text .wlm-word", "els => els.map(e => e.textContent)")
    right = page.eval_on_selector_all("#qint8-text .wlm-word", "els => els.map(e => e.textContent)")
    assert len(left) == len(right) == 100 and sum(a != b for a, b in zip(left, right)) > 50
    assert "no speed claimed" in page.inner_text("#qint8-stats")
    card = page.inner_text("#scorecard")
    assert "no speed claimed" in card and "quick check of your recipe" in card
    page.get_by_role("tab", name="Your recipe").click()
    status = page.inner_text("#recipe-status")
    assert re.search(r"[0-9.]+ MB packed file", status) and "KL" in status
    page.screenshot(path=str(ROOT / "test-output" / "recipe-2bit-light.png"), full_page=True)
    page.get_by_role("tab", name="Side by side").click()
    page.screenshot(path=str(ROOT / "test-output" / "recipe-2bit-side.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_ladder_and_the_budget_curve_read_in_both_themes(lowbit_url, browser, scheme):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, color_scheme=scheme)
    page.goto(lowbit_url + f"?__theme={scheme}")
    page.get_by_role("tab", name="How low can it go").click()
    page.wait_for_selector("#ladder-cliff svg.wlm-chart", timeout=60_000)
    lines = page.eval_on_selector_all("#ladder-cliff g.line title", "els => els.map(e => e.textContent)")
    assert {"embedding", "lstm.0", "lstm.4", "decoder", "all parts"} <= set(lines), lines
    assert page.eval_on_selector_all("#ladder-budget g.point", "els => els.length") >= 5   # 8-bit variants and more
    legible = page.evaluate(CONTRAST.replace("svg.wlm-chart text, #scorecard .wlm-card *, #scorecard .wlm-card-note",
                                             "#ladder-cliff svg.wlm-chart text, #ladder-budget svg.wlm-chart text"))
    assert legible and not [t for t in legible if t[1] < 4.5], legible
    page.screenshot(path=str(ROOT / "test-output" / f"ladder-{scheme}.png"), full_page=True)
    page.close()
