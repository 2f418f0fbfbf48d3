"""Readable rendering of WikiText-2 tokens."""
from __future__ import annotations

import re

_JOINERS = {"@-@": "-", "@,@": ",", "@.@": "."}
_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")", "]", "'s", "n't", "'", "%", "'re", "'ve", "'m", "'ll", "'d"}
_NO_SPACE_AFTER = {"(", "[", "$"}


def detokenize(words: list[str]) -> str:
    """Join tokens as prose: ``<eos>`` starts a new line, ``@-@`` joins, no space before
    punctuation. ``= = Title = =`` headings are kept as they are."""
    out: list[str] = []
    glue = True          # no space before the next token
    for w in words:
        if w == "<eos>":
            out.append("\n")
            glue = True
            continue
        if w in _JOINERS:
            out.append(_JOINERS[w])
            glue = True
            continue
        if not glue and w not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(w)
        glue = w in _NO_SPACE_AFTER
    return re.sub(r"\n{3,}", "\n\n", "".join(out))


def first_difference(a: list[str], b: list[str]) -> int | None:
    """Index of the first position where two word lists differ (None if one is a prefix of the other
    and both have the same length)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))
