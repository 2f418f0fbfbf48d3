"""Readable rendering of WikiText-2 tokens, as plain text or HTML."""
from __future__ import annotations

import html
import re

_JOINERS = {"@-@": "-", "@,@": ",", "@.@": "."}
_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")", "]", "'s", "n't", "'", "%", "'re", "'ve", "'m", "'ll", "'d"}
_NO_SPACE_AFTER = {"(", "[", "$"}


def pieces(words: list[str], raw: bool = False, glue: bool = True) -> list[tuple[str, str]]:
    """(separator, text) per token. Readable mode: ``<eos>`` is a line break, ``@-@`` joins,
    no space before punctuation. Raw mode: tokens as they are, one space apart.
    ``glue``: no separator before the first token."""
    out = []
    for w in words:
        if raw:
            out.append(("" if glue else " ", w))
            glue = False
        elif w == "<eos>":
            out.append(("", "\n"))
            glue = True
        elif w in _JOINERS:
            out.append(("", _JOINERS[w]))
            glue = True
        else:
            out.append(("" if glue or w in _NO_SPACE_BEFORE else " ", w))
            glue = w in _NO_SPACE_AFTER
    return out


def detokenize(words: list[str]) -> str:
    """Join tokens as prose (see ``pieces``); at most one blank line in a row."""
    return re.sub(r"\n{3,}", "\n\n", "".join(s + t for s, t in pieces(words)))


def md_escape(text: str) -> str:
    """A word as literal Markdown text (no emphasis, tags or table cells from its marks: ``<unk>``
    stays ``<unk>``, not an HTML tag that swallows what follows)."""
    return re.sub(r"([\\`*_\[\]|<>#~])", r"\\\1", text)


def format_p(p: float) -> str:
    """A probability for people: 0.351, 0.0042, 7.3e-05."""
    return f"{p:.3f}" if p >= 0.01 else f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


SHADE_RGB = "234, 88, 12"     # the shading of a word that changed (orange; in the Your text view: made less likely)
FULL_SHADE = 0.25             # the value (total variation, |Δ log p| in nats) shaded fully


def shade(value: float, full: float = FULL_SHADE) -> float:
    """Background opacity for how much a word changed: 0 at 0, 0.55 (full) at ``full`` and above,
    linear in between. The side by side shades total variation, the Your text view |Δ log p|."""
    return round(min(1.0, abs(value) / full) * 0.55, 3)


def render_pane(prompt: list[str], steps: list, names: tuple[str, str], raw: bool = False,
                mark: int | None = None) -> str:
    """HTML of one pane of a side-by-side run: prompt (muted, still 4.5:1 or more against the
    background in both themes), then each generated word with
    both models' probabilities on hover (``title``) and as data attributes, shaded by how far
    the two distributions were apart at that step (total variation). Words the other model
    would not have picked (same noise, same context) are underlined with a dotted line, so
    the view does not rely on colour alone; the word at ``mark`` (where the texts part) is
    boxed. ``steps`` are ``wlm.pair.WordInfo`` objects. The details show on hover (``title``)
    and on tap or keyboard focus (``data-tip``, drawn by ``WORD_CSS``)."""
    head = pieces(prompt, raw)
    body = pieces([s.word for s in steps], raw, glue=not prompt)
    parts = [f'<span class="wlm-prompt" style="opacity: 0.75">{html.escape(s + t)}</span>' for s, t in head]
    a, b = (html.escape(n) for n in names)
    for i, ((sep, text), st) in enumerate(zip(body, steps)):
        title = (f"{st.word}: p({a}) = {format_p(st.p[0])}, p({b}) = {format_p(st.p[1])}; "
                 f"total variation {st.tv:.3f}"
                 + ("" if st.same else "; the other model would have picked another word here"))
        style = f"background: rgba({SHADE_RGB}, {shade(st.tv)})"
        cls = "wlm-word"
        if not st.same:
            cls += " wlm-flip"
            style += "; text-decoration: underline dotted 2px"
        if i == mark:
            cls += " wlm-diverge"
            style += "; outline: 2px solid currentColor; border-radius: 3px"
        parts.append(html.escape(sep) + f'<span class="{cls}" style="{style}" title="{html.escape(title)}" '
                     f'tabindex="0" data-tip="{html.escape(title)}" '
                     f'data-p-ref="{st.p[0]:.6f}" data-p-other="{st.p[1]:.6f}" data-tv="{st.tv:.6f}">'
                     f'{html.escape(text)}</span>')
    text = "".join(parts)
    if not raw:
        text = re.sub(r"\n{3,}", "\n\n", text)
    return f'<div class="wlm-text" style="white-space: pre-wrap; line-height: 1.7">{text}</div>'


# A word's details on tap or focus as well as on hover: touch screens have no hover.
WORD_CSS = """
.wlm-word { position: relative; cursor: help; }
.wlm-word:focus { outline: 2px solid var(--color-accent, #f97316); outline-offset: 1px; }
.wlm-word:focus::after { content: attr(data-tip); position: absolute; left: 0; top: 1.7em; z-index: 30;
  width: max-content; max-width: min(280px, 80vw); white-space: normal; line-height: 1.35;
  background: var(--background-fill-primary, #fff); color: var(--body-text-color, #111);
  border: 1px solid var(--border-color-primary, #ccc); border-radius: 6px; padding: 4px 8px; font-size: 0.85em; }
.wlm-legend { font-size: 0.9em; margin-top: 4px; }
"""
