"""Charts as inline SVG that read in Gradio's light and dark themes and fill their column.

Every piece of text and every line takes the page's theme colours (``var(--body-text-color)``,
``var(--border-color-primary)``), so nothing is drawn black on a dark page; only the marks
carry a colour of their own, from one map (``wlm.palette``), and every mark is named: in a
legend or beside it, and in a ``<title>`` (hover). The width is the column's (``width=100%``
over a fixed ``viewBox``), and labels are placed so they never overlap.

Kinds: a scatter with named points (trade-offs), horizontal bars, stacked or single, with
optional intervals (sizes, speeds, times), points with intervals on a linear axis around the
data or a log axis with real-valued ticks (SQNR, sensitivity), and lines (traces, histograms).
"""
from __future__ import annotations

import html
import math

W, H = 560, 300                                     # a chart in half a row; wide ones get more width
LEFT, RIGHT, TOP, BOTTOM = 78, 150, 34, 46        # room for tick labels and the names
INK = "var(--body-text-color, #1f2937)"
# a name written over the marks keeps a rim of the page's background, so a dot under it never hides it
HALO = ("paint-order: stroke; stroke: var(--body-background-fill, #ffffff); stroke-width: 3px; "
        "stroke-linejoin: round")
GRID = "var(--border-color-primary, #d1d5db)"
ROW = 24                                            # px per row of a horizontal bar chart
FALLBACK = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d"]


def esc(s) -> str:
    return html.escape(str(s))


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
    return [round(t, 12) for t in ticks]


def _fmt(v: float, log: bool = False) -> str:
    """A tick or value: 1,373 · 2.14 · 0.0044; on a log axis 1e-5 (the value itself, not its log)."""
    if v == 0:
        return "0"
    if log and abs(v) < 0.01:
        return f"{v:.0e}".replace("e-0", "e-")
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 0.01:
        return f"{v:.3g}"
    return f"{v:.6f}".rstrip("0") if abs(v) >= 1e-6 else f"{v:.1e}"


def _open(title: str, h: int, w: int = W) -> list[str]:
    return [f'<svg class="wlm-chart" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{esc(title)}" '
            f'xmlns="http://www.w3.org/2000/svg" style="font: 12px sans-serif; fill: {INK}; display: block">',
            f'<text x="{w / 2}" y="18" text-anchor="middle" style="font-weight: 600">{esc(title)}</text>']


def _frame(title: str, xlabel: str, ylabel: str, h: int = H,
           bottom: int = BOTTOM, left: int = LEFT, right: int = RIGHT, w: int = W):
    """The chart's frame: (svg parts, (x0, x1, y0, y1)) with the axis titles drawn."""
    x0, x1, y0, y1 = left, w - right, TOP, h - bottom
    out = _open(title, h, w)
    out.append(f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" style="stroke: {GRID}"/>')
    if xlabel:
        out.append(f'<text x="{(x0 + x1) / 2}" y="{h - 6}" text-anchor="middle">{esc(xlabel)}</text>')
    if ylabel:
        out.append(f'<text x="12" y="{(y0 + y1) / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 12 {(y0 + y1) / 2})">{esc(ylabel)}</text>')
    return out, (x0, x1, y0, y1)


def _empty(out: list[str], box, note: str) -> str:
    x0, x1, y0, y1 = box
    out.append(f'<text class="empty" x="{(x0 + x1) / 2}" y="{(y0 + y1) / 2}" text-anchor="middle">{esc(note)}'
               f'</text></svg>')
    return "".join(out)


def _color(colors: dict | None, name: str, k: int) -> str:
    return (colors or {}).get(name) or FALLBACK[k % len(FALLBACK)]


def _legend(out: list[str], names: list[str], colors: dict | None, x: float = W - RIGHT + 12,
            y: float = TOP + 8) -> None:
    for k, name in enumerate(names):
        yy = y + 16 * k
        out.append(f'<g class="legend"><rect x="{x}" y="{yy - 9}" width="10" height="10" '
                   f'fill="{_color(colors, name, k)}"/><text x="{x + 14}" y="{yy}">{esc(name)}</text></g>')


class _Axis:
    """A value axis: linear (``lo``..``hi`` widened to round ticks) or log10 with ticks at
    powers of ten, labelled with the values themselves (1e-05, not -5)."""

    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False, zero: bool = False):
        self.log = log
        if log:
            lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
            if hi_e == lo_e:
                hi_e += 1
            self.ticks = [10.0 ** e for e in range(lo_e, hi_e + 1)]
            self.lo, self.hi = float(lo_e), float(hi_e)
        else:
            if zero:
                lo, hi = min(lo, 0.0), max(hi, 0.0)
            self.ticks = _ticks(lo, hi)
            self.lo, self.hi = self.ticks[0], self.ticks[-1]
        self.a, self.b = a, b                      # pixel positions of lo and hi

    def __call__(self, v: float) -> float:
        t = math.log10(max(v, 10 ** self.lo)) if self.log else v
        return self.a + (t - self.lo) / ((self.hi - self.lo) or 1) * (self.b - self.a)


