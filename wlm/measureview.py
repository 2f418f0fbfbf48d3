"""The Measure panel: fp32 and the chosen variants on the WikiText-2 test split (logic), and
what a measurement record (``wlm.results``) looks like on the page (view): the scorecard, the
table of every model, the charts, a one-line status and the details folded under it.

Nothing shown is ever lost: a Measure that fails, is refused or is over the live cap keeps the
record on screen (the panel's ``shown`` state), says in one sentence what happened, and sets
the controls back to what the shown record measured; paths and flags go to the server log.
"""
from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Callable

import pandas as pd

from .bench import machine_info, measurements
from .data import FULL_SLICE
from .download import SHA256
from .evaluate import Comparison
from .palette import MODELS, MODULE_LABELS, PARTS
from .recipes import is_recipe_name
from .results import describe_version_differences, make_record, rows_of, select
from .scorecard import scorecard_html
from .stats import fmt_pm, within_noise
from .svgplot import hbars_svg, lines_svg, scatter_svg
from .threads import num_threads

if TYPE_CHECKING:
    from .shared import Shared

log = logging.getLogger("wlm")

SLICES = {"2,000 tokens": 2_000, "5,000 tokens": 5_000, "20,000 tokens": 20_000, "50,000 tokens": 50_000,
          FULL_SLICE: None}
DEFAULT_SLICE = "5,000 tokens"
# chunks of 25 tokens a model runs in a row (``wlm.evaluate.Comparison``): one model's block is one CPU
# turn, so the app keeps it short (100 tokens: ~0.05-0.1 s at 1 thread) where bench uses 8
BLOCK_CHUNKS = 4
TABLE_COLUMNS = ["model", "engine", "size MB", "speed-up x [95%]", "tokens/s", "loss change (nats)", "perplexity",
                 "top-1 agree", "KL mean (nats)", "KL p99", "overlap (1-TV)", "Δp rms", "loss", "seconds"]
# what the Measure events return, in this order (demo.py wires the components in the same order)
OUTPUTS = ("scorecard", "table", "size", "speed", "kl", "size_trade", "speed_trade", "status", "details",
           "slice", "threads", "variants", "shown")
PROTOCOL = ("fp32 and the chosen variants evaluate the first N tokens of the WikiText-2 test split by the "
            "tutorial's protocol (bptt 25, batch 1: calls of 25 tokens, from which a dynamic int8 model takes its "
            "activations' scale) on the CPU, in lockstep: the text goes in blocks of 100 tokens, "
            "each model runs a block's chunks in a row (its caches warm, as alone), every model runs each block "
            "before the next, and each model's time counts only its own calls, after an untimed warm-up. Each "
            "figure has a standard error (±) by batch means over blocks of consecutive tokens (tokens of a text "
            "are not independent), each speed-up a ~95% interval from the per-block times. On the same "
            "tokens the panel also measures how closely each variant follows fp32: top-1 agreement, KL(fp32 ‖ "
            "variant), the overlap of the two distributions (1 - total variation) and the change in probability "
            "of the true next word. A Generate clicked meanwhile runs between two models' blocks. Results are "
            "stored and shown at once to later visitors; **Measure again** re-runs them live.")


def _seconds(s: float) -> str:
    return f"{s:,.1f} s" if s >= 1 else f"{s:.3g} s"


def _r(v, digits):
    return None if v is None or not math.isfinite(v) else round(v, digits)


def table_row(m, engine: str, no_speed: bool = False) -> list:
    """One model's row of the comparison table: each figure with its standard error (±) or ~95%
    interval ([low-high]) where the record has them (older records: the bare figure)."""
    a = m.agreement
    se = m.loss_change_se
    change = "0" if m.model == "fp32" else fmt_pm(m.loss_change, se) + (
        " (noise)" if within_noise(m.loss_change, se) else "")
    agree = ([fmt_pm(a.top1, a.top1_se, 4, False), fmt_pm(a.kl_mean, a.kl_mean_se, 5, False), _r(a.kl_p99, 4),
              fmt_pm(a.overlap, a.overlap_se, 4, False), fmt_pm(a.dp_rms, a.dp_rms_se, 5, False)] if a else [None] * 5)
    ci = m.speedup_ci
    speed = f"{m.speedup:.2f}" + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else "") + (
        " (fp32 compute: no speed claimed)" if no_speed else "")
    return [m.model, engine, round(m.size_mb, 2), speed, round(m.tokens_per_s), change,
            fmt_pm(m.ppl, m.ppl_se, 2, False), *agree, fmt_pm(m.loss, m.loss_se, 4, False), round(m.seconds, 2)]


