"""The "Your text" panel: fp32 and a variant read a pasted text, and the page shows where int8
changes its mind (``wlm.score`` does the scoring; this module runs it in CPU turns and draws it).

Each word is shaded by how much the variant changed its probability, |Δ log p|, on the side by
side's scale (``wlm.text``: the same opacities, full at ``FULL_SHADE_DLOGP``): orange where the
variant made the word less likely, blue where more. A dotted underline marks a position where
the two models rank a different word first, so the view does not rely on colour alone.
Every word carries its numbers in ``title`` (shown on hover) and ``data-tip``, which ``CSS``
shows on focus: a tap on a touch screen, or the keyboard (as ``wlm.text``'s panes do).
"""
from __future__ import annotations

import html
import math
import threading
from typing import Callable

from .data import Dictionary
from .dynamic import chunking, explain
from .score import CHUNK, ScoreResult, Scorer, read_text, se_note
from .stats import fmt_pm
from .text import FULL_SHADE, SHADE_RGB, format_p, md_escape, pieces, shade
from .threads import num_threads
from .turns import CpuTurns

FULL_SHADE_DLOGP = FULL_SHADE     # |Δ log p| (nats) at full shade, as total variation 0.25 in the side by side
LESS, MORE = SHADE_RGB, "37, 99, 235"     # the variant made the word less / more likely (RGB)
TOP_WORDS = 10

EXAMPLES = [
    # WikiText-like: an encyclopedia sentence
    "The song was recorded at a small studio in Manchester in 1994, and was released as the second single "
    "from the band's third album, reaching number twelve on the UK Singles Chart.",
    # news-like
    "City officials said on Tuesday that the new bridge over the river would open to traffic next spring, "
    "two years later than planned. The cost of the project has risen to more than $300 million, mostly "
    "because of delays in the delivery of steel, according to a report published by the transport department. "
    "The mayor told reporters that the city would not ask residents to pay for the overrun.",
    # rare names: many words outside the vocabulary
    "Aldous Quennell-Varga and Ingrid Thorvaldsdottir founded the Kvarnholm Institute in Tromsø in 1987, "
    "with a grant from the Oyelaran Trust and the support of the botanist Wenceslas Pruszynski.",
]

FIRST = EXAMPLES[1]       # the panel opens with it scored: 76 tokens, two calls of the panel's 64

CSS = """
.wlm-score .wlm-w { position: relative; border-radius: 3px; cursor: help; }
.wlm-score .wlm-w:focus { outline: 2px solid var(--body-text-color); outline-offset: 1px; }
.wlm-score .wlm-w:focus::after {
  content: attr(data-tip); position: absolute; left: 0; top: 100%; z-index: 20; margin-top: 2px;
  width: max-content; max-width: 22em; white-space: pre-line; font-size: 0.85em; line-height: 1.4;
  padding: 4px 8px; border-radius: 4px; pointer-events: none;
  color: var(--body-text-color); background: var(--background-fill-primary);
  border: 1px solid var(--border-color-primary); box-shadow: 0 2px 6px rgba(0, 0, 0, 0.25);
}
.wlm-score-legend { font-size: 0.85em; margin-top: 0.6em; color: var(--body-text-color); }
.wlm-score-legend .wlm-swatch { display: inline-block; padding: 0 0.4em; border-radius: 3px; color: var(--body-text-color); }
"""


def word_tip(result: ScoreResult, i: int) -> str:
    """The details of word ``i``: both probabilities, Δ log p, KL (lines of plain text)."""
    ref, var = result.names
    a, b = (math.exp(result.models[n].logp[i]) for n in (ref, var))
    d = result.dlogp[i]
    lines = [f"{result.words[i]}" + (f" (read as {result.tokens[i]})" if result.tokens[i] != result.words[i] else ""),
             f"p({ref}) = {format_p(a)}, p({var}) = {format_p(b)}",
             f"Δ log p = {fmt_pm(d, None, 3)} (×{math.exp(d):.3f}), KL = {result.kl[i]:.4f} nats"]
    if not result.top1_same[i]:
        lines.append(f"here {ref} and {var} rank a different word first")
    return "\n".join(lines)


def render_text(result: ScoreResult) -> str:
    """HTML of the text, each word a focusable span shaded by |Δ log p|, with its details in
    ``title`` and ``data-tip``, then a legend."""
    parts = []
    for i, (sep, shown) in enumerate(pieces(result.words)):
        d = result.dlogp[i]
        style = f"background: rgba({LESS if d < 0 else MORE}, {shade(d)})"
        cls = "wlm-w"
        if not result.top1_same[i]:
            cls += " wlm-top1-differs"
            style += "; text-decoration: underline dotted 2px"
        if result.tokens[i] != result.words[i]:
            cls += " wlm-unk"
            style += "; font-style: italic"
        tip = html.escape(word_tip(result, i))
        parts.append(html.escape(sep) + f'<span tabindex="0" class="{cls}" style="{style}" title="{tip}" '
                     f'data-tip="{tip}" data-dlogp="{d:.6f}" data-kl="{result.kl[i]:.6f}">{html.escape(shown)}</span>')
    return (f'<div class="wlm-text wlm-score" style="white-space: pre-wrap; line-height: 1.8">{"".join(parts)}</div>'
            + legend(*result.names))