def _label_spots(dots: list[tuple[float, float]], names: list[str], x_min: float, x_max: float,
                 unnamed: list[tuple[float, float]] = ()) -> list[tuple[float, float, float, float]]:
    """A box for each name beside its dot (pixels), clear of the other names and dots where the
    room allows: first right beside the dot and clear of every dot (``unnamed``: dots drawn without
    a name); else tried right and left, a little above and below, further each time, clear of the
    names and the named dots (the name is then drawn over an unnamed dot, with a halo)."""
    placed: list[tuple[float, float, float, float]] = []

    def beside(cx, cy, w, offsets):
        for dy in offsets:
            for lx in (cx + 8, cx - 8 - w):                  # right of the dot, then left
                yield lx, cy + dy - 10, lx + w, cy + dy + 2

    def clear(box, others) -> bool:
        return (box[0] >= x_min + 2 and box[2] <= x_max - 2
                and all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed)
                and not any(box[0] - 3 < dx < box[2] + 3 and box[1] - 3 < dy < box[3] + 3 for dx, dy in others))

    for k, (name, (cx, cy)) in enumerate(zip(names, dots)):
        w = 6.6 * len(name)
        named = [d for j, d in enumerate(dots) if j != k]
        spot = (next((b for b in beside(cx, cy, w, (4, -8)) if clear(b, named + list(unnamed))), None)
                or next((b for b in beside(cx, cy, w, (4, -8, 16, -20, 28, -32, 40, -44, 52)) if clear(b, named)), None))
        placed.append(spot or (cx + 8, cy - 6, cx + 8 + w, cy + 6))
    return placed


