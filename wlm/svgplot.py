"""A labelled scatter plot as inline SVG: every point carries its name, which a trade-off plot
needs and the native plots' legend did not show after an update (gradio 6.31)."""
from __future__ import annotations

import html
import math

W, H = 520, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 34, 46        # room for tick labels and the point names


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    ticks = [math.floor(lo / step) * step]
    while ticks[-1] < hi - 1e-12 * step:              # up to the first tick at or above hi
        ticks.append(ticks[-1] + step)
    return ticks


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"


def scatter_svg(points: list[tuple[str, float, float]], xlabel: str, ylabel: str, title: str,
                colors: dict[str, str] | None = None) -> str:
    """``points`` = (name, x, y). Empty: the frame with a note, so the page reads as 'not yet'."""
    pts = [(n, x, y) for n, x, y in points if math.isfinite(x) and math.isfinite(y)]
    out = [f'<svg viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{html.escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg" style="font: 12px sans-serif; max-width: {W}px">',
           f'<text x="{W / 2}" y="18" text-anchor="middle" style="font-weight: 600">{html.escape(title)}</text>']
    x0, x1, y0, y1 = LEFT, W - RIGHT, TOP, H - BOTTOM
    out.append(f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" stroke="#bbb"/>')
    out.append(f'<text x="{(x0 + x1) / 2}" y="{H - 8}" text-anchor="middle">{html.escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{(y0 + y1) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(y0 + y1) / 2})">{html.escape(ylabel)}</text>')
    if not pts:
        out.append(f'<text x="{(x0 + x1) / 2}" y="{(y0 + y1) / 2}" text-anchor="middle" fill="#888">'
                   f'no measurement yet</text></svg>')
        return "".join(out)
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    xt, yt = _ticks(min(xs), max(xs)), _ticks(min(ys + [0.0]), max(ys + [0.0]))
    lo_x, hi_x, lo_y, hi_y = xt[0], xt[-1], yt[0], yt[-1]
    sx = lambda v: x0 + (v - lo_x) / ((hi_x - lo_x) or 1) * (x1 - x0)        # noqa: E731
    sy = lambda v: y1 - (v - lo_y) / ((hi_y - lo_y) or 1) * (y1 - y0)        # noqa: E731
    for v in xt:
        out.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{y1}" y2="{y1 + 4}" stroke="#888"/>'
                   f'<text x="{sx(v):.1f}" y="{y1 + 16}" text-anchor="middle">{_fmt(v)}</text>')
    for v in yt:
        out.append(f'<line x1="{x0 - 4}" x2="{x1}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#eee"/>'
                   f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    placed: list[tuple[float, float]] = []
    for name, x, y in pts:
        c = (colors or {}).get(name, "#4c78a8")
        lx, ly = sx(x) + 8, sy(y) + 4
        while any(abs(ly - py) < 13 and abs(lx - px) < 110 for px, py in placed):    # keep names apart
            ly += 13
        placed.append((lx, ly))
        out.append(f'<g class="point"><title>{html.escape(name)}: {xlabel} {_fmt(x)}, {ylabel} {_fmt(y)}</title>'
                   f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{c}"/>'
                   f'<text x="{lx:.1f}" y="{ly:.1f}">{html.escape(name)}</text></g>')
    out.append("</svg>")
    return "".join(out)