def legend(reference: str, variant: str) -> str:
    """What the shading, colours and underline mean."""
    ref, var = html.escape(reference), html.escape(variant)
    steps = (0.05, 0.1, FULL_SHADE_DLOGP)
    less = " ".join(f'<span class="wlm-swatch" style="background: rgba({LESS}, {shade(s)})">{s:g}</span>'
                    for s in steps)
    more = " ".join(f'<span class="wlm-swatch" style="background: rgba({MORE}, {shade(s)})">{s:g}</span>'
                    for s in steps)
    return (f'<div class="wlm-score-legend">Shade: |Δ log p|, how much {var} changed the word\'s probability '
            f'against {ref} (nats, full at {FULL_SHADE_DLOGP:g} and above, ×{math.exp(FULL_SHADE_DLOGP):.2f}). '
            f'{var} made the word less likely: {less}; more likely: {more}. '
            f'<span style="text-decoration: underline dotted 2px">Dotted underline</span>: the two models rank a '
            f'different word first there. <i>Italic</i>: not in the vocabulary, read as &lt;unk&gt;. '
            f'Hover or tap a word for its numbers.</div>')


def summary(result: ScoreResult) -> str:
    """Markdown: both perplexities with ± one standard error, the agreement, the words the
    variant changed most, the unknown words; the method last."""
    ref, var = result.names
    n = len(result.tokens)
    m = result.models
    ppl = " · ".join(f"**{name} perplexity {fmt_pm(s.ppl, s.ppl_se, 1, sign=False)}**" for name, s in m.items())
    losses = " and ".join(fmt_pm(s.loss, s.loss_se, 3, sign=False) for s in m.values())
    out = [f"{ppl} on these {n} words (loss {losses} nats).",
           f"Top-1 agreement **{result.top1:.1%}** ({sum(result.top1_same)} of {n} positions) · mean "
           f"KL({ref} ‖ {var}) **{result.kl_mean:.4f}** nats."]
    rows = [f"| {md_escape(result.words[i])} | {format_p(math.exp(m[ref].logp[i]))} | "
            f"{format_p(math.exp(m[var].logp[i]))} | {fmt_pm(result.dlogp[i], None, 3)} |" for i in result.most_changed(TOP_WORDS)]
    out.append(f"Words {var} changed most:\n\n| word | p({ref}) | p({var}) | Δ log p |\n|---|---:|---:|---:|\n"
               + "\n".join(rows))
    if result.unknown:
        out.append("Not in the vocabulary, read as \\<unk\\>: " + ", ".join(md_escape(w) for w in result.unknown))
    out.append(f"Each word is predicted from the words before it, the first after a new line, both models from a "
               f"zero state. {se_note(n)}. KL per word between the two models' distributions for it.")
    return "\n\n".join(out)


class YourText:
    """The panel's logic: score a text with the reference and a variant, in CPU turns.

    Args:
        get_model: name -> model (e.g. ``lambda n: variants.get(n).model``); called outside turns,
            since a first build may take seconds (and takes its own turn).
        dictionary: the checkpoint's vocabulary.
        turns: the app's scheduler; each chunk of ``wlm.score.CHUNK`` tokens (both models) is
            one ``generate`` turn, so a long text shares the CPU like a Generate does.
        threads: the thread count every turn runs at.
        reference: the model the variant is compared with.
        variant_arg: checks and names the variant asked for (e.g. ``QuantDemo.variant_arg``:
            the default for an empty one, ValueError naming the field for a wrong one).
    Example:
        >>> panel = YourText(lambda n: variants.get(n).model, ckpt.dictionary, CpuTurns(), 1)
        >>> text_html, notes = panel.run(EXAMPLES[0], "qint8")
    """

    def __init__(self, get_model: Callable[[str], object], dictionary: Dictionary, turns: CpuTurns,
                 threads: int, reference: str = "fp32", variant_arg: Callable[[object], str] | None = None):
        self.get_model, self.dictionary, self.turns = get_model, dictionary, turns
        self.threads, self.reference = threads, reference
        self.variant_arg = variant_arg or (lambda v: v)
        self._first = None
        self._first_lock = threading.Lock()

    def score(self, text, variant: str) -> ScoreResult:
        """Both models on ``text``, one chunk of both models per CPU turn. ValueError (naming
        ``text``) for a bad text, (naming ``variant``) for a variant not offered."""
        words, ids, unknown = read_text(self.dictionary, text)
        variant = self.variant_arg(variant)
        if variant == self.reference:
            raise ValueError(f"variant must differ from the reference {self.reference!r}")
        models = {self.reference: self.get_model(self.reference), variant: self.get_model(variant)}
        scorer = Scorer(models, self.dictionary, ids)
        while not scorer.done:
            with self.turns.generate(), num_threads(self.threads):
                scorer.step()
        return scorer.result(words, unknown)

    def run(self, text, variant: str) -> tuple[str, str]:
        """(HTML of the shaded text with its legend, Markdown summary) for the page; the summary ends
        with what cutting the text into calls differently does (``wlm.dynamic``)."""
        result = self.score(text, variant)
        models = {n: self.get_model(n) for n in result.names}
        with self.turns.generate(), num_threads(self.threads):
            d = chunking(models, self.dictionary, result.ids, CHUNK)
        return render_text(result), summary(result) + "\n\n" + explain(d, *result.names)

    def first_view(self) -> tuple[str, str]:
        """The panel as it opens: ``FIRST`` (an example longer than one call) scored by the default
        variant, computed once (on the first page load, in CPU turns), then shown to every visitor."""
        with self._first_lock:
            if self._first is None:
                self._first = self.run(FIRST, None)
            return self._first
