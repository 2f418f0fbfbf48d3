"""Standard errors that respect the text: batch means over blocks of consecutive tokens.

The per-token numbers of a measurement (loss, loss change, KL, top-1 agreement, overlap, Δp)
are not independent draws: neighbouring tokens share a sentence, a paragraph, an article, and
the model carries its hidden state from one to the next, so a hard stretch of text is hard
for many tokens in a row. A per-token standard error (sd / sqrt(n)) assumes independence and
is too small (on the first 20,000 test tokens, qint8's loss change: 0.0007 per token against
0.0011 by 20 blocks of 1,000).

Method: non-overlapping batch means. Cut the n tokens into k consecutive blocks of b tokens,
take each block's mean, and estimate the standard error of the overall mean as
sd(block means) / sqrt(k). Blocks much longer than the correlation length have nearly
independent means, so this holds whatever the correlation inside a block. The tokens past
the last whole block count in the mean itself, not in the spread.

Block length (``block_tokens``): n / 20, so there are always 20 blocks (1,000 tokens on the
first 20,000 test tokens, 12,278 on the whole split). Why: on WikiText-2 the losses are
correlated over thousands of tokens (an article, ~4,000 tokens, keeps its topic), so the
batch-means error keeps growing with the block up to article lengths and levels off only
near 10,000 tokens (shipped checkpoint, whole test split, qint8's loss change: 0.00020 per
token, 0.00024 by blocks of 100, 0.00039 of 1,000, 0.00051 of 2,500, 0.00059 of 5,000,
0.00068 of 10,000, 0.00065 by the rule's 20 blocks of 12,278; its KL: 0.000028 at 1,000,
0.000069 at 10,000 and 0.000068 at 12,278). Blocks as long as possible catch the most of
it; an sd from k blocks is itself uncertain by about 1 / sqrt(2 (k - 1)), 16% at 20, which
sets the number. So an error on a short slice is a lower bound (2,000 tokens: blocks of 100,
about half of the whole split's by the figures above), and one on the whole split is the
surest.

A paired difference (a variant's loss minus fp32's on the same tokens) takes the batch means
of the per-token difference: what both models find hard cancels, which is why a loss change
of +0.0015 can be real while each loss has an error of 0.01.

A ratio of sums (a speed-up: fp32's seconds / a variant's seconds over the same chunks; the
cost of measuring: wall / models' own seconds) takes its interval from the same blocks, by the
delta method: with per-block sums A_j, B_j and R = sum A / sum B, the residuals A_j - R B_j
give var(R) = k / (k - 1) * sum (A_j - R B_j)^2 / (sum B)^2.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BLOCKS = 20              # batch means over this many blocks, whatever the length
Z95 = 1.96               # two-sided 95% of a normal


def block_tokens(n: int, blocks: int = BLOCKS) -> int:
    """The batch-means block length for ``n`` tokens: n // ``blocks`` (at least 1 token)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return max(1, n // blocks)


def batch_means(x: np.ndarray, block: int) -> np.ndarray:
    """The means of the whole consecutive blocks of ``block`` values of ``x`` (the rest is left out)."""
    x = np.asarray(x, dtype=np.float64)
    k = len(x) // block
    return x[:k * block].reshape(k, block).mean(axis=1)


def batch_means_se(x: np.ndarray, block: int | None = None) -> float | None:
    """Standard error of ``mean(x)`` by batch means over blocks of ``block`` consecutive values
    (None: ``block_tokens(len(x))``); None when there are fewer than 2 blocks."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return None
    means = batch_means(x, block or block_tokens(len(x)))
    if len(means) < 2:
        return None
    return float(means.std(ddof=1) / math.sqrt(len(means)))


def paired_se(a: np.ndarray, b: np.ndarray, block: int | None = None) -> float | None:
    """Standard error of ``mean(a - b)``: batch means of the per-token difference (same tokens)."""
    return batch_means_se(np.asarray(a, np.float64) - np.asarray(b, np.float64), block)


def naive_se(x: np.ndarray) -> float | None:
    """The per-token standard error sd / sqrt(n), as if tokens were independent (for comparison:
    too small on text)."""
    x = np.asarray(x, dtype=np.float64)
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) >= 2 else None


def rms_se(x: np.ndarray, block: int | None = None) -> float | None:
    """Standard error of sqrt(mean(x^2)) (delta method on the batch means of x^2)."""
    x = np.asarray(x, dtype=np.float64)
    se = batch_means_se(x * x, block)
    rms = math.sqrt(float(np.mean(x * x))) if len(x) else 0.0
    if se is None:
        return None
    return se / (2 * rms) if rms > 0 else 0.0


def ratio_ci(num: Sequence[float], den: Sequence[float], z: float = Z95) -> tuple[float, float, float] | None:
    """sum(num) / sum(den) with a ~95% interval from per-block sums (delta method, see the
    module's docstring): (ratio, low, high); None with fewer than 2 blocks or no denominator."""
    a, b = np.asarray(num, np.float64), np.asarray(den, np.float64)
    k = len(a)
    if k < 2 or b.sum() <= 0:
        return None
    r = a.sum() / b.sum()
    se = math.sqrt(k / (k - 1) * float(np.square(a - r * b).sum())) / b.sum()
    return float(r), float(r - z * se), float(r + z * se)


def block_sums(x: np.ndarray, per_block: int) -> np.ndarray:
    """Sums of consecutive groups of ``per_block`` values; the last, partial group joins the one
    before it (so every value counts and there is no tiny group)."""
    x = np.asarray(x, dtype=np.float64)
    k = max(1, len(x) // per_block)
    sums = x[:k * per_block].reshape(k, per_block).sum(axis=1)
    sums[-1] += x[k * per_block:].sum()
    return sums


def within_noise(value: float, se: float | None, z: float = Z95) -> bool:
    """Whether the ~95% interval ``value ± z·se`` holds zero (False when no error is known)."""
    return se is not None and math.isfinite(se) and abs(value) <= z * se


def fmt_pm(value: float, se: float | None, digits: int = 4, sign: bool = True) -> str:
    """``"+0.0044 ± 0.0006"``; the bare value when no error is known (an older record). A value
    that rounds to zero reads ``+0.0000``, never ``-0.0000``."""
    value = value if round(value, digits) != 0 else 0.0
    v = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return v if se is None or not math.isfinite(se) else f"{v} ± {se:.{digits}f}"


def fmt_ci(value: float, ci: Sequence[float] | None, digits: int = 2, unit: str = "x") -> str:
    """``"2.52x [2.47-2.58]"``; the bare value when no interval is known."""
    v = f"{value:.{digits}f}{unit}"
    return v if not ci else f"{v} [{ci[0]:.{digits}f}-{ci[1]:.{digits}f}]"


def noise_mark(value: float, se: float | None) -> str:
    """``" (within noise)"`` when the interval holds zero, else ``""``."""
    return " (within noise)" if within_noise(value, se) else ""
