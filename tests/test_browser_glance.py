"""At a glance, in a real browser on the real checkpoint and the shipped results, offline: the
scorecard shows the shipped record's figures, every variant of the record is in the table on
load, chart and scorecard text reads in light and dark (contrast >= 4.5:1, computed from the
rendered page), and an offline Measure leaves the shown figures in place. Screenshots go to
test-output/ (light and dark, 1400x900 and 390x844)."""
import json

import pytest

from tests.conftest import ROOT, SHIPPED_CHECKPOINT
from tests.test_browser import chromium, serve_shipped

pytestmark = pytest.mark.browser
SHIPPED = sorted((ROOT / "data" / "results").glob("measure-*.json"))

# WCAG contrast of every text of the charts and the scorecard against the first opaque background behind it
CONTRAST = """() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = c => { const v = c.slice(0, 3).map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
                     return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const bg = el => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
                       if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c; } return [255, 255, 255]; };
  const out = [];
  for (const el of document.querySelectorAll('svg.wlm-chart text, #scorecard .wlm-card *, #scorecard .wlm-card-note')) {
    if (!el.textContent.trim() || el.getClientRects().length === 0) continue;
    const st = getComputedStyle(el), fg = rgb(el instanceof SVGElement ? st.fill : st.color);
    const a = lum(fg), b = lum(bg(el));
    out.push([el.textContent.trim().slice(0, 30), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
  }
  return out;
}"""


@pytest.fixture(scope="module")
def glance_url(tmp_path_factory):
    yield from serve_shipped({"WLM_DATA": str(tmp_path_factory.mktemp("no-data")),     # offline: no test split
                              "WLM_DATA_MIRROR": "http://127.0.0.1:9",                    # and nothing to fetch it from
                              "WLM_CACHE": str(tmp_path_factory.mktemp("glance-cache"))})


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


def shipped_record() -> dict:
    return max((json.loads(p.read_text()) for p in SHIPPED), key=lambda r: len(r["variants"]))


def field(page, name: str) -> str:
    return page.inner_text(f'#scorecard [data-field="{name}"]').strip()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", [(1400, 900), (390, 844)])
def test_the_page_at_a_glance(glance_url, browser, scheme, size):
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": size[0], "height": size[1]}, color_scheme=scheme)
    page.goto(glance_url + (f"?__theme={scheme}"))
    page.wait_for_selector('#scorecard [data-field="speedup"]', timeout=60_000)
    if size[0] > 600:       # a generation on screen from the start: both panes written, seed 0
        page.wait_for_function("() => document.querySelectorAll('#fp32-text .wlm-word').length >= 100 && "
                               "document.querySelectorAll('#qint8-text .wlm-word').length >= 100", timeout=120_000)
    page.wait_for_timeout(800)
    tag = f"{scheme}-{size[0]}x{size[1]}"
    page.screenshot(path=str(out / f"glance-{tag}.png"))
    # the scorecard is the shipped record's: fp32 against qint8
    rec = shipped_record()
    rows = {r["model"]: r for r in rec["rows"]}
    fp, q = rows["fp32"], rows["qint8"]
    assert field(page, "size_mb") == f"{q['size_mb']:.1f} MB"
    assert field(page, "size_ratio") == f"{fp['size_mb'] / q['size_mb']:.2f}x"
    assert field(page, "speedup").startswith(f"{q['speedup']:.2f}x")
    assert field(page, "loss_change").startswith(f"{q['loss_change']:+.4f}")
    a = q["agreement"]
    assert field(page, "top1") == f"{a['top1']:.1%}" + (f" ± {a['top1_se']:.1%}" if a.get("top1_se") else "")
    assert field(page, "kl").startswith(f"{a['kl_mean']:.4f}")
    assert field(page, "ppl") == f"{fp['ppl']:.1f} → {q['ppl']:.1f}"
    if size[0] < 600:          # a phone: the scorecard is the first screen, in the theme's colours
        texts = page.evaluate(CONTRAST)
        assert len(texts) > 5 and not [t for t in texts if t[1] < 4.5]
        page.close()
        return                 # (the tabs fold into a menu there; their charts are checked at desktop width)
    # every variant of the record is in the table on load, and in every chart
    page.get_by_role("tab", name="Measure").click()
    page.wait_for_timeout(800)
    table = page.inner_text("#table")
    assert all(v in table for v in rec["variants"])
    assert page.eval_on_selector_all("#size-trade svg .point", "els => els.length") == len(rec["variants"])
    page.screenshot(path=str(out / f"glance-measure-{tag}.png"), full_page=True)
    low = [t for t in page.evaluate(CONTRAST) if t[1] < 4.5]
    page.get_by_role("tab", name="Where int8 loses").click()
    page.wait_for_timeout(800)
    page.screenshot(path=str(out / f"glance-inspect-{tag}.png"), full_page=True)
    texts = page.evaluate(CONTRAST)
    low += [t for t in texts if t[1] < 4.5]
    assert len(texts) > 50 and not low, low[:10]
    page.close()


