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


def render_html(prompt: list[str], words: list[str], raw: bool = False, mark: int | None = None) -> str:
    """HTML of prompt (muted) then generated words; the word at index ``mark`` is highlighted."""
    head = pieces(prompt, raw)
    body = pieces(words, raw, glue=not prompt)
    parts = [f'<span class="wlm-prompt" style="opacity: 0.6">{html.escape(s + t)}</span>' for s, t in head]
    for i, (s, t) in enumerate(body):
        t = html.escape(t)
        if i == mark:
            t = (f'<mark class="wlm-diverge" style="background: #fde047; color: #111" '
                 f'title="first word where fp32 and qint8 differ">{t}</mark>')
        parts.append(html.escape(s) + t)
    text = "".join(parts)
    if not raw:
        text = re.sub(r"\n{3,}", "\n\n", text)
    return f'<div class="wlm-text" style="white-space: pre-wrap">{text}</div>'


def first_difference(a: list[str], b: list[str]) -> int | None:
    """Index of the first position where two word lists differ (None if they are equal)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))
