"""The inline SVG charts (wlm.svgplot): every mark drawn and named, text in the theme's colour,
axes that tell the truth (bars from zero, log ticks as real values, dB around the data)."""
import math
import re

from wlm.svgplot import BOTTOM, H, INK, LEFT, TOP, W, _ticks, dots_svg, hbars_svg, lines_svg, scatter_svg


def test_every_point_is_drawn_and_named_inside_the_frame():
    svg = scatter_svg([("fp32", 113.9, 0.0), ("qint8", 79.7, 0.0044), ("<ort>", 28.6, 0.0023)],
                      "size (MB)", "loss change", "Size vs loss change", {"fp32": "#123456"})
    assert svg.count('class="point"') == 3 and ">&lt;ort&gt;</text>" in svg and 'fill="#123456"' in svg
    cx = [float(v) for v in re.findall(r'cx="([\d.]+)"', svg)]
    cy = [float(v) for v in re.findall(r'cy="([\d.]+)"', svg)]
    assert all(LEFT <= x <= W - 40 for x in cx) and all(TOP <= y <= H - BOTTOM for y in cy)
    assert cx[0] > cx[1] > cx[2] and cy[0] > cy[2] > cy[1]        # bigger x right, bigger y up


def test_close_points_keep_their_names_apart_and_nan_is_skipped():
    svg = scatter_svg([("a", 28.6, 0.002), ("b", 28.9, 0.002), ("z", 113.9, 0.0), ("c", math.nan, 1.0)],
                      "x", "y", "t")
    at = [(float(x), float(y)) for x, y in re.findall(r'<text x="([\d.]+)" y="([\d.]+)">[ab]</text>', svg)]
    assert len(at) == 2 and svg.count('class="point"') == 3
    (xa, ya), (xb, yb) = at                                      # one letter: a box of ~7 x 12 px each
    assert abs(xa - xb) >= 7 or abs(ya - yb) >= 12


def test_text_takes_the_themes_colour_and_no_text_has_a_fixed_fill():
    charts = [scatter_svg([("a", 1, 2)], "x", "y", "t"), hbars_svg(["a"], {"a": {"p": 1.0}}, "x", "t"),
              dots_svg(["a"], {"s": [(1.0, 0.1)]}, "y", "t"), lines_svg({"s": [(0, 1), (1, 2)]}, "x", "y", "t")]
    for svg in charts:
        assert f"fill: {INK}" in svg.split(">", 1)[0]                          # the root sets the text colour
        assert not re.search(r'<text[^>]*fill=', svg) and "#888" not in svg and "#bbb" not in svg


def test_bars_start_at_zero_and_carry_their_interval():
    svg = hbars_svg(["fp32", "qint8"], {"fp32": {"value": 1.0}, "qint8": {"value": 2.14}}, "x", "speed-up",
                    intervals={"qint8": (2.0, 2.3)}, label={"qint8": "2.14x"})
    xs = [float(v) for v in re.findall(r'<rect x="([\d.]+)" y', svg)]
    assert len(set(xs)) == 1                                   # both bars start at the same place: zero
    assert '<text x="' in svg and ">0</text>" in svg and svg.count('class="interval"') == 1 and ">2.14x</text>" in svg


def test_log_axis_ticks_are_real_values_and_a_linear_one_sits_around_the_data():
    log = dots_svg(["a", "b"], {"s": [(2e-6, None), (4e-3, None)]}, "KL", "t", log_y=True)
    ticks = re.findall(r'text-anchor="end">([^<]+)</text>', log)
    assert "1e-6" in ticks and "0.01" in ticks and not any(t.startswith("-") for t in ticks)
    db = dots_svg(["a", "b"], {"s": [(31.4, None), (39.7, None)]}, "dB", "t")
    values = [float(t) for t in re.findall(r'text-anchor="end">([^<]+)</text>', db)]
    assert min(values) > 20 and max(values) < 50                 # around 31-40 dB, not from 0


def test_empty_plot_says_so():
    assert "no measurement yet" in scatter_svg([], "x", "y", "t")
    assert "nothing yet" in dots_svg([], {}, "y", "t") and "nothing yet" in hbars_svg([], {}, "x", "t")


def test_ticks_cover_the_range():
    for lo, hi in [(0, 1), (28.6, 113.9), (-0.0003, 0.0023), (400, 3200), (5, 5)]:
        t = _ticks(lo, hi)
        assert t[0] <= lo and t[-1] >= hi and len(t) <= 8


def test_a_points_name_is_written_over_every_dot_with_a_halo():
    """Named points beside unnamed ones: a name goes to the side of its dot that no other dot takes;
    it comes after every dot (drawn on top) and keeps a rim of the background, so where a dot must
    land under a name it never hides it."""
    from wlm.svgplot import lines_svg
    svg = lines_svg({"s": [(1, 1), (2, 2)]}, "x", "y", "t", points=[("qint8", 1.5, 1.5), ("near", 1.52, 1.5)],
                    point_labels={"qint8"})
    last_dot = svg.rindex("<circle")
    name = re.search(r'<text class="point-name"[^>]*style="([^"]*)">qint8</text>', svg)
    assert name and name.start() > last_dot and "paint-order: stroke" in name.group(1)
    assert svg.count('class="point-name"') == 1                        # only the names asked for
    cx = float(re.search(r'<title>qint8:[^<]*</title><circle cx="([\d.]+)"', svg).group(1))
    near = float(re.search(r'<title>near:[^<]*</title><circle cx="([\d.]+)"', svg).group(1))
    x = float(re.search(r'<text class="point-name" x="([\d.]+)"', svg).group(1))
    assert near > cx and x + 6.6 * len("qint8") < cx            # its neighbour on the right: the name on the left