def test_an_offline_measure_leaves_the_shown_figures_in_place(glance_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(glance_url)
    page.wait_for_selector('#scorecard [data-field="speedup"]', timeout=60_000)
    before = {f: field(page, f) for f in ("size_mb", "speedup", "loss_change", "ppl")}
    page.get_by_role("tab", name="Measure").click()
    page.wait_for_timeout(500)
    table = page.inner_text("#table")
    page.click("#slice input")
    page.get_by_role("option", name="5,000 tokens", exact=True).click()
    page.click("#measure")
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('could not be fetched')",
                           timeout=60_000)
    assert {f: field(page, f) for f in before} == before
    assert page.inner_text("#table") == table
    assert "all (245,569 tokens)" in page.input_value("#slice input")          # the controls say what is shown
    page.screenshot(path=str(ROOT / "test-output" / "glance-offline-measure.png"))
    page.close()


PARAGRAPH = ("The council voted on Tuesday to close the old bridge over the river for repairs . Engineers said "
             "the work would take two years and cost about 40 million dollars , and that a ferry would carry "
             "people across in the meantime .")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_your_text_shades_every_word_and_gives_both_perplexities(glance_url, browser, scheme):
    """A visitor pastes a paragraph (not from WikiText-2) and scores it: every word is a shaded,
    focusable span with both models' numbers, and the summary gives both perplexities."""
    from wlm.checkpoint import load_checkpoint
    from wlm.score import score
    from wlm.variants import VariantCache
    ckpt = load_checkpoint(SHIPPED_CHECKPOINT)
    cache = VariantCache(ckpt)
    want = score({"fp32": ckpt.model, "qint8": cache.get("qint8").model}, ckpt.dictionary, PARAGRAPH)
    page = browser.new_page(viewport={"width": 1400, "height": 900}, color_scheme=scheme)
    page.goto(glance_url + f"?__theme={scheme}")
    page.wait_for_selector('#scorecard [data-field="speedup"]', timeout=60_000)
    page.get_by_role("tab", name="Your text").click()
    page.wait_for_selector("#score-html .wlm-score .wlm-w", timeout=120_000)     # it opens with an example scored
    assert "What \"dynamic\" means" in page.inner_text("#score-summary")
    page.fill("#score-text textarea", PARAGRAPH)
    page.click("#score-run")
    page.wait_for_function(
        "([first, n]) => { const w = document.querySelectorAll('#score-html .wlm-score .wlm-w');"
        " return w.length === n && w[0].textContent === first; }", arg=[want.words[0], len(want.words)],
        timeout=60_000)
    words = page.eval_on_selector_all(
        "#score-html .wlm-score .wlm-w",
        "els => els.map(e => [e.textContent, e.getAttribute('tabindex'), e.getAttribute('data-tip'), "
        "getComputedStyle(e).backgroundColor])")
    assert [w[0] for w in words] == want.words
    assert all(w[1] == "0" and "p(fp32) = " in w[2] and "p(qint8) = " in w[2] for w in words)
    assert len({w[3] for w in words}) > 3                                      # shaded, not one colour
    summary = page.inner_text("#score-summary")
    for name in ("fp32", "qint8"):
        ppl = want.models[name].ppl
        assert f"{name} perplexity {ppl:.1f}" in summary
    legible = page.evaluate(CONTRAST.replace(
        "svg.wlm-chart text, #scorecard .wlm-card *, #scorecard .wlm-card-note", "#score-html .wlm-score-legend"))
    assert legible and not [t for t in legible if t[1] < 4.5], legible
    page.screenshot(path=str(ROOT / "test-output" / f"yourtext-{scheme}.png"), full_page=True)
    page.close()
