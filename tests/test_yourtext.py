"""The "Your text" panel (wlm.yourtext): one shaded, focusable span per word with its numbers, the
summary's perplexities equal to the score's, the work done in CPU turns at the panel's threads."""
import math
import re
from collections import Counter
from contextlib import contextmanager
from html.parser import HTMLParser

import pytest
import torch

from tests.conftest import SHIPPED_CHECKPOINT, sharpen
from wlm.checkpoint import load_checkpoint
from wlm.quantize import quantize
from wlm.score import CHUNK, MAX_SCORE_CHARS, score
from wlm.turns import CpuTurns
from wlm.variants import VariantCache
from wlm.text import shade
from wlm.yourtext import CSS, EXAMPLES, LESS, MORE, YourText


class CountingTurns(CpuTurns):
    """A CpuTurns that counts the turns it grants, by kind."""

    def __init__(self):
        super().__init__()
        self.granted = Counter()

    @contextmanager
    def turn(self, kind):
        with super().turn(kind) as t:
            self.granted[kind] += 1
            yield t


class Spy(torch.nn.Module):
    """A model that records, at every forward, whether a generate turn was running and the
    thread count."""

    def __init__(self, model, turns):
        super().__init__()
        self.model, self.turns, self.calls = model, turns, []

    def init_hidden(self, bsz):
        return self.model.init_hidden(bsz)

    def forward(self, ids, hidden):
        self.calls.append((self.turns.snapshot().running["generate"], torch.get_num_threads(), len(ids)))
        return self.model(ids, hidden)


class Spans(HTMLParser):
    """The attributes of every span of class wlm-w, and whether a wlm-score container holds them."""

    def __init__(self):
        super().__init__()
        self.words, self.containers = [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "wlm-score" in (a.get("class") or "").split():
            self.containers += 1
        if tag == "span" and "wlm-w" in (a.get("class") or "").split():
            self.words.append(a)


def spans(html: str) -> Spans:
    p = Spans()
    p.feed(html)
    return p


@pytest.fixture
def sharp_model(tiny_corpus):
    """The tiny model with its weights scaled up: far from uniform, so int8 changes its mind."""
    from wlm.model import LSTMModel, ModelConfig
    torch.manual_seed(0)
    model = LSTMModel(ModelConfig(len(tiny_corpus.dictionary), ninp=16, nhid=12, nlayers=2)).eval()
    sharpen(model)
    return model


TEXT = "w1 w2 , w3 @-@ w4 . w5 zebra w6 w7 w8 w9 " * 12       # 156 words: chunks of 64, 64 and 28


@pytest.fixture
def one_thread():
    """torch at 1 thread, whatever an earlier test left, so the panel's 2 threads can be told apart."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_panel_html_summary_and_turns(sharp_model, tiny_corpus, one_thread):
    turns = CountingTurns()
    models = {"fp32": Spy(sharp_model, turns), "qint8": Spy(quantize(sharp_model), turns)}
    panel = YourText(models.__getitem__, tiny_corpus.dictionary, turns, threads=2)
    html, notes = panel.run(TEXT, "qint8")
    want = score({"fp32": sharp_model, "qint8": models["qint8"].model}, tiny_corpus.dictionary, TEXT)

    # the work ran in generate turns, one chunk of both models per turn, at the panel's 2 threads; then
    # one more turn for what "dynamic" means: the same chunks again, and the whole text in one call
    chunks = math.ceil(len(want.tokens) / CHUNK)
    assert turns.granted == {"generate": chunks + 1}
    n = len(want.tokens)
    for spy in models.values():
        assert [c[2] for c in spy.calls] == [CHUNK, CHUNK, n - 2 * CHUNK] * 2 + [n]
        assert all(running == 1 and threads == 2 for running, threads, _ in spy.calls)
    assert "What \"dynamic\" means" in notes and "calls of 64 tokens" in notes
    assert torch.get_num_threads() == 1                          # restored after each turn

    # one focusable span per word, in a wlm-score container, with the word's numbers
    found = spans(html)
    assert found.containers == 1 and len(found.words) == len(want.tokens) == 156
    for i, a in enumerate(found.words):
        assert a["tabindex"] == "0" and a["title"] == a["data-tip"]
        assert float(a["data-dlogp"]) == pytest.approx(want.dlogp[i], abs=1e-6)
        assert float(a["data-kl"]) == pytest.approx(want.kl[i], abs=1e-6)
        assert "p(fp32) = " in a["title"] and "p(qint8) = " in a["title"] and "Δ log p = " in a["title"]
        colour = LESS if want.dlogp[i] < 0 else MORE
        assert f"background: rgba({colour}, {shade(want.dlogp[i])})" in a["style"]
        assert ("wlm-top1-differs" in a["class"]) == (not want.top1_same[i])
        assert ("wlm-unk" in a["class"]) == (want.words[i] == "zebra")
    assert any(d < 0 for d in want.dlogp) and any(d > 0 for d in want.dlogp)
    assert "wlm-score-legend" in html

    # the summary: both perplexities, exp(loss) of the score, with their standard errors
    found = {name: (float(p), float(se)) for name, p, se in
             re.findall(r"(\w+) perplexity ([\d.]+) ± ([\d.]+)", notes)}
    assert set(found) == {"fp32", "qint8"}
    for name, m in want.models.items():
        assert found[name][0] == pytest.approx(math.exp(m.loss), abs=0.05)
        assert found[name] == (round(m.ppl, 1), round(m.ppl * m.loss_se, 1))
    assert f"{want.top1:.1%}" in notes and f"{want.kl_mean:.4f}" in notes
    assert "read as \\<unk\\>: zebra" in notes


def test_shading_follows_the_side_by_sides_scale():
    assert [shade(d) for d in (0, 0.125, -0.125, 0.25, 3.0)] == [0.0, 0.275, 0.275, 0.55, 0.55]


@pytest.mark.parametrize("text,message", [
    ("", "text is empty"), ("   ", "text is empty"), (None, "text must be a string"), (5, "text must be a string"),
    ("x " * MAX_SCORE_CHARS, "the limit is MAX_SCORE_CHARS"), ("zebra okapi", "nothing the models know"),
])
def test_bad_text_runs_no_model(tiny_model, tiny_corpus, text, message):
    turns = CountingTurns()
    panel = YourText({"fp32": tiny_model, "qint8": tiny_model}.__getitem__, tiny_corpus.dictionary, turns, 1)
    with pytest.raises(ValueError, match=message):
        panel.run(text, "qint8")
    assert not turns.granted


def test_css_shows_the_tip_on_focus():
    assert ".wlm-score .wlm-w:focus::after" in CSS and "attr(data-tip)" in CSS
    assert "var(--body-text-color)" in CSS                        # follows light and dark themes


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped checkpoint in data/")
def test_examples_on_the_shipped_checkpoint():
    ckpt = load_checkpoint(SHIPPED_CHECKPOINT)
    variants = VariantCache(ckpt)
    panel = YourText(lambda n: variants.get(n).model, ckpt.dictionary, CpuTurns(), 1)
    assert len(EXAMPLES) == 3 and all(len(e) <= MAX_SCORE_CHARS for e in EXAMPLES)
    unknown = []
    for text in EXAMPLES:
        html, notes = panel.run(text, "qint8")
        assert len(spans(html).words) == len(ckpt.dictionary.tokenize(text))
        unknown.append(len(ckpt.dictionary.encode(text).unknown))
    assert unknown[0] <= 1 and unknown[2] >= 5          # the last one is full of rare names