def table(record: dict | None) -> pd.DataFrame:
    if not record:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    engines = record.get("engines", {})
    slow = set(record.get("no_speed", ()))
    return pd.DataFrame([table_row(m, engines.get(m.model, ""), m.model in slow) for m in rows_of(record)],
                        columns=TABLE_COLUMNS)


def size_svg(rows) -> str:
    return hbars_svg([m.model for m in rows],
                     {m.model: {MODULE_LABELS.get(p, p): mb for p, mb in m.modules_mb.items()} for m in rows},
                     "MB", "Size per part (MB)", PARTS, label={m.model: f"{m.size_mb:.1f}" for m in rows},
                     empty="no measurement yet")


def speed_svg(rows) -> str:
    ci = {}
    for m in rows:
        c = m.speedup_ci
        if c:
            ci[m.model] = tuple(c)
    return hbars_svg([m.model for m in rows], {m.model: {"value": m.speedup} for m in rows},
                     "speed-up over fp32 (evaluation, x)", "Evaluation speed-up over fp32", MODELS, intervals=ci,
                     label={m.model: f"{m.speedup:.2f}x" for m in rows}, empty="no measurement yet")


def kl_svg(rows) -> str:
    """Mean KL(fp32 || model) per stretch of the test text, one named line per variant."""
    series = {m.model: [((k + 0.5) * m.agreement.trace_bin_tokens, v) for k, v in enumerate(m.agreement.kl_trace)]
              for m in rows if m.agreement}
    return lines_svg(series, "test token", "KL (nats)", "KL(fp32 ‖ variant) along the test text", MODELS,
                     empty="no measurement yet", width=1100)


def tradeoff_svgs(rows) -> tuple[str, str]:
    """Size vs loss change and speed vs loss change, every point named."""
    pts = lambda attr: [(m.model, getattr(m, attr), m.loss_change) for m in rows]    # noqa: E731
    return (scatter_svg(pts("size_mb"), "size (MB)", "loss change (nats)", "Size vs loss change", MODELS),
            scatter_svg(pts("tokens_per_s"), "evaluation tokens/s", "loss change (nats)", "Speed vs loss change",
                        MODELS))


def controls(record: dict | None, default_threads: int, fallback: tuple) -> tuple:
    """(slice, threads, variants) that describe ``record`` (else ``fallback``)."""
    if not record:
        return fallback
    return record["slice"], record["threads"], [v for v in record["variants"] if v != "fp32"]


