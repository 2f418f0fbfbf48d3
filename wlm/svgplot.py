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


# ---------------------------------------------------------------------------- more charts
# The same frame for bars, stacked bars, histograms and lines; each series named in a legend
# on the right, each mark carrying a <title> (hover) with its name and value.
def _frame(title: str, xlabel: str, ylabel: str, h: int = H,
           bottom: int = BOTTOM) -> tuple[list[str], tuple[float, float, float, float]]:
    """The chart's frame, ``bottom`` pixels above its lower edge (room for the x labels)."""
    x0, x1, y0, y1 = LEFT, W - RIGHT, TOP, h - bottom
    out = [f'<svg viewBox="0 0 {W} {h}" width="100%" role="img" aria-label="{html.escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg" style="font: 12px sans-serif; max-width: {W}px">',
           f'<text x="{W / 2}" y="18" text-anchor="middle" style="font-weight: 600">{html.escape(title)}</text>',
           f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" stroke="#bbb"/>',
           f'<text x="{(x0 + x1) / 2}" y="{h - 6}" text-anchor="middle">{html.escape(xlabel)}</text>',
           f'<text x="14" y="{(y0 + y1) / 2}" text-anchor="middle" '
           f'transform="rotate(-90 14 {(y0 + y1) / 2})">{html.escape(ylabel)}</text>']
    return out, (x0, x1, y0, y1)


def _empty(out: list[str], box, note: str) -> str:
    x0, x1, y0, y1 = box
    out.append(f'<text x="{(x0 + x1) / 2}" y="{(y0 + y1) / 2}" text-anchor="middle" fill="#888">'
               f'{html.escape(note)}</text></svg>')
    return "".join(out)


def _legend(out: list[str], names: list[str], colors: dict[str, str]) -> None:
    for k, name in enumerate(names):
        y = TOP + 8 + 16 * k
        out.append(f'<g class="legend"><rect x="{W - RIGHT + 12}" y="{y - 9}" width="10" height="10" '
                   f'fill="{colors.get(name, PALETTE[k % len(PALETTE)])}"/>'
                   f'<text x="{W - RIGHT + 26}" y="{y}">{html.escape(name)}</text></g>')


