"""The integer grid low-bit weights live on, and the scales that map them to it (``wlm.lowbit``
uses it to round, ``wlm.gptq`` to round column by column).

A weight matrix (rows x cols) is cut along its columns into groups of ``group`` inputs (None:
the whole row); each group has one float16 scale s, each weight a code in -qmax..qmax:

    qmax = 2**(bits-1) - 1,   code = clamp(round(w / s), -qmax, qmax),   w_hat = code * s
"""
from __future__ import annotations

import torch

MIN_BITS, MAX_BITS = 2, 8
CLIP_RATIOS = tuple(1.0 - 0.025 * k for k in range(25))       # 1.0, 0.975, ..., 0.4
SCALE_DTYPE = torch.float16


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def check(w: torch.Tensor, bits: int, group: int | None) -> int:
    if w.dim() != 2:
        raise ValueError(f"a weight matrix has 2 dimensions, got {tuple(w.shape)}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be from {MIN_BITS} to {MAX_BITS}, got {bits}")
    g = group or w.size(1)
    if w.size(1) % g:
        raise ValueError(f"group {group} does not divide the {w.size(1)} columns")
    return g


def to_scale(absmax: torch.Tensor, bits: int) -> torch.Tensor:
    """float16 scales for these group maxima (an all-zero group gets scale 0 and codes 0)."""
    return (absmax / qmax(bits)).to(SCALE_DTYPE)


def codes_of(w: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """round(w / s) clamped to the grid; w (..., g), scale (...,) as stored (float16)."""
    s = scale.float().unsqueeze(-1)
    q = torch.where(s > 0, w / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(w))
    return q.round_().clamp_(-qmax(bits), qmax(bits))


def rtn_scales(w: torch.Tensor, bits: int, group: int | None) -> torch.Tensor:
    g = check(w, bits, group)
    return to_scale(w.float().view(w.size(0), -1, g).abs().amax(-1), bits)


def mse_scales(w: torch.Tensor, bits: int, group: int | None, ratios=CLIP_RATIOS) -> torch.Tensor:
    """Per group, the clipped scale (of ``ratios`` x absmax / qmax) with the least squared error."""
    g = check(w, bits, group)
    wg = w.float().view(w.size(0), -1, g)                  # (rows, groups, g)
    absmax = wg.abs().amax(-1)
    best_err = torch.full_like(absmax, float("inf"))
    best = to_scale(absmax, bits)
    for r in ratios:
        s = to_scale(absmax * r, bits)
        err = (wg - codes_of(wg, s, bits) * s.float().unsqueeze(-1)).square_().sum(-1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, s, best)
    return best