class MeasurePanel:
    """The Measure panel of ``app`` (a ``wlm.shared.Shared``: the models, the store, the CPU turns)."""

    def __init__(self, app: "Shared"):
        self.app = app

    # ------------------------------------------------------------------ logic
    def measure(self, slice_label=DEFAULT_SLICE, threads=None, variants=("qint8",), shown=None, focus=None,
                fresh=False, progress: Callable[[int, int], None] | None = None, download_progress=None) -> tuple:
        """fp32 and the chosen variants on the first N test tokens, in lockstep
        (``wlm.evaluate.Comparison``), one model's block per CPU turn (``wlm.turns``): a Generate
        clicked meanwhile runs right after the current chunk.

        A stored result for the same settings (this machine first, then any) is shown at once
        unless ``fresh``; a new one is stored. Over the live cap only stored results are shown.
        ``shown``: the record on screen, kept when this one fails; ``focus``: the scorecard's
        variant. Returns the panel's outputs in ``OUTPUTS`` order."""
        app = self.app
        if not isinstance(slice_label, str) or slice_label not in SLICES:
            raise ValueError(f"slice must be one of {', '.join(SLICES)}, got {slice_label!r}")
        threads = app.threads_arg(threads)
        names = app.names_arg(variants)
        fresh = app.bool_arg("fresh", fresh)
        match, machine = app.match(slice_label, threads), machine_info(threads)
        plans = app.plans(names)                  # a recipe's results are its plan's, not its name's
        stored = app.store.lookup(names, plans, **match, **app.here(machine))
        if not stored and not fresh:
            stored = app.store.lookup(names, plans, **match)     # measured elsewhere (e.g. shipped)
        if stored and not fresh:
            return self.view(stored, focus, stored=True)
        work = app.slice_tokens(SLICES[slice_label]) * len(names)
        cap = app.cfg.max_live_model_tokens
        if cap is not None and work > cap:
            return self.kept(shown, focus, f"{slice_label} with {len(names)} models is over this shared server's live "
                             f"limit of {cap:,} model-tokens and is not stored yet: pick a smaller slice or fewer "
                             "variants, or duplicate the Space to measure it on a CPU of your own.")
        why = app.ensure_test_split(download_progress)
        if why:
            log.warning("Measure: %s", why)
            return self.kept(shown, focus, "The WikiText-2 test split could not be fetched on this server, so "
                             "nothing was measured; the figures shown are unchanged. Try again later.")
        ids = app.test_split()
        try:
            built = {n: app.model(n) for n in names}      # each waits only for its own build
        except ValueError as e:
            return self.kept(shown, focus, f"{e} The figures shown are unchanged.")
        models = {n: v.model for n, v in built.items()}
        c = Comparison(models, ids, max_tokens=SLICES[slice_label], block_chunks=BLOCK_CHUNKS)
        t0 = time.perf_counter()
        while not c.done:
            with app.turns.chunk(), num_threads(threads):
                c.step()
            if progress:
                progress(*c.tokens)
        cost = c.cost_ci()
        timing = {"elapsed_s": time.perf_counter() - t0, "wall_s": c.wall, "models_s": sum(c.seconds.values()),
                  "ratio_ci": [cost[1], cost[2]] if cost else None}
        rows = measurements(models, c, {n: v.size for n, v in built.items()})
        record = make_record(slice_label=slice_label, threads=threads, variants=names, rows=rows,
                             engines={n: v.spec.engine for n, v in built.items()}, machine=machine,
                             checkpoint_sha256=app.ckpt.sha256, test_sha256=app.test_sha256(), timing=timing,
                             plans={n: v.plan_sha256 for n, v in built.items() if v.plan_sha256},
                             no_speed=[n for n, v in built.items() if not v.spec.speed_claimed])
        app.keep(app.store, record)
        return self.view(record, focus, stored=False)

    def initial(self) -> tuple:
        """On page load: a full test split record (measured here, else shipped with the app or
        measured elsewhere), every variant of it offered here shown; preferably one that holds
        every offered variant. Else the default slice measured here, else nothing."""
        app = self.app
        threads, offered = app.cfg.threads, app.offered()
        full = app.match(FULL_SLICE, threads)
        every = lambda r: set(offered) <= set(r.get("variants", ()))                               # noqa: E731
        pair = lambda r: r.get("variants", [None])[0] == "fp32" and app.default_variant in r["variants"]  # noqa: E731
        here = app.here(machine_info(threads))
        same_plans = lambda r: self.current(r) == [v for v in r["variants"] if v in offered]     # noqa: E731
        record = None
        for where, match in ((every, {**full, **here}), (every, full), (pair, {**full, **here}), (pair, full),
                             (pair, {**app.match(DEFAULT_SLICE, threads), **here})):
            # preferably one whose recipe variants follow today's plans; else one without them
            record = (app.store.find(lambda r: where(r) and same_plans(r), **match)
                      or app.store.find(where, **match))
            if record:
                break
        if record:
            return self.view(select(record, self.current(record)), None, stored=True)
        return self.kept(None, None, "No measurement yet: click **Measure**.")

    def current(self, record: dict) -> list[str]:
        """The models of a stored ``record`` that are offered here and built as they were measured
        (a recipe's variant from the same plan; a record older than plans says none)."""
        have, offered = record.get("plans") or {}, self.app.offered()
        plans = self.app.plans(record["variants"])
        return [v for v in record["variants"] if v in offered and have.get(v) == plans.get(v)]

    # ------------------------------------------------------------------ view
    def view(self, record: dict, focus, stored: bool, note: str = "") -> tuple:
        """The outputs for ``record`` (in ``OUTPUTS`` order); ``note`` replaces the status line."""
        rows = rows_of(record)
        focus = self.focus(record, focus)
        size_trade, speed_trade = tradeoff_svgs(rows)
        return (scorecard_html(record, focus, note), table(record), size_svg(rows), speed_svg(rows), kl_svg(rows),
                size_trade, speed_trade, note or self.status(record, stored), self.details(record),
                *controls(record, self.app.cfg.threads, ()), record)

    def kept(self, shown: dict | None, focus, note: str) -> tuple:
        """A Measure that did not measure: the shown record stays, with ``note`` saying why."""
        if shown and isinstance(shown, dict) and shown.get("rows"):
            return self.view(shown, focus, stored=True, note=note)
        empty_rows: list = []
        size_trade, speed_trade = tradeoff_svgs(empty_rows)
        return (scorecard_html(None, self.focus(None, focus), note), table(None), size_svg(empty_rows),
                speed_svg(empty_rows), kl_svg(empty_rows), size_trade, speed_trade, note, self.details(None),
                DEFAULT_SLICE, self.app.cfg.threads, [self.app.default_variant], None)

    def focus(self, record: dict | None, focus) -> str:
        """The scorecard's variant: ``focus`` if the record has it, else the tutorial's, else its first."""
        names = [v for v in (record or {}).get("variants", ()) if v != "fp32"]
        if isinstance(focus, str) and (focus in names or not names):
            return focus
        return self.app.default_variant if self.app.default_variant in names or not names else names[0]

    def scorecard(self, shown: dict | None, focus) -> str:
        """The scorecard of another variant, from the record on screen; a visitor's recipe's from its
        quick measurement (``Shared.quick_quality``), once it has one."""
        name = self.app.variant_arg(focus)
        if is_recipe_name(name):
            quick = self.app.recipes.quick_record(name)
            if quick:
                return scorecard_html(quick, name)
            return scorecard_html(None, name, "This recipe has no measurement yet: Build and measure it in "
                                              "Your recipe.")
        return scorecard_html(shown if isinstance(shown, dict) else None, name)

    def status(self, record: dict, stored: bool) -> str:
        """One line: what is shown, and where it comes from."""
        n = record["rows"][0]["tokens"]
        what = f"{len(record['variants'])} models on {n:,} test tokens"
        if stored and record.get("shipped"):
            line = (f"Shipped with the app: {what}, measured on the project's development machine. **Measure again** "
                    f"runs it live here{' within the live limit' if self.app.cfg.max_live_model_tokens else ''}.")
        elif stored:
            line = f"Stored result: {what}, measured {record['when'][:16].replace('T', ' ')} UTC. **Measure again** " \
                   f"re-runs it live."
        else:
            line = f"Measured live on this server just now: {what}."
        if record.get("test_sha256") != SHA256["test.txt"]:
            line += " The test file measured is not the published WikiText-2 file (its sha256 differs)."
        other = describe_version_differences(record)
        if other:
            line += f" It was {other}."
        return line

    def details(self, record: dict | None) -> str:
        """What is folded under the result: how it was measured, the command, its cost, and
        this server's machine facts."""
        parts = [PROTOCOL]
        if self.app.cfg.max_live_model_tokens:
            cap = self.app.cfg.max_live_model_tokens
            parts.append(f"This shared server measures at most {cap:,} model-tokens live (test tokens x models, "
                         f"fp32 included: e.g. {cap // 2:,} tokens for fp32 and one variant); larger measurements "
                         "come from stored results.")
        if record:
            m = record.get("machine") or {}
            versions = ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())
            parts.append(f"**The result shown** was measured {record.get('when', '')} on {record.get('cpu')} "
                         f"({m.get('cores', '?')} cores, avx512_vnni {'yes' if m.get('avx512_vnni') else 'no'}; "
                         f"{versions}) with `{record.get('source', 'the app')}`.")
            cost = record.get("timing") or {}
            if cost.get("models_s"):
                ci = cost.get("ratio_ci")
                of = (f" (of the measurement of {record['subset_of']} models this result is taken from)"
                      if record.get("subset_of") else "")
                parts.append(f"Cost of measuring{of}: {_seconds(cost['wall_s'])} of computing for "
                             f"{_seconds(cost['models_s'])} of the models' own calls "
                             f"({cost['wall_s'] / cost['models_s']:.2f}x"
                             + (f", ~95% interval {ci[0]:.2f}-{ci[1]:.2f}x" if ci else "")
                             + "; the rest is the agreement metrics and the loop).")
        note = self.app.variants_note()
        if note:
            parts.append(note)
        parts.append("**This server:** " + self.machine_line())
        return "\n\n".join(parts)

    def machine_line(self) -> str:
        info = machine_info(self.app.cfg.threads)
        p = self.app.ckpt.provenance
        line = (f"{info['cpu']} ({info['arch']}, {info['cores']} cores; avx512_vnni "
                f"{'yes' if info['avx512_vnni'] else 'no'}, avx2 {'yes' if info['avx2'] else 'no'}), torch "
                f"{info['torch']}, quantized engine `{info['quantized_engine']}`.")
        if "test_loss" in p:
            line += f" Checkpoint: {p.get('epochs', '?')} epochs, test loss {p['test_loss']:.3f} (fp32, full split)."
        return line
