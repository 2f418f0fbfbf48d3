"""The "Where int8 loses" panel: takes a variant apart against fp32 (``wlm.inspection``) in CPU
turns (logic), and shows an inspection report (view): the table, four pictures (SQNR per part,
sensitivity per part, time per part, a part's weights on the int8 grid) and a summary; plus
the command line's text report. What is shown stays when an analysis fails or is refused."""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import torch

from . import layerwise as lw
from .bench import machine_info
from .inspection import Inspection, alone_parts
from .data import FULL_SLICE
from .results import describe_version_differences, make_inspection_record
from .threads import num_threads
from .variants import VARIANTS
from .palette import PARTS, SQNR
from .recipe import page_note
from .stats import fmt_pm, noise_mark, within_noise
from .svgplot import dots_svg, hbars_svg, lines_svg

if TYPE_CHECKING:
    from .shared import Shared

TABLE_COLUMNS = ["part", "precision", "weight SQNR dB", "alone SQNR dB", "running SQNR dB", "alone as",
                 "alone Δloss", "alone KL", "alone top-1"]
log = logging.getLogger("wlm")
INSPECT_INTRO = """The variant taken apart against fp32, part by part (the embedding, each of the five LSTM
layers, the decoder), on the first test tokens, read in calls of 25 tokens as Measure reads them (a dynamic int8
part takes its activations' scale from each call). **SQNR** (signal to quantization noise, dB: higher is closer) of
each part's weights, of its output when fed the fp32 model's input (the part alone), and of its output inside the
variant (the error accumulated up to there). **Sensitivity**: the KL(fp32 ‖ model) when only that part is
quantized, with a ~95% interval where the analysis has standard errors. **Time**: where each model's seconds go,
on the same chunks. **Weights on the int8 grid**: the levels a part's weights get; a narrow hump means few of the
256 levels are used, so rounding costs more of each weight (the decoder per tensor against per channel). The
analysis also chooses a recipe: `qint8-mixed`, offered with the variants."""
SHORT = {"int8-per-channel": "per channel", "8bit-rows": "8-bit rows", "int8": "int8"}


def table(report: dict) -> pd.DataFrame:
    rows = [[m["module"], m["option"] or "(ONNX Runtime)", m["weight_sqnr_db"], m["shadow_sqnr_db"],
             m["running_sqnr_db"], m["alone_option"], fmt_pm(m["alone_dloss"], m.get("alone_dloss_se"), 5)
             + (" (noise)" if within_noise(m["alone_dloss"], m.get("alone_dloss_se")) else ""),
             fmt_pm(m["alone_kl"], m.get("alone_kl_se"), 6, False), round(m["alone_top1"], 4)]
            for m in report["modules"]]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=TABLE_COLUMNS)


def sqnr_svg(report: dict | None) -> str:
    """SQNR per part as points on an axis around the data (dB differences of a few matter)."""
    title = "SQNR per part (dB, higher is closer to fp32)"
    if not report or report["modules"][0]["weight_sqnr_db"] is None and report.get("plan") is None:
        return dots_svg([], {}, "SQNR (dB)", title, empty="torch variants only" if report else "nothing yet")
    mods = report["modules"]
    pt = lambda v: None if v is None else (v, None)          # noqa: E731
    series = {"weights": [pt(m["weight_sqnr_db"]) for m in mods],
              "part alone": [pt(m["shadow_sqnr_db"]) for m in mods],
              "in the model": [pt(m["running_sqnr_db"]) for m in mods]}
    return dots_svg([m["module"] for m in mods], series, "SQNR (dB)", f"{title}, {report['variant']}", SQNR,
                    none_label="fp32")


def sensitivity_svg(report: dict | None) -> str:
    """KL with one part quantized, as points on a log axis labelled with real values; a bar
    would make a KL of 2e-6 look as large as the axis floor chose. Whiskers: ± 1.96 standard
    errors where the analysis has them."""
    title = "Sensitivity: KL(fp32 ‖ model) with one part quantized"
    if not report:
        return dots_svg([], {}, "mean KL (nats)", title)
    sens = report["sensitivity"]
    cats = [f"{s['part']} {SHORT[s['option']]}" for s in sens]
    pts = [(s["kl"], 1.96 * s["kl_se"] if s.get("kl_se") is not None else None) for s in sens]
    return dots_svg(cats, {"one part quantized": pts}, "mean KL (nats, log)", title,
                    {"one part quantized": PARTS["decoder"]}, log_y=True)


