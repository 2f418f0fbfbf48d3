"""The Measure panel's view: what one measurement record (``wlm.results``) looks like on the
page: the table, the plots, the status line and the machine facts."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from .bench import machine_info
from .download import SHA256
from .results import rows_of
from .svgplot import lines_svg, scatter_svg

FULL_SLICE = "all (245,569 tokens)"
PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac"]
MODULE_LABELS = {"encoder": "embedding", "rnn": "LSTM", "decoder": "decoder"}
TABLE_COLUMNS = ["model", "engine", "size MB", "loss", "perplexity", "seconds", "tokens/s", "speed-up x", "loss change",
                 "top-1 agree", "KL mean", "KL p99", "overlap (1-TV)", "Δp rms"]


def _seconds(s: float) -> str:
    return f"{s:,.1f} s" if s >= 1 else f"{s:.3g} s"


class MeasureView:
    """Args:
        models: every model the page may show (fp32 first), for colours and empty plots.
        sizes: names -> {name: {module: MB}} of the variants already built (none is built for it).
        test_file: the test file measurements read (named when it is not the published one).
        provenance: the checkpoint's provenance (its test loss, epochs).
        default_threads: the thread count the machine facts are given for by default.
        live_cap: the server's live limit in model-tokens (None: none), named in the status.
    """

    def __init__(self, models: list[str], sizes: Callable[[list[str]], dict], test_file: Path,
                 provenance: dict, default_threads: int = 1, live_cap: int | None = None):
        self.models, self.sizes, self.test_file = models, sizes, test_file
        self.provenance, self.default_threads, self.live_cap = provenance, default_threads, live_cap
        self.colors = {n: PALETTE[k % len(PALETTE)] for k, n in enumerate(models)}

    def record(self, record: dict, names, threads, stored: bool) -> tuple:
        """(table, size plot, time plot, KL plot, size-vs-loss, speed-vs-loss, status, machine)."""
        rows = rows_of(record)
        engines = record.get("engines", {})
        table = pd.DataFrame([self.table_row(m, engines.get(m.model, "")) for m in rows], columns=TABLE_COLUMNS)
        return (table, self.size_frame(names, rows), self.time_frame(rows), self.kl_svg(rows),
                *self.tradeoff_plots(rows), self.status(record, stored, self.live_cap), self.machine_markdown(threads))

    def empty(self, names, threads, status: str) -> tuple:
        return (self.empty_table(), self.size_frame(names), self.time_frame([]), self.kl_svg([]),
                *self.tradeoff_plots([]), status, self.machine_markdown(threads))

    def status(self, record: dict, stored: bool, live_cap: int | None = None) -> str:
        """One paragraph: what was measured, what int8 buys and costs, what measuring cost, and
        where and when it was measured when it comes from the store."""
        rows = rows_of(record)
        fp, q = rows[0], rows[1]
        a = q.agreement
        what = "test tokens (the full test split)" if record["slice"] == FULL_SLICE else "test tokens"
        status = (f"{fp.tokens:,} {what}, {record['threads']} thread{'s' if record['threads'] != 1 else ''}. "
                  f"{q.model} is **{q.speedup:.2f}x** "
                  f"{'faster' if q.speedup >= 1 else 'slower'}, **{fp.size_mb / q.size_mb:.2f}x** smaller, "
                  f"loss {q.loss_change:+.4f} (the tutorial's qint8, full split: 1.76x, 1.43x, +0.001). On the same "
                  f"tokens it ranks the same word first at **{a.top1:.1%}** of positions; its distribution overlaps "
                  f"fp32's by **{a.overlap:.1%}** on average (1 - total variation: the share of words a coupled "
                  f"sample keeps, so about {a.words_before_parting:.0f} identical words before two samples part); "
                  f"mean KL(fp32 ‖ {q.model}) {a.kl_mean:.4f} nats.")
        cost = record.get("timing") or {}
        if cost.get("models_s"):
            status += (f" Cost of measuring: {_seconds(cost['wall_s'])} of computing for {_seconds(cost['models_s'])} "
                       f"of the models' own calls ({cost['wall_s'] / cost['models_s']:.2f}x; the rest is the agreement "
                       f"metrics and the loop).")
        versions = ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())
        if stored and record.get("shipped"):
            where = ("the same CPU model as this server" if record.get("cpu") == machine_info(1)["cpu"]
                     else "not this server")
            status = (f"*Shipped with the app: measured {record['when'][:10]} on the project's development machine "
                      f"({record.get('cpu')}, {where}; {versions}) with `{record.get('source', 'python -m wlm bench')}`."
                      f" **Measure again** runs it live here{' within the live limit' if live_cap else ''}.* "
                      + status)
        elif stored:
            status = (f"*Stored result, measured {record['when']} on {record.get('cpu')} ({versions}); "
                      f"**Measure again** re-runs it live.* " + status)
        if record.get("test_sha256") != SHA256["test.txt"]:
            status += f" Note: `{self.test_file}` is not the published WikiText-2 file (sha256 differs)."
        return status

    @staticmethod
    def empty_table() -> pd.DataFrame:
        return pd.DataFrame(columns=TABLE_COLUMNS)

    @staticmethod
    def table_row(m, engine: str) -> list:
        a = m.agreement
        agree = ([round(a.top1, 4), round(a.kl_mean, 5), round(a.kl_p99, 4), round(a.overlap, 4),
                  round(a.dp_rms, 5)] if a else [None] * 5)
        return [m.model, engine, round(m.size_mb, 3), round(m.loss, 4), round(m.ppl, 2), round(m.seconds, 2),
                round(m.tokens_per_s), round(m.speedup, 2), round(m.loss_change, 4), *agree]

    def kl_svg(self, rows) -> str:
        """Mean KL(fp32 || model) per stretch of the test text, one named line per variant."""
        series = {m.model: [((k + 0.5) * m.agreement.trace_bin_tokens, v) for k, v in enumerate(m.agreement.kl_trace)]
                  for m in rows if m.agreement}
        return lines_svg(series, "test token", "KL (nats)", "KL(fp32 ‖ variant) along the test text (mean per stretch)",
                         self.colors, empty="no measurement yet")

    def tradeoff_plots(self, rows) -> tuple[str, str]:
        """Size vs loss change and speed vs loss change, every point named (inline SVG)."""
        pts = lambda attr: [(m.model, getattr(m, attr), m.loss_change) for m in rows]    # noqa: E731
        return (scatter_svg(pts("size_mb"), "size (MB)", "loss change", "Size vs loss change", self.colors),
                scatter_svg(pts("tokens_per_s"), "evaluation tokens/s", "loss change", "Speed vs loss change",
                            self.colors))

    def size_frame(self, names=None, rows=None) -> pd.DataFrame:
        """Size per model and module (MB), for a stacked bar plot: from measured ``rows``, else
        from the variants of ``names`` already built."""
        sizes = {m.model: m.modules_mb for m in rows} if rows else self.sizes(names or self.models)
        return pd.DataFrame([{"model": n, "part": MODULE_LABELS.get(part, part), "MB": round(mb, 3)}
                             for n, parts in sizes.items() for part, mb in parts.items()])

    @staticmethod
    def time_frame(rows) -> pd.DataFrame:
        # explicit dtypes: an empty frame must still plot "model" as a category
        return pd.DataFrame({"model": pd.Series([m.model for m in rows], dtype="string"),
                             "seconds": pd.Series([round(m.seconds, 3) for m in rows], dtype="float64")})

    def machine_markdown(self, threads: int | None = None) -> str:
        info = machine_info(threads or self.default_threads)
        p = self.provenance
        lines = [f"- CPU: {info['cpu']} ({info['arch']}, {info['cores']} cores)",
                 f"- avx512_vnni: {'yes' if info['avx512_vnni'] else 'no'} · avx2: {'yes' if info['avx2'] else 'no'}",
                 f"- torch {info['torch']} · quantized engine `{info['quantized_engine']}` · threads {info['threads']}"]
        if "test_loss" in p:
            lines.append(f"- checkpoint: {p.get('epochs', '?')} epochs, test loss {p['test_loss']:.3f} (fp32, full split)")
        return "\n".join(lines)
