import math
import re

from wlm.svgplot import _ticks, scatter_svg


def test_every_point_is_drawn_and_named_inside_the_frame():
    svg = scatter_svg([("fp32", 113.9, 0.0), ("qint8", 79.7, 0.0044), ("<ort>", 28.6, 0.0023)],
                      "size (MB)", "loss change", "Size vs loss change", {"fp32": "#123456"})
    assert svg.count('class="point"') == 3 and ">&lt;ort&gt;</text>" in svg and 'fill="#123456"' in svg
    cx = [float(v) for v in re.findall(r'cx="([\d.]+)"', svg)]
    cy = [float(v) for v in re.findall(r'cy="([\d.]+)"', svg)]
    assert all(64 <= x <= 520 - 150 for x in cx) and all(34 <= y <= 300 - 46 for y in cy)
    assert cx[0] > cx[1] > cx[2] and cy[0] > cy[2] > cy[1]        # bigger x right, bigger y up


def test_close_points_keep_their_names_apart_and_nan_is_skipped():
    svg = scatter_svg([("a", 28.6, 0.002), ("b", 28.9, 0.002), ("z", 113.9, 0.0), ("c", math.nan, 1.0)],
                      "x", "y", "t")
    ys = [float(v) for v in re.findall(r'<text x="[\d.]+" y="([\d.]+)">[ab]</text>', svg)]
    assert len(ys) == 2 and abs(ys[0] - ys[1]) >= 13 and svg.count('class="point"') == 3


def test_empty_plot_says_so():
    assert "no measurement yet" in scatter_svg([], "x", "y", "t")


def test_ticks_cover_the_range():
    for lo, hi in [(0, 1), (28.6, 113.9), (-0.0003, 0.0023), (400, 3200), (5, 5)]:
        t = _ticks(lo, hi)
        assert t[0] <= lo and t[-1] >= hi and len(t) <= 8
