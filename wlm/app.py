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

from . import layerwise as lw
from .bench import machine_info, measurements
from .checkpoint import load_checkpoint
from .data import load_split, resolve_data_dir
from .download import SHA256, DownloadError, download, sha256_file
from .evaluate import Comparison
from .generate import MAX_WORDS, GenerationConfig
from .pair import generate_pair
from .inspection import Inspection, alone_parts
from .inspectview import InspectView, histogram_svg, used_levels, weight_codes
from .measureview import FULL_SLICE, TABLE_COLUMNS, MeasureView  # noqa: F401  (TABLE_COLUMNS: the table's)
from .results import ResultStore, make_inspection_record, make_record
from .results import versions as result_versions
from .sidebyside import PairRun
from .threads import PAGE_CHOICES, allowed_threads, num_threads, usable_cpus
from .turns import DEFAULT_MEASURE_SHARE, CpuTurns
from .variants import REFERENCE, VARIANTS, VariantCache, cache_dir, unavailable

DEFAULT_CHECKPOINT = "data/wlm-lstm.safetensors"
SLICES = {"2,000 tokens": 2_000, "5,000 tokens": 5_000, "20,000 tokens": 20_000, "50,000 tokens": 50_000,
          FULL_SLICE: None}
DEFAULT_SLICE = "5,000 tokens"
FULL_TEST_TOKENS = 245_569
DEFAULT_VARIANT = "qint8"          # the tutorial's recipe
MAX_PROMPT_CHARS = 2_000
STREAM_INTERVAL_S = 0.1           # at most ~10 UI updates per second while generating: a turn of the CPU
MAX_SEED = 2**63 - 1
INSPECT_SLICES = {"2,000 tokens": 2_000, "10,000 tokens": 10_000, FULL_SLICE: None}
DEFAULT_INSPECT_SLICE = "2,000 tokens"


@dataclass(frozen=True)
class AppConfig:
    """Args:
        checkpoint: the fp32 checkpoint (.safetensors).
        data: WikiText-2 folder (None: $WLM_DATA, else data/wikitext-2).
        threads: thread count of Generate and the default of Measure (the tutorial's 1).
        cache: ONNX exports and stored measurements (None: $WLM_CACHE, else data/cache).
        shipped_results: a folder of stored measurements shipped with the app (read only).
        max_live_model_tokens: the largest measurement run live, in model-tokens (test tokens x
            models measured, fp32 included); larger ones come only from stored results. None:
            no cap.
        thread_choices: thread counts Measure accepts (None: the page's 1, 2, 4 that fit the
            CPUs this process may use).
        prebuild: build every offered variant in the background at start-up.
        measure_share: CPU share a measurement keeps under a continuous stream of Generates.
        generate_slots: Generates computing side by side (None: the CPUs this process may
            use / ``threads``, so each has CPUs of its own; never beside a measurement chunk).
    """
    checkpoint: str = DEFAULT_CHECKPOINT
    data: str | None = None
    threads: int = 1
    cache: str | None = None
    shipped_results: str | None = None
    max_live_model_tokens: int | None = None
    thread_choices: tuple[int, ...] | None = None
    prebuild: bool = False
    measure_share: float = DEFAULT_MEASURE_SHARE
    generate_slots: int | None = None


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


def _as_seed(value) -> int:
    """A seed, exactly: an integer (or its decimal text) from 0 to 2**63-1. A float is taken only
    below 2**53, where it is still the integer that was typed."""
    msg = f"seed must be a whole number from 0 to 2**63-1 ({MAX_SEED}), got {value!r}"
    if isinstance(value, bool):
        raise ValueError(msg)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text.isdigit() or not text.isascii() or len(text) > 19:
            raise ValueError(msg)
        value = int(text)
    elif isinstance(value, float):
        if not value.is_integer() or not 0 <= value < 2**53:
            raise ValueError(msg + ("; a number above 2**53 must be sent as an integer or as text, "
                                    "a float cannot hold it exactly" if value.is_integer() else ""))
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(msg)
    return value


