"""What the web demo does, without the web: load once, generate side by side, measure.

``demo.py`` only lays out components and wires each event to one method here, so all of
this is testable without a server and usable from a notebook.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import pandas as pd

from .bench import machine_info, measurements
from .checkpoint import load_checkpoint
from .data import load_split, resolve_data_dir
from .download import SHA256, DownloadError, download, sha256_file
from .evaluate import Comparison, num_threads
from .generate import MAX_WORDS, GenerationConfig
from .pair import generate_pair
from .results import ResultStore, make_record, rows_of
from .results import versions as result_versions
from .sidebyside import PairRun
from .svgplot import scatter_svg
from .turns import CpuTurns
from .variants import REFERENCE, VARIANTS, VariantCache, cache_dir, unavailable

DEFAULT_CHECKPOINT = "data/wlm-lstm.safetensors"
SLICES = {"2,000 tokens": 2_000, "5,000 tokens": 5_000, "20,000 tokens": 20_000, "50,000 tokens": 50_000,
          "all (245,569 tokens)": None}
DEFAULT_SLICE = "5,000 tokens"
FULL_TEST_TOKENS = 245_569
PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac"]
DEFAULT_VARIANT = "qint8"          # the tutorial's recipe
MAX_PROMPT_CHARS = 2_000
STREAM_INTERVAL_S = 0.05          # at most ~20 UI updates per second while generating
MODULE_LABELS = {"encoder": "embedding", "rnn": "LSTM", "decoder": "decoder"}
TABLE_COLUMNS = ["model", "engine", "size MB", "loss", "perplexity", "seconds", "tokens/s", "speed-up x", "loss change",
                 "top-1 agree", "KL mean", "KL p99", "overlap (1-TV)", "Δp rms"]


@dataclass(frozen=True)
class AppConfig:
    checkpoint: str = DEFAULT_CHECKPOINT
    data: str | None = None        # None: $WLM_DATA, else data/wikitext-2
    threads: int = 1               # default thread count (the tutorial's 1)
    cache: str | None = None       # ONNX exports and stored measurements; None: $WLM_CACHE, else data/cache
    max_measure_tokens: int | None = None    # live Measure cap (a shared server); None: no cap


def _as_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}") from None
    if not math.isfinite(f) or f != int(f) or not lo <= f <= hi:
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return int(f)


def _as_bool(name: str, value) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _as_float(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number from {lo} to {hi}, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number from {lo} to {hi}, got {value!r}") from None
    if not math.isfinite(f) or not lo <= f <= hi:
        raise ValueError(f"{name} must be a number from {lo} to {hi}, got {value!r}")
    return f


class QuantDemo:
    """The fp32 model of a checkpoint and its variants (built on first use), and the events."""

    def __init__(self, cfg: AppConfig):
        t0 = time.perf_counter()
        self.cfg = cfg
        self.ckpt = load_checkpoint(cfg.checkpoint)
        self.dictionary = self.ckpt.dictionary
        self.variants = VariantCache(self.ckpt, cfg.cache)
        for name in (REFERENCE, DEFAULT_VARIANT):        # the tutorial's pair is ready at once
            self.variants.get(name)
        why_not = {n: unavailable(n) for n in VARIANTS}
        self.hidden = {n: why for n, why in why_not.items() if why}
        self.choices = [n for n in VARIANTS if n != REFERENCE and n not in self.hidden]
        self.colors = {n: PALETTE[k % len(PALETTE)] for k, n in enumerate([REFERENCE, *self.choices])}
        self.data_dir = resolve_data_dir(cfg.data)
        self._test_ids = None
        self._test_is_wikitext = False
        self._lock = threading.Lock()
        self.turns = CpuTurns()
        self.store = ResultStore(cache_dir(cfg.cache) / "results")
        self.load_seconds = time.perf_counter() - t0

    def _variant(self, name, field: str = "variant", default: bool = True):
        if default and name in (None, ""):
            name = DEFAULT_VARIANT
        if not isinstance(name, str) or name not in self.choices:
            why = f" ({self.hidden[name]})" if isinstance(name, str) and name in self.hidden else ""
            raise ValueError(f"{field} must be one of {', '.join(self.choices)}, got {name!r}{why}")
        return name

    # ---------------------------------------------------------------- generation
    def generate(self, prompt, words=100, temperature=1.0, seed=0, raw=False,
                 variant=DEFAULT_VARIANT) -> Iterator[tuple]:
        """Stream (fp32 html, variant html, fp32 stats, variant stats, notes, parting table) while
        fp32 and the variant write from one random stream (``wlm.pair.generate_pair``)."""
        if prompt is None:
            prompt = ""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,}")
        cfg = GenerationConfig(prompt=prompt, words=_as_int("words", words, 1, MAX_WORDS),
                               temperature=_as_float("temperature", temperature, 0.0, 10.0),
                               seed=_as_int("seed", seed, 0, 2**63 - 1))
        name = self._variant(variant)
        if not self.variants.is_built(name):
            yield ("", "", "", "", f"Preparing **{name}** (first use: {VARIANTS[name].recipe})…", "")
        pair = [self.variants.get(REFERENCE), self.variants.get(name)]
        run = PairRun((REFERENCE, name), self.dictionary.tokenize(prompt),
                      self.dictionary.encode(prompt).unknown, _as_bool("raw", raw))
        last = 0.0
        with self.turns.priority():
            for step in generate_pair([v.model for v in pair], self.dictionary, cfg, threads=self.cfg.threads):
                run.add(step)
                now = time.perf_counter()
                if now - last >= STREAM_INTERVAL_S and step.index + 1 < cfg.words:
                    last = now
                    yield run.view(done=False)
        yield run.view(done=True)

    # ---------------------------------------------------------------- measurement
    def data_status(self) -> str:
        missing = [n for n in SHA256 if not (self.data_dir / n).is_file()]
        if "test.txt" not in missing:
            return f"WikiText-2 test split: `{self.data_dir / 'test.txt'}`."
        return (f"WikiText-2's test split is not here yet (`{self.data_dir}`): **Measure** fetches test.txt "
                f"(1.3 MB, sha256-verified) on first use, or copy it there (or set `WLM_DATA` to its folder).")

    def _test_split(self):
        with self._lock:
            if self._test_ids is None:
                self._test_ids = load_split(self.data_dir, "test", self.dictionary)
                self._test_is_wikitext = sha256_file(self.data_dir / "test.txt") == SHA256["test.txt"]
            return self._test_ids

    def _ensure_test_split(self, progress_factory=None) -> str | None:
        """Fetch test.txt alone when it is missing (sha256-verified); None, or why it failed."""
        if (self.data_dir / "test.txt").is_file():
            return None
        try:
            download(self.data_dir, files=("test.txt",), progress_factory=progress_factory)
        except DownloadError as e:
            return (f"**Could not fetch WikiText-2's test split** ({e}). Size needs no data; for loss and speed, "
                    f"copy test.txt into `{self.data_dir}` or set `WLM_DATA` to its folder, then measure again.")
        return None

    def measure(self, slice_label=DEFAULT_SLICE, threads=None, variants=(DEFAULT_VARIANT,),
                progress: Callable[[int, int], None] | None = None, fresh=False,
                download_progress=None) -> tuple:
        """fp32 and the chosen variants on the first N test tokens, in lockstep
        (``wlm.evaluate.Comparison``), one chunk at a time: between chunks a waiting Generate runs.

        A stored result for the same slice, threads, variants, machine, checkpoint and library
        versions is shown at once unless ``fresh``; a new one is stored. Slices over the live cap
        (``AppConfig.max_measure_tokens``) come only from the store.

        Returns (table, size plot, time plot, KL plot, size-vs-loss plot, speed-vs-loss plot,
        status markdown, machine markdown); the plots as DataFrames.
        """
        if not isinstance(slice_label, str) or slice_label not in SLICES:
            raise ValueError(f"slice must be one of {', '.join(SLICES)}, got {slice_label!r}")
        threads = self.cfg.threads if threads in (None, "") else _as_int("threads", threads, 1, 64)
        if isinstance(variants, str):
            variants = [variants]
        if not isinstance(variants, (list, tuple)) or not variants:
            raise ValueError(f"variants must be a non-empty list of {', '.join(self.choices)}, got {variants!r}")
        names = [REFERENCE] + list(dict.fromkeys(self._variant(v, "variants", default=False) for v in variants))
        fresh = _as_bool("fresh", fresh)
        key, machine = self._store_key(slice_label, threads, names)
        stored = self.store.find(key)
        if stored and not fresh:
            return self._view(stored, names, threads, stored=True)
        n = SLICES[slice_label] or FULL_TEST_TOKENS
        cap = self.cfg.max_measure_tokens
        if cap is not None and n > cap:
            elsewhere = self.store.latest_anywhere(slice=slice_label, threads=threads, variants=names,
                                                   checkpoint_sha256=self.ckpt.sha256)
            if elsewhere:
                return self._view(elsewhere, names, threads, stored=True)
            return self._empty_view(names, threads, (
                f"**{slice_label} is over this server's live limit of {cap:,} tokens**, and no stored result for "
                f"these settings exists yet. Pick a smaller slice (they take seconds), or run the app where you "
                f"control the CPU (`python demo.py`); full-split figures are in the README."))
        why = self._ensure_test_split(download_progress)
        if why:
            return self._empty_view(names, threads, why)
        built = {n: self.variants.get(n) for n in names}
        models = {n: v.model for n, v in built.items()}
        c = Comparison(models, self._test_split(), max_tokens=SLICES[slice_label])
        while not c.done:
            with self.turns.background(), num_threads(threads):
                c.step()
            if progress:
                progress(*c.tokens)
        rows = measurements(models, c, {n: v.size for n, v in built.items()})
        record = make_record(slice_label=slice_label, threads=threads, variants=names, rows=rows,
                             engines={n: v.spec.engine for n, v in built.items()}, machine=machine,
                             checkpoint_sha256=self.ckpt.sha256,
                             test_sha256=SHA256["test.txt"] if self._test_is_wikitext else None)
        try:
            self.store.save(record)
        except OSError:
            pass                         # a read-only disk costs the memory of the result, not the result
        return self._view(record, names, threads, stored=False)

    def _store_key(self, slice_label: str, threads: int, names: list[str]) -> tuple[dict, dict]:
        """The fields a stored measurement is found by, and this machine's facts."""
        with num_threads(threads):
            machine = machine_info()
        return ({"slice": slice_label, "threads": threads, "variants": names, "checkpoint_sha256": self.ckpt.sha256,
                 "cpu": machine["cpu"], "versions": result_versions()}, machine)

    def initial_view(self) -> tuple:
        """What the Measure panel shows on page load: the stored result for the default settings,
        if any, else an empty state that says what Measure will do."""
        threads, names = self.cfg.threads, [REFERENCE, DEFAULT_VARIANT]
        stored = self.store.find(self._store_key(DEFAULT_SLICE, threads, names)[0])
        if stored:
            return self._view(stored, names, threads, stored=True)
        return self._empty_view(names, threads, "No measurement yet: click **Measure**. " + self.data_status())

    def _empty_view(self, names, threads, status: str) -> tuple:
        return (self.empty_table(), self.size_frame(names), self.time_frame([]), self.kl_frame([]),
                *self.tradeoff_plots([]), status, self.machine_markdown(threads))

    def _view(self, record: dict, names, threads, stored: bool) -> tuple:
        rows = rows_of(record)
        engines = record.get("engines", {})
        table = pd.DataFrame([self._table_row(m, engines.get(m.model, "")) for m in rows], columns=TABLE_COLUMNS)
        fp, q = rows[0], rows[1]
        a = q.agreement
        status = (f"{fp.tokens:,} test tokens, {record['threads']} thread(s). {q.model} is **{q.speedup:.2f}x** "
                  f"{'faster' if q.speedup >= 1 else 'slower'}, **{fp.size_mb / q.size_mb:.2f}x** smaller, "
                  f"loss {q.loss_change:+.4f} (the tutorial's qint8, full split: 1.76x, 1.43x, +0.001). On the same "
                  f"tokens it ranks the same word first at **{a.top1:.1%}** of positions; its distribution overlaps "
                  f"fp32's by **{a.overlap:.1%}** on average (1 - total variation: the share of words a coupled "
                  f"sample keeps, so about {a.words_before_parting:.0f} identical words before two samples part); "
                  f"mean KL(fp32 ‖ {q.model}) {a.kl_mean:.4f} nats.")
        if stored:
            status = (f"*Stored result, measured {record['when']} on {record.get('cpu')} "
                      f"({', '.join(f'{k} {v}' for k, v in record.get('versions', {}).items())}); "
                      f"**Measure again** re-runs it live.* " + status)
        if record.get("test_sha256") is None:
            status += f" Note: `{self.data_dir / 'test.txt'}` is not the published WikiText-2 file (sha256 differs)."
        return (table, self.size_frame(names), self.time_frame(rows), self.kl_frame(rows), *self.tradeoff_plots(rows), status, self.machine_markdown(threads))

    @staticmethod
    def empty_table() -> pd.DataFrame:
        return pd.DataFrame(columns=TABLE_COLUMNS)

    @staticmethod
    def _table_row(m, engine: str) -> list:
        a = m.agreement
        agree = ([round(a.top1, 4), round(a.kl_mean, 5), round(a.kl_p99, 4), round(a.overlap, 4),
                  round(a.dp_rms, 5)] if a else [None] * 5)
        return [m.model, engine, round(m.size_mb, 3), round(m.loss, 4), round(m.ppl, 2), round(m.seconds, 2),
                round(m.tokens_per_s), round(m.speedup, 2), round(m.loss_change, 4), *agree]

    def kl_frame(self, rows) -> pd.DataFrame:
        """Mean KL(fp32 || model) per stretch of the test text, for a line plot. Without rows, one
        empty (NaN) point per model: a native plot with ``color`` that starts with no rows draws
        no marks after an update (gradio 6.31)."""
        pts = [(m.model, (k + 0.5) * m.agreement.trace_bin_tokens, v)
               for m in rows if m.agreement for k, v in enumerate(m.agreement.kl_trace)]
        pts = pts or [(n, math.nan, math.nan) for n in self.choices]
        return pd.DataFrame({"model": pd.Series([p[0] for p in pts], dtype=object),
                             "test token": pd.Series([p[1] for p in pts], dtype="float64"),
                             "KL (nats)": pd.Series([p[2] for p in pts], dtype="float64")})

    def tradeoff_plots(self, rows) -> tuple[str, str]:
        """Size vs loss change and speed vs loss change, every point named (inline SVG)."""
        pts = lambda attr: [(m.model, getattr(m, attr), m.loss_change) for m in rows]    # noqa: E731
        return (scatter_svg(pts("size_mb"), "size (MB)", "loss change", "Size vs loss change", self.colors),
                scatter_svg(pts("tokens_per_s"), "evaluation tokens/s", "loss change", "Speed vs loss change",
                            self.colors))

    def size_frame(self, names=None) -> pd.DataFrame:
        """Size per model and module (MB), for a stacked bar plot (models already built)."""
        names = names or [n for n in VARIANTS if self.variants.is_built(n)]
        return pd.DataFrame([{"model": n, "part": MODULE_LABELS.get(part, part), "MB": round(mb, 3)}
                             for n in names for part, mb in self.variants.get(n).size.modules_mb.items()])

    @staticmethod
    def time_frame(rows) -> pd.DataFrame:
        # explicit dtypes: an empty frame must still plot "model" as a category
        return pd.DataFrame({"model": pd.Series([m.model for m in rows], dtype="string"),
                             "seconds": pd.Series([round(m.seconds, 3) for m in rows], dtype="float64")})

    # ---------------------------------------------------------------- descriptions
    def model_text(self, name: str) -> str:
        v = self.variants.get(self._variant(name) if name != REFERENCE else name)
        how = "torch.save of the state_dict" if v.spec.engine == "torch" else "bytes of the .onnx file"
        return f"{v.description}\n\n# {v.spec.engine}: {v.spec.recipe}\n# size: {v.size.total_mb:.3f} MB ({how})"

    def pane_title(self, name) -> str:
        name = self._variant(name)
        return f"### {name} ({VARIANTS[name].engine})"

    def variants_note(self) -> str:
        """Which variants are offered, and why any are not."""
        if not self.hidden:
            return ""
        return "Not offered here: " + "; ".join(f"`{n}`: {why}" for n, why in self.hidden.items())

    def machine_markdown(self, threads: int | None = None) -> str:
        with num_threads(threads):
            info = machine_info()
        p = self.ckpt.provenance
        lines = [f"- CPU: {info['cpu']} ({info['arch']}, {info['cores']} cores)",
                 f"- avx512_vnni: {'yes' if info['avx512_vnni'] else 'no'} · avx2: {'yes' if info['avx2'] else 'no'}",
                 f"- torch {info['torch']} · quantized engine `{info['quantized_engine']}` · threads {info['threads']}"]
        if "test_loss" in p:
            lines.append(f"- checkpoint: {p.get('epochs', '?')} epochs, test loss {p['test_loss']:.3f} (fp32, full split)")
        return "\n".join(lines)