def _yaxis(out: list[str], box, lo: float, hi: float):
    x0, x1, y0, y1 = box
    ticks = _ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]
    sy = lambda v: y1 - (v - lo) / ((hi - lo) or 1) * (y1 - y0)             # noqa: E731
    for v in ticks:
        out.append(f'<line x1="{x0 - 4}" x2="{x1}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#eee"/>'
                   f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    return sy, lo


PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d"]


def bars_svg(categories: list[str], series: dict[str, list[float | None]], ylabel: str, title: str,
             colors: dict[str, str] | None = None, none_label: str = "none", empty: str = "nothing yet",
             log_y: bool = False) -> str:
    """Grouped bars: one group per category, one bar per series. Values that are None or not
    finite are left out; a group with none at all is labelled ``none_label`` (e.g. "fp32" for a
    part left in fp32). ``log_y``: a log10 axis (bars of values <= 0 are left out)."""
    colors = colors or {}
    tr = (lambda v: math.log10(v) if v is not None and math.isfinite(v) and v > 0 else None) if log_y else \
        (lambda v: v if v is not None and math.isfinite(v) else None)                     # noqa: E731
    longest = max((len(c) for c in categories), default=0)
    tilt = bool(categories) and longest * 6 > (W - RIGHT - LEFT) / len(categories)
    # slanted labels (55 degrees, ~5.5 px a character at 10 px) need this much below the axis
    below = max(BOTTOM, round(16 + 4.6 * longest)) if tilt else BOTTOM
    out, box = _frame(title, "", ylabel + (" (log10)" if log_y else ""), h=H - BOTTOM + below, bottom=below)
    vals = [tr(v) for vs in series.values() for v in vs if tr(v) is not None]
    if not categories or not vals:
        return _empty(out, box, empty)
    x0, x1, y0, y1 = box
    sy, base = _yaxis(out, box, min(vals) - (0.3 if log_y else 0) if log_y else min(vals + [0.0]), max(vals))
    names = list(series)
    gw = (x1 - x0) / len(categories)
    bw = gw * 0.8 / len(names)
    for i, cat in enumerate(categories):
        cx = x0 + gw * (i + 0.5)
        label = (f'<text x="{cx:.1f}" y="{y1 + 12}" text-anchor="end" transform="rotate(-55 {cx:.1f} {y1 + 12})" '
                 f'style="font-size: 10px">' if tilt else
                 f'<text x="{cx:.1f}" y="{y1 + 14}" text-anchor="middle" style="font-size: 10px">')
        out.append(label + f'{html.escape(cat)}</text>')
        drawn = 0
        for j, name in enumerate(names):
            v = tr(series[name][i])
            if v is None:
                continue
            drawn += 1
            bx = x0 + gw * i + gw * 0.1 + bw * j
            c = colors.get(name, PALETTE[j % len(PALETTE)])
            top, bottom = sy(max(v, base)), sy(max(min(v, 0.0), base) if not log_y else base)
            out.append(f'<g class="bar"><title>{html.escape(cat)}, {html.escape(name)}: {_fmt(series[name][i])}'
                       f'</title><rect x="{bx:.1f}" y="{min(top, bottom):.1f}" width="{bw:.1f}" '
                       f'height="{abs(bottom - top):.1f}" fill="{c}"/></g>')
        if not drawn:
            out.append(f'<g class="bar none"><title>{html.escape(cat)}: {html.escape(none_label)}</title>'
                       f'<text x="{cx:.1f}" y="{y1 - 6}" text-anchor="middle" fill="#666">{html.escape(none_label)}'
                       f'</text></g>')
    _legend(out, names, colors)
    out.append("</svg>")
    return "".join(out)


def stacked_svg(categories: list[str], values: dict[str, dict[str, float]], ylabel: str, title: str,
                colors: dict[str, str] | None = None, empty: str = "nothing yet") -> str:
    """One bar per category, stacked by part: ``values[category][part]``."""
    colors = colors or {}
    out, box = _frame(title, "", ylabel)
    if not categories:
        return _empty(out, box, empty)
    parts = list(dict.fromkeys(p for c in categories for p in values[c]))
    x0, x1, y0, y1 = box
    sy, _ = _yaxis(out, box, 0.0, max(sum(max(0.0, v) for v in values[c].values()) for c in categories))
    gw = (x1 - x0) / len(categories)
    for i, cat in enumerate(categories):
        bx, acc = x0 + gw * (i + 0.2), 0.0
        out.append(f'<text x="{x0 + gw * (i + 0.5):.1f}" y="{y1 + 14}" text-anchor="middle">'
                   f'{html.escape(cat)}</text>')
        for j, part in enumerate(parts):
            v = max(0.0, values[cat].get(part, 0.0))
            c = colors.get(part, PALETTE[j % len(PALETTE)])
            out.append(f'<g class="bar"><title>{html.escape(cat)}, {html.escape(part)}: {_fmt(v)}</title>'
                       f'<rect x="{bx:.1f}" y="{sy(acc + v):.1f}" width="{gw * 0.6:.1f}" '
                       f'height="{sy(acc) - sy(acc + v):.1f}" fill="{c}"/></g>')
            acc += v
    _legend(out, parts, colors)
    out.append("</svg>")
    return "".join(out)


def lines_svg(series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, title: str,
              colors: dict[str, str] | None = None, empty: str = "nothing yet", step: bool = False,
              log_y: bool = False) -> str:
    """One line per series of (x, y) points (``step``: drawn as a histogram's steps; ``log_y``:
    a log10 axis, where y <= 0 is left out)."""
    colors = colors or {}
    out, box = _frame(title, xlabel, ylabel + (" (log10)" if log_y else ""))
    tr = (lambda y: math.log10(y) if y > 0 else None) if log_y else (lambda y: y)     # noqa: E731
    pts = {n: [(x, tr(y)) for x, y in s if math.isfinite(x) and math.isfinite(y) and tr(y) is not None]
           for n, s in series.items()}
    allp = [p for s in pts.values() for p in s]
    if not allp:
        return _empty(out, box, empty)
    x0, x1, y0, y1 = box
    xt = _ticks(min(p[0] for p in allp), max(p[0] for p in allp))
    sy, _ = _yaxis(out, box, min(p[1] for p in allp) if log_y else min(0.0, *(p[1] for p in allp)),
                   max(p[1] for p in allp))
    sx = lambda v: x0 + (v - xt[0]) / ((xt[-1] - xt[0]) or 1) * (x1 - x0)       # noqa: E731
    for v in xt:
        out.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{y1}" y2="{y1 + 4}" stroke="#888"/>'
                   f'<text x="{sx(v):.1f}" y="{y1 + 16}" text-anchor="middle">{_fmt(v)}</text>')
    for k, (name, s) in enumerate(pts.items()):
        if not s:
            continue
        c = colors.get(name, PALETTE[k % len(PALETTE)])
        coords = []
        for i, (x, y) in enumerate(s):
            if step and i:
                coords.append(f"{sx(x):.1f},{sy(s[i - 1][1]):.1f}")
            coords.append(f"{sx(x):.1f},{sy(y):.1f}")
        out.append(f'<g class="line"><title>{html.escape(name)}</title><polyline fill="none" stroke="{c}" '
                   f'stroke-width="1.5" points="{" ".join(coords)}"/></g>')
    _legend(out, list(pts), colors)
    out.append("</svg>")
    return "".join(out)
