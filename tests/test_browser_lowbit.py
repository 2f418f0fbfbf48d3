"""How low can it go, in a real browser on the real checkpoint and the real test split: a visitor
picks the 2-bit preset in Your recipe and writes with it, and the side by side's right pane is that
recipe, parting from fp32 within a few words; the ladder's cliff and budget curve are on the page in
light and dark, their text legible. Screenshots go to test-output/."""
import re

import pytest

from tests.conftest import ROOT
from tests.test_browser import chromium, serve_shipped
from tests.test_browser_glance import CONTRAST

pytestmark = [pytest.mark.browser, pytest.mark.wikitext]
TWO_BITS = "everything at 2 bits, groups of 32 (falls apart)"


@pytest.fixture(scope="module")
def lowbit_url(tmp_path_factory, wikitext):
    yield from serve_shipped({"WLM_DATA": str(wikitext), "WLM_CACHE": str(tmp_path_factory.mktemp("lowbit-cache"))})


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


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
    page.wait_for_function(                                                     # the recipe's notes, not the first's
        "() => { const t = (document.querySelector('#notes') || {}).innerText || '';"
        " return t.includes('Step by step') && t.includes('with --recipe'); }", timeout=180_000)
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
@pytest.mark.parametrize("size", [(1400, 1000), (390, 844)])
def test_the_ladder_and_the_budget_curve_read_in_both_themes(lowbit_url, browser, scheme, size):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]}, color_scheme=scheme)
    page.goto(lowbit_url + f"?__theme={scheme}")
    page.wait_for_selector("#scorecard .wlm-card", timeout=60_000)
    tab = page.get_by_role("tab", name="How low can it go")
    if not tab.is_visible():                                   # a phone: the tabs fold into a menu
        page.locator(".overflow-menu button").first.click()
        tab = page.locator(".overflow-dropdown button", has_text="How low can it go")
    tab.click()
    page.wait_for_selector("#ladder-cliff svg.wlm-chart", timeout=60_000)
    lines = page.eval_on_selector_all("#ladder-cliff g.line title", "els => els.map(e => e.textContent)")
    assert {"embedding", "lstm.0", "lstm.4", "decoder", "all parts"} <= set(lines), lines
    assert page.eval_on_selector_all("#ladder-budget g.point", "els => els.length") >= 5   # 8-bit variants and more
    cliff, budget = (page.locator(f"#ladder-{c} svg.wlm-chart").bounding_box() for c in ("cliff", "budget"))
    if size[0] < 800:                                          # a phone: stacked, each the page's width
        assert budget["y"] >= cliff["y"] + cliff["height"] - 1 and cliff["width"] > 0.7 * size[0], (cliff, budget)
    else:                                                      # side by side
        assert budget["x"] >= cliff["x"] + cliff["width"] - 1 and abs(budget["y"] - cliff["y"]) < 40, (cliff, budget)
    legible = page.evaluate(CONTRAST.replace("svg.wlm-chart text, #scorecard .wlm-card *, #scorecard .wlm-card-note",
                                             "#ladder-cliff svg.wlm-chart text, #ladder-budget svg.wlm-chart text"))
    assert legible and not [t for t in legible if t[1] < 4.5], legible
    page.screenshot(path=str(ROOT / "test-output" / f"ladder-{scheme}-{size[0]}.png"), full_page=True)
    page.close()