def time_svg(report: dict | None) -> str:
    title = "Where the time goes (seconds, same chunks)"
    if not report:
        return hbars_svg([], {}, "seconds", title)
    values = {name: t["parts"] for name, t in report["time"].items()}
    return hbars_svg(list(values), values, "seconds", title, PARTS,
                     label={n: f"{t['total']:.2f} s" for n, t in report["time"].items()})


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
    return lines_svg(series, "int8 level (weight / grid step)", "weights (log)", f"{part}: weights on the int8 grid{note}",
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
    parts = [f"{report['tokens']:,} test tokens. {v} against fp32: loss {fmt_pm(e['dloss'], e.get('dloss_se'))}"
             f"{noise_mark(e['dloss'], e.get('dloss_se'))}, mean KL {fmt_pm(e['kl'], e.get('kl_se'), 5, False)}, "
             f"top-1 {e['top1']:.1%}."]
    parts.append(f"The part that costs most, quantized alone, is **{worst['part']} ({worst['option']})**: KL "
                 f"{worst['kl']:.5f}, top-1 {worst['top1']:.1%}.")
    own = [s for s in sens if (s["part"], s["option"]) in _plan_items(report)]
    if own and (own[0]["part"], own[0]["option"]) != (worst["part"], worst["option"]):
        parts.append(f"Of {v}'s own choices it is {own[0]['part']} ({own[0]['option']}): KL {own[0]['kl']:.5f}.")
    if total_alone > 0:
        parts.append(f"The single-part KLs of {v}'s own parts add up to {total_alone:.5f}, against {e['kl']:.5f} "
                     f"measured end to end.")
    ranking = report.get("kl_ranking")
    if ranking:
        order = "".join(f"{r['part']} ({SHORT.get(r['option'], r['option'])})"
                        + ("" if r["above_next"] is None else " > " if r["distinct_from_next"] else " ≈ ")
                        for r in ranking)
        parts.append(f"Alone, by KL: {order} (“>”: larger beyond noise, 95%; “≈”: not distinguishable on these "
                     f"tokens).")
        noisy = [f"{r['part']} ({SHORT.get(r['option'], r['option'])})" for r in ranking if r["dloss_within_noise"]]
        if noisy:
            parts.append(f"Loss change within noise of zero: {', '.join(noisy)}.")
    parts.append(f"Time: fp32 {ref_t['total']:.2f} s, {v} {var_t['total']:.2f} s; the "
                 f"{'LSTM' if top_saving == 'lstm' else top_saving} saves the most "
                 f"({saved[top_saving]:.2f} s).")
    if report.get("note"):
        parts.append(report["note"])
    return " ".join(parts)


def _plan_items(report: dict) -> set[tuple[str, str]]:
    plan = report.get("plan") or {}
    return {(p, o) for p, o in plan.items() if o != "fp32"}


def finite(v) -> bool:
    return v is not None and math.isfinite(v)


INSPECT_SLICES = {"2,000 tokens": 2_000, "10,000 tokens": 10_000, FULL_SLICE: None}
DEFAULT_INSPECT_SLICE = "2,000 tokens"
# what the Analyse events return, in this order (demo.py wires the components in the same order)
OUTPUTS = ("status", "table", "sqnr", "sensitivity", "time", "variant", "slice", "shown")


class InspectPanel:
    """The "Where int8 loses" panel of ``app`` (a ``wlm.shared.Shared``): takes a variant
    apart against fp32 (``wlm.inspection``), shows stored analyses, and keeps what is shown
    when an analysis fails or is refused."""

    def __init__(self, app: "Shared"):
        self.app = app
        self.parts = lw.parts(app.ckpt.model.config)
        self._histograms: dict[str, str] = {}
        self._split_model = None

    def inspect(self, variant=None, slice_label=DEFAULT_INSPECT_SLICE, shown=None, fresh=False,
                progress: Callable[[int, int], None] | None = None) -> tuple:
        """Error, sensitivity and time per part of ``variant`` on the first N test tokens.
        Shares the CPU as a measurement does (one model's block of chunks per turn), is stored and shown at once
        to later visitors, and counts against the live cap as test tokens x the models it runs.
        Returns the panel's outputs in ``OUTPUTS`` order."""
        app = self.app
        name = app.variant_arg(variant, recipes=False)
        if name not in self.choices():
            raise ValueError(f"variant must be one of {', '.join(self.choices())}, got {name!r} (low-bit weights are "
                             f"taken apart in How low can it go, part by part and bit by bit)")
        if not isinstance(slice_label, str) or slice_label not in INSPECT_SLICES:
            raise ValueError(f"slice must be one of {', '.join(INSPECT_SLICES)}, got {slice_label!r}")
        fresh = app.bool_arg("fresh", fresh)
        threads = app.cfg.threads
        plan = app.plans([name]).get(name)          # a recipe's analyses are its plan's, not its name's
        match, machine = app.match(slice_label, threads, variant=name), machine_info(threads)
        same_plan = lambda r: r.get("plan_sha256") == plan                                       # noqa: E731
        store = app.inspections
        stored = (store.find(same_plan, **match, **app.here(machine))
                  or (None if fresh else store.find(same_plan, **match)))
        if stored and not fresh:
            return self.view(stored)
        models = 2 + len(alone_parts(app.ckpt.model.config)) + (3 if VARIANTS[name].engine == "torch" else 0)
        work = app.slice_tokens(INSPECT_SLICES[slice_label]) * models
        cap = app.cfg.max_live_model_tokens
        if cap is not None and work > cap:
            return self.kept(shown, f"{slice_label} for {name} runs {models} models, over this shared server's live "
                             f"limit of {cap:,} model-tokens, and is not stored yet: pick 2,000 tokens, or duplicate "
                             "the Space to analyse it on a CPU of your own.")
        why = app.ensure_test_split()
        if why:
            log.warning("Analyse: %s", why)
            return self.kept(shown, "The WikiText-2 test split could not be fetched on this server, so nothing was "
                             "analysed; the figures shown are unchanged. Try again later.")
        ids = app.test_split()
        try:
            built = app.model(name)                            # waits for this variant's build only
        except ValueError as e:
            return self.kept(shown, f"{e} The figures shown are unchanged.")
        with app.turns.build(), num_threads(threads):          # the parts' int8 copies: off any timed chunk
            ins = Inspection(app.ckpt.model, built, ids, max_tokens=INSPECT_SLICES[slice_label])
        try:
            while not ins.done:
                with app.turns.chunk(), num_threads(threads):
                    ins.step()
                if progress:
                    progress(*ins.tokens)
        finally:
            ins.close()
        with app.turns.build(), num_threads(threads):
            report = ins.report()
        record = make_inspection_record(slice_label=slice_label, threads=threads, variant=name, report=report,
                                        machine=machine, checkpoint_sha256=app.ckpt.sha256,
                                        test_sha256=app.test_sha256(), plan_sha256=built.plan_sha256)
        app.keep(store, record)
        return self.view(record, stored=False)

    def initial(self) -> tuple:
        """On page load: the full test split for the tutorial's qint8 if it is stored (shipped
        with the app), else the default slice if stored, else nothing."""
        for slice_label in (FULL_SLICE, DEFAULT_INSPECT_SLICE):
            record = self.app.inspections.find(**self.app.match(slice_label, self.app.cfg.threads,
                                                                variant=self.app.default_variant))
            if record:
                return self.view(record)
        return self.kept(None, "No analysis yet: click **Analyse**.")

    def choices(self) -> list[str]:
        """The variants this panel takes apart: the int8 and fp16 ones (low-bit weights have the ladder)."""
        return [n for n in self.app.choices if VARIANTS[n].speed_claimed]

    def recipe_note(self) -> str:
        """The plan ``qint8-mixed`` follows here, and whether it beats the runner-up beyond noise."""
        spec = VARIANTS["qint8-mixed"].recipe_config
        return page_note(spec.path) if "qint8-mixed" in self.app.choices else ""

    def view(self, record: dict, stored: bool = True, note: str = "") -> tuple:
        report = record["report"]
        if note:
            status = note
        elif stored and record.get("shipped"):
            status = (f"Shipped with the app: analysed {record['when'][:10]} on the project's development machine "
                      f"({record.get('cpu')}); the seconds are that machine's. **Analyse again** runs it live here.")
        elif stored:
            status = f"Stored result, analysed {record['when'][:16].replace('T', ' ')} UTC on {record.get('cpu')}; " \
                     f"**Analyse again** re-runs it live."
        else:
            status = "Analysed live on this server just now."
        other = describe_version_differences(record)
        if other and not note:
            status += f" It was {other}."
        status += "\n\n" + summary(report)
        return (status, table(report), sqnr_svg(report), sensitivity_svg(report), time_svg(report),
                record["variant"], record["slice"], record)

    def kept(self, shown: dict | None, note: str) -> tuple:
        if shown and isinstance(shown, dict) and shown.get("report"):
            return self.view(shown, note=note)
        return (note, empty_table(), sqnr_svg(None), sensitivity_svg(None), time_svg(None),
                self.app.default_variant, DEFAULT_INSPECT_SLICE, None)

    def weight_histogram(self, part) -> str:
        """The int8 codes a part's weights get (the decoder per tensor and per channel side by
        side): how much of the int8 grid the weights use. Computed once per part, in a CPU turn
        of its own (never beside a timed chunk), then served from memory."""
        if not isinstance(part, str) or part not in self.parts:
            raise ValueError(f"part must be one of {', '.join(self.parts)}, got {part!r}")
        with self.app.lock:
            if part in self._histograms:
                return self._histograms[part]
        with self.app.turns.build(), num_threads(self.app.cfg.threads):
            module = self._split().part(part)
            if part == "decoder":
                codes = {"per tensor": weight_codes(module, "int8")["weight"],
                         "per channel": weight_codes(module, "int8-per-channel")["weight"]}
            elif part == "embedding":
                codes = {"8-bit rows": weight_codes(module, "8bit-rows")["weight"]}
            else:
                codes = weight_codes(module, "int8")
            note = "; 99% within ±" + ", ±".join(f"{used_levels(c)} ({n})" for n, c in codes.items()) + " levels"
            svg = histogram_svg(part, codes, note)
        with self.app.lock:
            self._histograms[part] = svg
        return svg

    def _split(self) -> lw.SplitModel:
        with self.app.lock:
            if self._split_model is None:
                self._split_model = lw.SplitModel(self.app.ckpt.model).eval()
            return self._split_model
