"""The "Where int8 loses" panel's view of an inspection report (``wlm.inspection``): the table,
four pictures (SQNR per part, sensitivity per part, time per part, a part's weights on the
int8 grid) and a summary, plus the command line's text report."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from . import layerwise as lw
from .svgplot import bars_svg, lines_svg, stacked_svg

TABLE_COLUMNS = ["part", "precision", "weight SQNR dB", "alone SQNR dB", "running SQNR dB", "alone as",
                 "alone Δloss", "alone KL", "alone top-1"]
SQNR_COLORS = {"weights": "#4c78a8", "part alone": "#f58518", "in the model": "#54a24b"}
TIME_COLORS = {"embedding": "#72b7b2", "lstm": "#4c78a8", "decoder": "#e45756", "log-softmax and loss": "#eeca3b",
               "rest of the forward": "#bab0ac", "other nodes": "#9d755d", "session and copies": "#bab0ac"}


def _db(v) -> str:
    return "fp32" if v is None else f"{v:.1f}"


def table(report: dict) -> pd.DataFrame:
    rows = [[m["module"], m["option"] or "(ONNX Runtime)", m["weight_sqnr_db"], m["shadow_sqnr_db"],
             m["running_sqnr_db"], m["alone_option"], round(m["alone_dloss"], 5), round(m["alone_kl"], 6),
             round(m["alone_top1"], 4)] for m in report["modules"]]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=TABLE_COLUMNS)


def sqnr_svg(report: dict | None) -> str:
    title = "SQNR per part: weights, the part alone, in the model"
    if not report or report["modules"][0]["weight_sqnr_db"] is None and report.get("plan") is None:
        return bars_svg([], {}, "SQNR (dB)", title, empty="torch variants only" if report else "nothing yet")
    mods = report["modules"]
    series = {"weights": [m["weight_sqnr_db"] for m in mods],
              "part alone": [m["shadow_sqnr_db"] for m in mods],
              "in the model": [m["running_sqnr_db"] for m in mods]}
    return bars_svg([m["module"] for m in mods], series, "SQNR (dB), higher is closer", title + f" ({report['variant']})",
                    SQNR_COLORS, none_label="fp32")


def sensitivity_svg(report: dict | None) -> str:
    title = "Sensitivity: KL(fp32 ‖ model) with one part quantized"
    if not report:
        return bars_svg([], {}, "KL (nats)", title)
    sens = report["sensitivity"]
    short = {"int8-per-channel": "per channel", "8bit-rows": "8-bit rows", "int8": "int8"}
    cats = [f"{s['part']} {short[s['option']]}" for s in sens]
    return bars_svg(cats, {"that part alone": [s["kl"] for s in sens]}, "mean KL (nats)", title,
                    {"that part alone": "#e45756"}, log_y=True)


def time_svg(report: dict | None) -> str:
    title = "Where the time goes (seconds, same chunks)"
    if not report:
        return stacked_svg([], {}, "seconds", title)
    values = {name: t["parts"] for name, t in report["time"].items()}
    return stacked_svg(list(values), values, "seconds", title, TIME_COLORS)


def weight_codes(module: torch.nn.Module, option: str) -> dict[str, np.ndarray]:
    """The integer codes a part's weights get under ``option``: int8 levels (-128..127), or
    for 8-bit rows the unsigned levels (0..255)."""
    q = lw.quantize_part(module, option)
    if hasattr(q, "_all_weight_values"):
        w = q._weight_bias()["weight"]
        return {"weight_ih": w["weight_ih_l0"].int_repr().numpy(), "weight_hh": w["weight_hh_l0"].int_repr().numpy()}
    return {"weight": q.weight().int_repr().numpy()}


def histogram_svg(part: str, codes: dict[str, np.ndarray], note: str = "") -> str:
    """Counts of each int8 level a part's weights use, one line per option or matrix (log
    scale): a narrow hump uses few of the 256 levels, so rounding costs more of each weight."""
    series = {}
    for name, c in codes.items():
        lo = 0 if c.min() >= 0 else -128
        counts = np.bincount(c.astype(np.int64).ravel() - lo, minlength=256)
        series[name] = [(lo + k, float(v)) for k, v in enumerate(counts)]
    return lines_svg(series, "int8 level (weight / grid step)", "weights", f"{part}: weights on the int8 grid{note}",
                     step=True, log_y=True)


def used_levels(codes: np.ndarray, share: float = 0.99) -> int:
    """Half-width, in levels, of the central range holding ``share`` of the weights."""
    c = codes.astype(np.float64).ravel()
    return int(np.quantile(np.abs(c - (np.median(c) if c.min() >= 0 else 0)), share))


def summary(report: dict) -> str:
    """What the analysis finds, in a few sentences (the panel's status)."""
    e, v = report["end_to_end"], report["variant"]
    sens = sorted(report["sensitivity"], key=lambda s: -s["kl"])
    worst = sens[0]
    total_alone = sum(s["kl"] for s in report["sensitivity"] if (s["part"], s["option"]) in _plan_items(report))
    t = report["time"]
    ref_t, var_t = t["fp32"], t[v]
    saved = {p: ref_t["parts"].get(p, 0.0) - var_t["parts"].get(p, 0.0) for p in ("embedding", "lstm", "decoder")}
    top_saving = max(saved, key=saved.get)
    parts = [f"{report['tokens']:,} test tokens. {v} against fp32: loss {e['dloss']:+.4f}, mean KL {e['kl']:.5f}, "
             f"top-1 {e['top1']:.1%}."]
    parts.append(f"The part that costs most, quantized alone, is **{worst['part']} ({worst['option']})**: KL "
                 f"{worst['kl']:.5f}, top-1 {worst['top1']:.1%}.")
    own = [s for s in sens if (s["part"], s["option"]) in _plan_items(report)]
    if own and (own[0]["part"], own[0]["option"]) != (worst["part"], worst["option"]):
        parts.append(f"Of {v}'s own choices it is {own[0]['part']} ({own[0]['option']}): KL {own[0]['kl']:.5f}.")
    if total_alone > 0:
        parts.append(f"The single-part KLs of {v}'s own parts add up to {total_alone:.5f}, against {e['kl']:.5f} "
                     f"measured end to end.")
    parts.append(f"Time: fp32 {ref_t['total']:.2f} s, {v} {var_t['total']:.2f} s; the "
                 f"{'LSTM' if top_saving == 'lstm' else top_saving} saves the most "
                 f"({saved[top_saving]:.2f} s).")
    if report.get("note"):
        parts.append(report["note"])
    return " ".join(parts)


def _plan_items(report: dict) -> set[tuple[str, str]]:
    plan = report.get("plan") or {}
    return {(p, o) for p, o in plan.items() if o != "fp32"}


def report_text(report: dict) -> str:
    """The command line's report: parts, sensitivity, time, and the derived recipe if any."""
    v = report["variant"]
    lines = [f"{v} ({report['engine']}) against fp32, first {report['tokens']:,} test tokens, bptt 25, batch 1", ""]
    head = (f"{'part':<10} {'precision':<17} {'weight dB':>9} {'alone dB':>9} {'running dB':>10}   "
            f"{'alone as':<17} {'Δloss':>9} {'KL':>9} {'top-1':>7}")
    lines += [head, "-" * len(head)]
    for m in report["modules"]:
        lines.append(f"{m['module']:<10} {str(m['option'] or 'onnxruntime'):<17} {_db(m['weight_sqnr_db']):>9} "
                     f"{_db(m['shadow_sqnr_db']):>9} {_db(m['running_sqnr_db']):>10}   {m['alone_option']:<17} "
                     f"{m['alone_dloss']:+9.5f} {m['alone_kl']:9.6f} {m['alone_top1']:7.4f}")
    lines += ["", "sensitivity (one part quantized, the rest fp32):"]
    for s in sorted(report["sensitivity"], key=lambda s: -s["kl"]):
        lines.append(f"  {s['part']:<10} {s['option']:<17} Δloss {s['dloss']:+.5f}  KL {s['kl']:.6f}  "
                     f"top-1 {s['top1']:.4f}  size {report['part_sizes_mb'][s['part']][s['option']]:.2f} MB "
                     f"(fp32 {report['part_sizes_mb'][s['part']]['fp32']:.2f})")
    e = report["end_to_end"]
    lines += ["", f"end to end: Δloss {e['dloss']:+.5f}  KL {e['kl']:.6f}  top-1 {e['top1']:.4f}", "",
              "time per part (seconds over the same chunks):"]
    for name, t in report["time"].items():
        shares = ", ".join(f"{p} {s:.3f} ({s / t['total']:.0%})" for p, s in t["parts"].items())
        lines.append(f"  {name:<22} total {t['total']:.3f}: {shares}")
    if report.get("note"):
        lines += ["", report["note"]]
    if report.get("recipe"):
        r = report["recipe"]
        lines += ["", f"derived recipe ({r['rule']}, budget {r['budget_mb']} MB): predicted KL "
                      f"{r['predicted_kl']:.6f}, {r['predicted_mb']:.3f} MB; written to {report['recipe_file']}"]
        lines += [f"  {p:<10} {o}" for p, o in r["plan"].items()]
    return "\n".join(lines)


def finite(v) -> bool:
    return v is not None and math.isfinite(v)


class InspectView:
    """The panel's outputs for a stored inspection record (``wlm.results``):
    (status markdown, table, SQNR svg, sensitivity svg, time svg)."""

    def record(self, record: dict, stored: bool = True) -> tuple:
        report = record["report"]
        status = summary(report)
        versions = ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())
        if stored and record.get("shipped"):
            status = (f"*Shipped with the app: analysed {record['when'][:10]} on the project's development machine "
                      f"({record.get('cpu')}; {versions}) with `{record.get('source', 'python -m wlm inspect')}`; "
                      f"the seconds are that machine's.* " + status)
        elif stored:
            status = (f"*Stored result, analysed {record['when']} on {record.get('cpu')} ({versions}); "
                      f"**Analyse again** re-runs it live.* " + status)
        return (status, table(report), sqnr_svg(report), sensitivity_svg(report), time_svg(report))

    @staticmethod
    def empty(status: str) -> tuple:
        return (status, empty_table(), sqnr_svg(None), sensitivity_svg(None), time_svg(None))