class QuantDemo:
    """The fp32 model of a checkpoint and its variants, the events, and how they share the CPU."""

    def __init__(self, cfg: AppConfig):
        t0 = time.perf_counter()
        self.cfg = cfg
        self.thread_choices = tuple(cfg.thread_choices or allowed_threads())
        if cfg.threads not in self.thread_choices:
            raise ValueError(f"threads must be one of {self._threads_allowed()}, got {cfg.threads!r}")
        self.ckpt = load_checkpoint(cfg.checkpoint)
        self.dictionary = self.ckpt.dictionary
        self.turns = CpuTurns(cfg.measure_share, cfg.generate_slots or max(1, usable_cpus() // cfg.threads))
        # builds wait for a running measurement chunk and never land inside one (wlm.turns)
        self.variants = VariantCache(self.ckpt, cfg.cache, thread_counts=self.thread_choices,
                                     guard=self.turns.build)
        for name in (REFERENCE, DEFAULT_VARIANT):        # the tutorial's pair is ready at once
            self.variants.get(name)
        why_not = {n: unavailable(n) for n in VARIANTS}
        self.hidden = {n: why for n, why in why_not.items() if why}
        self.choices = [n for n in VARIANTS if n != REFERENCE and n not in self.hidden]
        self.data_dir = resolve_data_dir(cfg.data)
        self._test_ids = None
        self._test_sha = None              # (size, mtime_ns, sha256) of the test file read
        self._split_model = None           # the fp32 model part by part, for the weights pictures
        self._lock = threading.Lock()
        self.store = ResultStore(cache_dir(cfg.cache) / "results",
                                 shipped=[cfg.shipped_results] if cfg.shipped_results else [])
        self.inspections = self.store.inspections()
        self.view = MeasureView([REFERENCE, *self.choices], self._built_sizes, self.data_dir / "test.txt",
                                self.ckpt.provenance, cfg.threads, cfg.max_live_model_tokens)
        self.inspect_view = InspectView()
        self.parts = lw.parts(self.ckpt.model.config)
        self.load_seconds = time.perf_counter() - t0
        if cfg.prebuild:       # the other variants, off the request path
            self.variants.prebuild([n for n in self.choices if not self.variants.is_built(n)])

    def _built_sizes(self, names) -> dict:
        return {n: self.variants.get(n).size.modules_mb for n in names if self.variants.is_built(n)}

    def _variant(self, name, field: str = "variant", default: bool = True):
        if default and name in (None, ""):
            name = DEFAULT_VARIANT
        if not isinstance(name, str) or name not in self.choices:
            why = f" ({self.hidden[name]})" if isinstance(name, str) and name in self.hidden else ""
            raise ValueError(f"{field} must be one of {', '.join(self.choices)}, got {name!r}{why}")
        return name

    def _threads_allowed(self) -> str:
        cpus = usable_cpus()
        return (f"{', '.join(map(str, self.thread_choices))} (the page's choices {', '.join(map(str, PAGE_CHOICES))} "
                f"that fit the {cpus} CPU{'s' if cpus != 1 else ''} this server may use)")

    def _threads(self, value) -> int:
        if value is None or (isinstance(value, str) and value == ""):
            return self.cfg.threads
        try:
            n = _as_int("threads", value, 1, 64)
        except ValueError:
            n = None
        if n not in self.thread_choices:
            raise ValueError(f"threads must be one of {self._threads_allowed()}, got {value!r}")
        return n

    # ---------------------------------------------------------------- generation
    def generate(self, prompt, words=100, temperature=1.0, seed=0, raw=False,
                 variant=DEFAULT_VARIANT) -> Iterator[tuple]:
        """Stream (fp32 html, variant html, fp32 stats, variant stats, notes, parting table) while
        fp32 and the variant write from one random stream (``wlm.pair.generate_pair``).

        The work goes in turns of at most ``STREAM_INTERVAL_S`` (``wlm.turns``): the CPU is
        given back before each update is sent, and every turn runs at the app's thread count
        on whichever worker thread resumes this generator."""
        if prompt is None:
            prompt = ""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,}")
        cfg = GenerationConfig(prompt=prompt, words=_as_int("words", words, 1, MAX_WORDS),
                               temperature=_as_float("temperature", temperature, 0.0, 10.0), seed=_as_seed(seed))
        name = self._variant(variant)
        raw = _as_bool("raw", raw)
        if not self.variants.is_built(name):
            yield ("", "", "", "", f"Preparing **{name}** (first use: {VARIANTS[name].recipe})…", "")
        pair = [self.variants.get(REFERENCE), self.variants.get(name)]     # waits for this variant only
        threads = self.cfg.threads
        run = PairRun((REFERENCE, name), self.dictionary.tokenize(prompt), self.dictionary.encode(prompt).unknown,
                      raw, cfg=cfg, threads=threads)
        steps = generate_pair([v.model for v in pair], self.dictionary, cfg, threads=None)
        done = False
        while not done:
            with self.turns.generate() as turn, num_threads(threads):
                until, n = time.perf_counter() + STREAM_INTERVAL_S, 0
                while not done and (n == 0 or time.perf_counter() < until):
                    step = next(steps)
                    run.add(step)
                    n += 1
                    done = step.index + 1 == cfg.words
                if turn.disturbed:
                    run.disturbed_words += n
                view = run.view(done=done)
            yield view

    # ---------------------------------------------------------------- measurement
    def data_status(self) -> str:
        missing = [n for n in SHA256 if not (self.data_dir / n).is_file()]
        if "test.txt" not in missing:
            return f"WikiText-2 test split: `{self.data_dir / 'test.txt'}`."
        return (f"WikiText-2's test split is not here yet (`{self.data_dir}`): **Measure** fetches test.txt "
                f"(1.3 MB, sha256-verified) on first use, or copy it there (or set `WLM_DATA` to its folder).")

    def _test_sha256(self) -> str:
        """sha256 of the test file measurements read: the local one, or, while it is missing,
        the published one that Measure would fetch (sha256-verified). Hashed once per file version."""
        path = self.data_dir / "test.txt"
        try:
            st = path.stat()
        except OSError:
            return SHA256["test.txt"]
        with self._lock:
            if self._test_sha is None or self._test_sha[:2] != (st.st_size, st.st_mtime_ns):
                self._test_sha = (st.st_size, st.st_mtime_ns, sha256_file(path))
                self._test_ids = None
            return self._test_sha[2]

    def _test_split(self):
        self._test_sha256()                       # drops the ids when the file changed
        with self._lock:
            if self._test_ids is None:
                self._test_ids = load_split(self.data_dir, "test", self.dictionary)
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

    def _names(self, variants) -> list[str]:
        """fp32 and the chosen variants, each once, in the canonical order of ``VARIANTS`` (so
        [a, b] and [b, a] are one measurement)."""
        if isinstance(variants, str):
            variants = [variants]
        if not isinstance(variants, (list, tuple)) or not variants:
            raise ValueError(f"variants must be a non-empty list of {', '.join(self.choices)}, got {variants!r}")
        chosen = {self._variant(v, "variants", default=False) for v in variants}
        return [REFERENCE] + [n for n in VARIANTS if n in chosen]

    def measure(self, slice_label=DEFAULT_SLICE, threads=None, variants=(DEFAULT_VARIANT,),
                progress: Callable[[int, int], None] | None = None, fresh=False,
                download_progress=None) -> tuple:
        """fp32 and the chosen variants on the first N test tokens, in lockstep
        (``wlm.evaluate.Comparison``), one chunk per CPU turn (``wlm.turns``): a Generate
        clicked meanwhile runs right after the current chunk.

        A stored result for the same slice, threads, variants, test data, checkpoint, machine
        and library versions is shown at once unless ``fresh``; a new one is stored.
        Measurements over the live cap (``AppConfig.max_live_model_tokens``) come only from the
        store, measured on any machine.

        Returns (table, size plot, time plot, KL plot, size-vs-loss plot, speed-vs-loss plot,
        status markdown, machine markdown); the plots as DataFrames.
        """
        if not isinstance(slice_label, str) or slice_label not in SLICES:
            raise ValueError(f"slice must be one of {', '.join(SLICES)}, got {slice_label!r}")
        threads = self._threads(threads)
        names = self._names(variants)
        fresh = _as_bool("fresh", fresh)
        match, machine = self._match(slice_label, threads), machine_info(threads)
        stored = self.store.lookup(names, **match, **self._here(machine))
        if stored and not fresh:
            return self.view.record(stored, names, threads, stored=True)
        work = self._slice_tokens(SLICES[slice_label]) * len(names)
        cap = self.cfg.max_live_model_tokens
        if cap is not None and work > cap:
            elsewhere = self.store.lookup(names, **match)
            if elsewhere:
                return self.view.record(elsewhere, names, threads, stored=True)
            return self.view.empty(names, threads, (
                f"**{slice_label} with {len(names)} models is {work:,} model-tokens, over this server's live limit "
                f"of {cap:,}** (test tokens x models), and no stored result for these settings exists yet. Pick a "
                f"smaller slice or fewer variants (they take seconds), or run the app where you control the CPU "
                f"(`python demo.py`); full-split figures are in the README."))
        why = self._ensure_test_split(download_progress)
        if why:
            return self.view.empty(names, threads, why)
        ids = self._test_split()
        test_sha = self._test_sha256()
        built = {n: self.variants.get(n) for n in names}      # each waits only for its own build
        models = {n: v.model for n, v in built.items()}
        c = Comparison(models, ids, max_tokens=SLICES[slice_label])
        t0 = time.perf_counter()
        while not c.done:
            with self.turns.chunk(), num_threads(threads):
                c.step()
            if progress:
                progress(*c.tokens)
        timing = {"elapsed_s": time.perf_counter() - t0, "wall_s": c.wall, "models_s": sum(c.seconds.values())}
        rows = measurements(models, c, {n: v.size for n, v in built.items()})
        record = make_record(slice_label=slice_label, threads=threads, variants=names, rows=rows,
                             engines={n: v.spec.engine for n, v in built.items()}, machine=machine,
                             checkpoint_sha256=self.ckpt.sha256, test_sha256=test_sha, timing=timing)
        self._keep(self.store, record)
        return self.view.record(record, names, threads, stored=False)

    def _slice_tokens(self, first: int | None) -> int:
        """Test tokens the first ``first`` (None: all) predict: counted in the test file when it
        is here, else nominal."""
        nominal = first or FULL_TEST_TOKENS
        if not (self.data_dir / "test.txt").is_file():
            return nominal - 1
        return min(nominal, len(self._test_split())) - 1

    def _match(self, slice_label: str, threads: int, **more) -> dict:
        """The fields that make two stored results the same one, but for the machine."""
        return {"slice": slice_label, "threads": threads, "test_sha256": self._test_sha256(),
                "checkpoint_sha256": self.ckpt.sha256, **more}

    @staticmethod
    def _here(machine: dict) -> dict:
        """The fields that say a stored result was taken on this machine, with these libraries."""
        return {"cpu": machine["cpu"], "versions": result_versions()}

    @staticmethod
    def _keep(store: ResultStore, record: dict) -> None:
        try:
            store.save(record)
        except OSError:
            pass                         # a read-only disk costs the memory of the result, not the result

    def initial_view(self) -> tuple:
        """What the Measure panel shows on page load: the full test split for fp32 and the
        tutorial's qint8 (measured here, else shipped with the app or measured elsewhere), else
        the default slice measured here, else an empty state that says what Measure will do."""
        threads, names = self.cfg.threads, [REFERENCE, DEFAULT_VARIANT]
        here = self._here(machine_info(threads))
        full = self._match(FULL_SLICE, threads)
        record = (self.store.lookup(names, **full, **here) or self.store.lookup(names, **full)
                  or self.store.lookup(names, **self._match(DEFAULT_SLICE, threads), **here))
        if record:
            return self.view.record(record, names, threads, stored=True)
        return self.view.empty(names, threads, "No measurement yet: click **Measure**. " + self.data_status())

    # ---------------------------------------------------------------- where int8 loses
    def inspect(self, variant=DEFAULT_VARIANT, slice_label=DEFAULT_INSPECT_SLICE, fresh=False,
                progress: Callable[[int, int], None] | None = None) -> tuple:
        """Take a variant apart against fp32 on the first N test tokens (``wlm.inspection``):
        error per part, sensitivity per part, time per part. Shares the CPU as a measurement
        does (one chunk per turn), is stored and shown at once to later visitors, and counts
        against the live cap as test tokens x the models it runs.

        Returns (status markdown, table, SQNR svg, sensitivity svg, time svg)."""
        name = self._variant(variant)
        if not isinstance(slice_label, str) or slice_label not in INSPECT_SLICES:
            raise ValueError(f"slice must be one of {', '.join(INSPECT_SLICES)}, got {slice_label!r}")
        fresh = _as_bool("fresh", fresh)
        threads = self.cfg.threads
        match, machine = self._match(slice_label, threads, variant=name), machine_info(threads)
        store = self.inspections
        stored = store.find(**match, **self._here(machine))
        if stored and not fresh:
            return self.inspect_view.record(stored)
        models = 2 + len(alone_parts(self.ckpt.model.config)) + (3 if VARIANTS[name].engine == "torch" else 0)
        work = self._slice_tokens(INSPECT_SLICES[slice_label]) * models
        cap = self.cfg.max_live_model_tokens
        if cap is not None and work > cap:
            elsewhere = store.find(**match)
            if elsewhere:
                return self.inspect_view.record(elsewhere)
            return self.inspect_view.empty(
                f"**{slice_label} for {name} runs {models} models: {work:,} model-tokens, over this server's live "
                f"limit of {cap:,}**, and no stored result for it exists yet. Pick 2,000 tokens, or run "
                f"`python -m wlm inspect --variant {name}` where you control the CPU.")
        why = self._ensure_test_split()
        if why:
            return self.inspect_view.empty(why)
        ids = self._test_split()
        built = self.variants.get(name)                        # waits for this variant's build only
        with self.turns.build(), num_threads(threads):         # the parts' int8 copies: off any timed chunk
            ins = Inspection(self.ckpt.model, built, ids, max_tokens=INSPECT_SLICES[slice_label])
        try:
            while not ins.done:
                with self.turns.chunk(), num_threads(threads):
                    ins.step()
                if progress:
                    progress(*ins.tokens)
        finally:
            ins.close()
        with self.turns.build(), num_threads(threads):
            report = ins.report()
        record = make_inspection_record(slice_label=slice_label, threads=threads, variant=name, report=report,
                                        machine=machine, checkpoint_sha256=self.ckpt.sha256,
                                        test_sha256=self._test_sha256())
        self._keep(store, record)
        return self.inspect_view.record(record, stored=False)

    def initial_inspection(self) -> tuple:
        """What the panel shows on page load: the full test split for the tutorial's qint8 if
        it is stored (shipped with the app), else the default slice if stored, else nothing."""
        for slice_label in (FULL_SLICE, DEFAULT_INSPECT_SLICE):
            record = self.inspections.find(**self._match(slice_label, self.cfg.threads, variant=DEFAULT_VARIANT))
            if record:
                return self.inspect_view.record(record)
        return self.inspect_view.empty("No analysis yet: click **Analyse**.")

    def weight_histogram(self, part) -> str:
        """The int8 codes a part's weights get (the decoder per tensor and per channel side by
        side): how much of the int8 grid the weights use."""
        if not isinstance(part, str) or part not in self.parts:
            raise ValueError(f"part must be one of {', '.join(self.parts)}, got {part!r}")
        split = self._split()
        module = split.part(part)
        if part == "decoder":
            codes = {"per tensor": weight_codes(module, "int8")["weight"],
                     "per channel": weight_codes(module, "int8-per-channel")["weight"]}
        elif part == "embedding":
            codes = {"8-bit rows": weight_codes(module, "8bit-rows")["weight"]}
        else:
            codes = weight_codes(module, "int8")
        note = "; 99% within ±" + ", ±".join(f"{used_levels(c)} ({n})" for n, c in codes.items()) + " levels"
        return histogram_svg(part, codes, note)

    def _split(self) -> lw.SplitModel:
        with self._lock:
            if self._split_model is None:
                self._split_model = lw.SplitModel(self.ckpt.model).eval()
            return self._split_model

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