# ---------------------------------------------------------------------------- scatter
def scatter_svg(points: list[tuple[str, float, float]], xlabel: str, ylabel: str, title: str,
                colors: dict[str, str] | None = None, empty: str = "no measurement yet") -> str:
    """``points`` = (name, x, y), each drawn and named; names are placed clear of each other."""
    pts = [(n, x, y) for n, x, y in points if math.isfinite(x) and math.isfinite(y)]
    out, (x0, x1, y0, y1) = _frame(title, xlabel, ylabel, right=40)
    if not pts:
        return _empty(out, (x0, x1, y0, y1), empty)
    sx = _Axis(min(p[1] for p in pts), max(p[1] for p in pts), x0, x1)
    sy = _Axis(min(p[2] for p in pts), max(p[2] for p in pts), y1, y0, zero=True)
    for v in sx.ticks:
        out.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{y1}" y2="{y1 + 4}" style="stroke: {GRID}"/>'
                   f'<text x="{sx(v):.1f}" y="{y1 + 16}" text-anchor="middle">{_fmt(v)}</text>')
    for v in sy.ticks:
        out.append(f'<line x1="{x0 - 4}" x2="{x1}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" style="stroke: {GRID}"/>'
                   f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    dots = [(sx(x), sy(y)) for _, x, y in pts]
    spots = _label_spots(dots, [n for n, _, _ in pts], x0, W)
    for k, (name, x, y) in enumerate(pts):
        cx, cy = dots[k]
        spot = spots[k]
        out.append(f'<g class="point"><title>{esc(name)}: {esc(xlabel)} {_fmt(x)}, {esc(ylabel)} {_fmt(y)}</title>'
                   f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{_color(colors, name, k)}"/>'
                   f'<text x="{spot[0]:.1f}" y="{spot[3] - 2:.1f}">{esc(name)}</text></g>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------- horizontal bars
def hbars_svg(rows: list[str], values: dict[str, dict[str, float]], xlabel: str, title: str,
              colors: dict[str, str] | None = None, intervals: dict[str, tuple[float, float]] | None = None,
              label: dict[str, str] | None = None, empty: str = "nothing yet", legend: bool = True) -> str:
    """One bar per row (a model), stacked by part: ``values[row][part]``; bars start at zero.
    A row's single part named like the row takes the row's colour. ``intervals[row]`` draws a
    whisker; ``label[row]`` is written after the bar (e.g. "2.14x")."""
    parts = list(dict.fromkeys(p for r in rows for p in values.get(r, {})))
    stacked = not (len(parts) == 1 and parts[0] == "value")
    h = TOP + 20 + ROW * max(1, len(rows)) + 40
    left = max(70, min(160, 8 + 6.6 * max((len(r) for r in rows), default=4)))
    out, (x0, x1, y0, y1) = _frame(title, xlabel, "", h=h, bottom=40, left=int(left),
                                   right=RIGHT if stacked and legend else 60)
    if not rows:
        return _empty(out, (x0, x1, y0, y1), empty)
    tops = [sum(max(0.0, v) for v in values[r].values()) for r in rows]
    hi = max(tops + [iv[1] for iv in (intervals or {}).values() if iv and math.isfinite(iv[1])])
    sx = _Axis(0.0, hi, x0, x1, zero=True)
    for v in sx.ticks:
        out.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{y0}" y2="{y1 + 4}" style="stroke: {GRID}"/>'
                   f'<text x="{sx(v):.1f}" y="{y1 + 16}" text-anchor="middle">{_fmt(v)}</text>')
    for i, r in enumerate(rows):
        yc = y0 + 10 + ROW * (i + 0.5)
        out.append(f'<text x="{x0 - 6}" y="{yc + 4:.1f}" text-anchor="end">{esc(r)}</text>')
        acc = 0.0
        for j, p in enumerate(parts):
            v = max(0.0, values[r].get(p, 0.0))
            if not v:
                continue
            c = _color(colors, p if stacked else r, j if stacked else i)
            name = f"{r}, {p}" if stacked else r
            out.append(f'<g class="bar"><title>{esc(name)}: {_fmt(v)}</title><rect x="{sx(acc):.1f}" '
                       f'y="{yc - ROW * 0.35:.1f}" width="{max(0.5, sx(acc + v) - sx(acc)):.1f}" '
                       f'height="{ROW * 0.7:.1f}" fill="{c}"/></g>')
            acc += v
        end = sx(acc)
        iv = (intervals or {}).get(r)
        if iv and all(math.isfinite(t) for t in iv):
            a, b = sx(max(0.0, iv[0])), sx(iv[1])
            out.append(f'<g class="interval"><title>{esc(r)}: {_fmt(iv[0])} to {_fmt(iv[1])}</title>'
                       f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{yc:.1f}" y2="{yc:.1f}" style="stroke: {INK}" '
                       f'stroke-width="1.5"/><line x1="{a:.1f}" x2="{a:.1f}" y1="{yc - 5:.1f}" y2="{yc + 5:.1f}" '
                       f'style="stroke: {INK}"/><line x1="{b:.1f}" x2="{b:.1f}" y1="{yc - 5:.1f}" '
                       f'y2="{yc + 5:.1f}" style="stroke: {INK}"/></g>')
            end = max(end, b)
        if label and r in label:
            out.append(f'<text x="{min(end + 6, W - 4):.1f}" y="{yc + 4:.1f}" '
                       f'text-anchor="{"start" if end + 6 + 6.6 * len(label[r]) < W else "end"}">'
                       f'{esc(label[r])}</text>')
    if stacked and legend:
        _legend(out, parts, colors, x=x1 + 12)
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------- points with intervals
def dots_svg(categories: list[str], series: dict[str, list[tuple[float, float | None] | None]], ylabel: str,
             title: str, colors: dict[str, str] | None = None, log_y: bool = False, none_label: str = "none",
             empty: str = "nothing yet") -> str:
    """One point per category and series, ``(value, half-width of its interval or None)``;
    None leaves it out, and a category with no point at all is labelled ``none_label``. The
    axis sits around the data (a linear one need not hold zero); ``log_y`` puts it on a log10
    axis whose ticks are labelled with real values (points <= 0 are left out)."""
    ok = (lambda v: v is not None and math.isfinite(v[0]) and (v[0] > 0 or not log_y))     # noqa: E731
    longest = max((len(c) for c in categories), default=0)
    tilt = bool(categories) and longest * 6.6 > (W - LEFT - RIGHT) / max(1, len(categories))
    below = max(BOTTOM, round(18 + 5 * longest)) if tilt else BOTTOM
    out, box = _frame(title, "", ylabel, h=H - BOTTOM + below, bottom=below)
    pts = [v for s in series.values() for v in s if ok(v)]
    if not categories or not pts:
        return _empty(out, box, empty)
    x0, x1, y0, y1 = box
    lows = [v[0] - (v[1] or 0) for v in pts]
    highs = [v[0] + (v[1] or 0) for v in pts]
    if log_y:
        lo, hi = min(v[0] for v in pts), max(highs)
        lows_pos = [lo_ for lo_ in lows if lo_ > 0]
        lo = min([lo] + lows_pos)
    else:
        lo, hi = min(lows), max(highs)
        pad = 0.08 * ((hi - lo) or abs(hi) or 1)
        lo, hi = lo - pad, hi + pad
    sy = _Axis(lo, hi, y1, y0, log=log_y)
    for v in sy.ticks:
        out.append(f'<line x1="{x0 - 4}" x2="{x1}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" style="stroke: {GRID}"/>'
                   f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{_fmt(v, log_y)}</text>')
    gw = (x1 - x0) / len(categories)
    names = list(series)
    for i, cat in enumerate(categories):
        cx = x0 + gw * (i + 0.5)
        out.append((f'<text x="{cx:.1f}" y="{y1 + 12}" text-anchor="end" transform="rotate(-55 {cx:.1f} {y1 + 12})">'
                    if tilt else f'<text x="{cx:.1f}" y="{y1 + 15}" text-anchor="middle">') + f'{esc(cat)}</text>')
        drawn = 0
        for j, name in enumerate(names):
            v = series[name][i]
            if not ok(v):
                continue
            drawn += 1
            px = cx + (j - (len(names) - 1) / 2) * min(12.0, gw / (len(names) + 1))
            c = _color(colors, name, j)
            what = f"{cat}, {name}: {_fmt(v[0])}" + (f" ± {_fmt(v[1])}" if v[1] else "")
            whisker = ""
            if v[1]:
                a, b = sy(max(v[0] - v[1], 10 ** sy.lo) if log_y else v[0] - v[1]), sy(v[0] + v[1])
                whisker = (f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{a:.1f}" y2="{b:.1f}" style="stroke: {INK}" '
                           f'stroke-width="1.2"/>')
            out.append(f'<g class="dot"><title>{esc(what)}</title>{whisker}<circle cx="{px:.1f}" '
                       f'cy="{sy(v[0]):.1f}" r="4.5" fill="{c}" style="stroke: {INK}" stroke-width="0.6"/></g>')
        if not drawn:
            out.append(f'<g class="dot none"><title>{esc(cat)}: {esc(none_label)}</title><text x="{cx:.1f}" '
                       f'y="{y1 - 6}" text-anchor="middle">{esc(none_label)}</text></g>')
    _legend(out, names, colors)
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------- lines
def lines_svg(series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, title: str,
              colors: dict[str, str] | None = None, empty: str = "nothing yet", step: bool = False,
              log_y: bool = False, width: int = W, *, log_x: bool = False, reverse_x: bool = False,
              x_ticks: list[float] | None = None, errors: dict[str, list[float | None]] | None = None,
              marks: bool = False, points: list[tuple[str, float, float]] | None = None,
              dashed: set[str] | frozenset = frozenset(), point_labels: set[str] | None = None) -> str:
    """One line per series of (x, y) points (``step``: drawn as a histogram's steps; ``log_y`` /
    ``log_x``: log10 axes labelled with real values, where values <= 0 are left out). ``width``:
    of the viewBox, for a chart that spans a whole row. ``reverse_x``: x grows to the left;
    ``x_ticks``: the x ticks to label (else round ones). ``marks``: a dot at every point, with a
    whisker of ``errors[name][i]`` (half-width) where given. ``points``: (name, x, y) drawn as
    named dots over the lines (``point_labels``: only these written beside their dot, and every
    point in the legend; None: every point written beside its dot). ``dashed``: series drawn dashed."""
    out, box = _frame(title, xlabel, ylabel, w=width)
    keep = (lambda x, y: math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y)     # noqa: E731
            and (x > 0 or not log_x))
    idx = {n: [i for i, (x, y) in enumerate(s) if keep(x, y)] for n, s in series.items()}
    pts = {n: [series[n][i] for i in ii] for n, ii in idx.items()}
    named = [(n, x, y) for n, x, y in (points or []) if keep(x, y)]
    allp = [p for s in pts.values() for p in s] + [(x, y) for _, x, y in named]
    if not allp:
        return _empty(out, box, empty)
    x0, x1, y0, y1 = box
    xs, ys = [p[0] for p in allp], [p[1] for p in allp]
    sx = _Axis(min(xs), max(xs), x1 if reverse_x else x0, x0 if reverse_x else x1, log=log_x)
    if x_ticks:                                    # the axis spans the data and the ticks asked for, no more
        lo, hi = min(xs), max(xs)
        sx.ticks = [t for t in x_ticks if (t > 0 or not log_x) and lo / 1.5 <= t <= hi * 1.5]
        lo, hi = min(sx.ticks + [lo]), max(sx.ticks + [hi])
        sx.lo, sx.hi = (math.log10(lo) - 0.02, math.log10(hi) + 0.02) if log_x else (lo, hi)
    sy = _Axis(min(ys), max(ys), y1, y0, log=log_y, zero=not log_y)
    for v in sx.ticks:
        out.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{y1}" y2="{y1 + 4}" style="stroke: {GRID}"/>'
                   f'<text x="{sx(v):.1f}" y="{y1 + 16}" text-anchor="middle">{_fmt(v, log_x)}</text>')
    for v in sy.ticks:
        out.append(f'<line x1="{x0 - 4}" x2="{x1}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" style="stroke: {GRID}"/>'
                   f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{_fmt(v, log_y)}</text>')
    for k, (name, s) in enumerate(pts.items()):
        if not s:
            continue
        color = _color(colors, name, k)
        coords = []
        for i, (x, y) in enumerate(s):
            if step and i:
                coords.append(f"{sx(x):.1f},{sy(s[i - 1][1]):.1f}")
            coords.append(f"{sx(x):.1f},{sy(y):.1f}")
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        out.append(f'<g class="line"><title>{esc(name)}</title><polyline fill="none" '
                   f'stroke="{color}" stroke-width="1.8"{dash} points="{" ".join(coords)}"/>')
        if marks:
            errs = (errors or {}).get(name)
            for i, (x, y) in zip(idx[name], s):
                e = errs[i] if errs and i < len(errs) else None
                what = f"{name}: {_fmt(x, log_x)}, {_fmt(y, log_y)}" + (f" ± {_fmt(e, log_y)}" if e else "")
                whisker = ""
                if e:
                    a, b = sy(max(y - e, 10 ** sy.lo) if log_y else y - e), sy(y + e)
                    whisker = (f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{a:.1f}" y2="{b:.1f}" '
                               f'style="stroke: {INK}" stroke-width="1"/>')
                out.append(f'<g class="mark"><title>{esc(what)}</title>{whisker}<circle cx="{sx(x):.1f}" '
                           f'cy="{sy(y):.1f}" r="3" fill="{color}"/></g>')
        out.append("</g>")
    dots = [(sx(x), sy(y)) for _, x, y in named]
    written = [n for n, _, _ in named if point_labels is None or n in point_labels]
    spots = dict(zip(written, _label_spots([d for d, (n, _, _) in zip(dots, named) if n in written], written, x0, x1,
                                           unnamed=[d for d, (n, _, _) in zip(dots, named) if n not in written])))
    for k, (name, x, y) in enumerate(named):
        cx, cy = dots[k]
        out.append(f'<g class="point"><title>{esc(name)}: {esc(xlabel)} {_fmt(x, log_x)}, {esc(ylabel)} '
                   f'{_fmt(y, log_y)}</title><circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" '
                   f'fill="{_color(colors, name, k + len(pts))}" style="stroke: {INK}" stroke-width="0.6"/></g>')
    for name in written:                         # the names last: over every dot, each with its halo
        out.append(f'<text class="point-name" x="{spots[name][0]:.1f}" y="{spots[name][3] - 2:.1f}" '
                   f'style="{HALO}">{esc(name)}</text>')
    legend = [n for n in pts if pts[n]] + ([n for n, _, _ in named] if point_labels is not None else [])
    _legend(out, legend, colors, x=x1 + 12)
    out.append("</svg>")
    return "".join(out)
