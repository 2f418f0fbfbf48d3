"""What the web demo's panels share, without the web and without the panels: the models of one
checkpoint (built once), the CPU turns, the stored results, the test split and the checks of
every argument.

The panels (``wlm.sidebyside``, ``wlm.yourtext``, ``wlm.measureview``, ``wlm.inspectview``,
``wlm.ladderview``, ``wlm.recipeview``) are each handed a ``Shared`` and know nothing of each
other; ``wlm.app`` composes them, and ``demo.py`` lays them out.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from . import checks
from .bench import call_sentence
from .checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from .data import FULL_SLICE, TEST_TOKENS, load_split, resolve_data_dir
from .download import SHA256, DownloadError, download, sha256_file
from .recipes import QUICK_TOKENS, RecipeBook, is_recipe_name
from .results import ResultStore, make_record
from .results import versions as result_versions
from .threads import PAGE_CHOICES, allowed_threads, usable_cpus
from .turns import DEFAULT_MEASURE_SHARE, CpuTurns
from .variants import REFERENCE, VARIANTS, VariantBuildError, VariantCache, cache_dir, unavailable

log = logging.getLogger("wlm")
DEFAULT_VARIANT = "qint8"          # the tutorial's recipe


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
        eager: build the tutorial's pair (fp32, qint8) before returning; a server passes False
            and builds it right after it serves (``prebuild``), so its page answers sooner.
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
    eager: bool = True


class Shared:
    """What the panels share: the fp32 model of a checkpoint and its variants, the CPU turns,
    the result store, the test split, and the checks of every argument."""

    def __init__(self, cfg: AppConfig):
        t0 = time.perf_counter()
        self.cfg = cfg
        self.default_variant = DEFAULT_VARIANT
        self.thread_choices = tuple(cfg.thread_choices or allowed_threads())
        if cfg.threads not in self.thread_choices:
            raise ValueError(f"threads must be one of {self._threads_allowed()}, got {cfg.threads!r}")
        self.ckpt = load_checkpoint(cfg.checkpoint)
        self.dictionary = self.ckpt.dictionary
        self.turns = CpuTurns(cfg.measure_share, cfg.generate_slots or max(1, usable_cpus() // cfg.threads))
        # builds wait for a running measurement chunk and never land inside one (wlm.turns)
        self.variants = VariantCache(self.ckpt, cfg.cache, thread_counts=self.thread_choices,
                                     guard=self.turns.build)
        self.variants.get(REFERENCE)
        if cfg.eager:
            self.variants.get(DEFAULT_VARIANT)
        why_not = {n: unavailable(n, self.ckpt.sha256) for n in VARIANTS}
        self.hidden = {n: why for n, why in why_not.items() if why}
        self.choices = [n for n in VARIANTS if n != REFERENCE and n not in self.hidden]
        self.data_dir = resolve_data_dir(cfg.data)
        self._test_ids = None
        self._test_sha = None              # (size, mtime_ns, sha256) of the test file read
        self.lock = threading.Lock()
        self.store = ResultStore(cache_dir(cfg.cache) / "results",
                                 shipped=[cfg.shipped_results] if cfg.shipped_results else [])
        self.inspections = self.store.inspections()
        self.ladders = self.store.ladders()
        self.recipes = RecipeBook(self.ckpt, guard=self.turns.build)   # visitors' own low-bit recipes
        self._call_lines: dict[str, str] = {}
        self.load_seconds = time.perf_counter() - t0

    def prebuild(self):
        """Build every offered variant not built yet, the tutorial's qint8 first, one after another
        in a background thread (a server calls it once it serves, so the builds do not slow its
        start); returns the thread."""
        names = [DEFAULT_VARIANT] + [n for n in self.choices if n != DEFAULT_VARIANT]
        return self.variants.prebuild([n for n in names if not self.variants.is_built(n)], log=log.warning)

    def model(self, name: str):
        """The built variant ``name`` (a ``wlm.variants.Variant``; a visitor's recipe by its name,
        ``wlm.recipes``), built now if needed (waiting only for its own build); ValueError in a
        sentence a visitor can act on if it cannot be built here (the reason goes to the server
        log, once per failure)."""
        if is_recipe_name(name):
            try:
                return self.recipes.get(name)
            except ValueError:
                raise
            except Exception as e:                  # e.g. out of memory: the page keeps serving
                log.warning("recipe %s could not be built: %s", name, e)
                raise ValueError("this recipe could not be built on this server; the other variants still "
                                 "work.") from None
        try:
            return self.variants.get(name)
        except VariantBuildError as e:
            log.warning("%s", e)
            raise ValueError(f"{name} could not be built on this server, so it is not measured or shown here; "
                             "the other variants still work.") from None

    def plans(self, names) -> dict[str, str]:
        """variant -> sha256 of the plan it is built from, for the plan-file variants among ``names``
        (stored results of such a variant are keyed by it)."""
        return self.variants.plans([n for n in names if n != REFERENCE])

    def spec(self, name: str):
        """The ``wlm.variants.VariantSpec`` of a variant or a visitor's recipe."""
        return self.recipes.spec(name) if is_recipe_name(name) else VARIANTS[name]

    def is_built(self, name: str) -> bool:
        return self.recipes.is_built(name) if is_recipe_name(name) else self.variants.is_built(name)

    def offered(self) -> list[str]:
        """fp32 and every variant offered, in canonical order."""
        return [REFERENCE, *self.choices]

    # ---------------------------------------------------------------- arguments
    int_arg = staticmethod(checks.as_int)
    float_arg = staticmethod(checks.as_float)
    bool_arg = staticmethod(checks.as_bool)
    seed_arg = staticmethod(checks.as_seed)

    def variant_arg(self, name, field: str = "variant", default: bool = True, recipes: bool = True) -> str:
        """An offered variant's name, or (``recipes``) a visitor's recipe's canonical name
        (``recipe: embedding=int4-g32 ...``, ``wlm.recipes``); ValueError naming ``field`` otherwise."""
        if default and name in (None, ""):
            name = DEFAULT_VARIANT
        if recipes and is_recipe_name(name):
            return self.recipes.name(name, field)
        if not isinstance(name, str) or name not in self.choices:
            why = f" ({self.hidden[name]})" if isinstance(name, str) and name in self.hidden else ""
            raise ValueError(f"{field} must be one of {', '.join(self.choices)}, got {checks.short(name)}{why}")
        return name

    def _threads_allowed(self) -> str:
        cpus = usable_cpus()
        return (f"{', '.join(map(str, self.thread_choices))} (the page's choices {', '.join(map(str, PAGE_CHOICES))} "
                f"that fit the {cpus} CPU{'s' if cpus != 1 else ''} this server may use)")

    def threads_arg(self, value) -> int:
        if value is None or (isinstance(value, str) and value == ""):
            return self.cfg.threads
        try:
            n = checks.as_int("threads", value, 1, 64)
        except ValueError:
            n = None
        if n not in self.thread_choices:
            raise ValueError(f"threads must be one of {self._threads_allowed()}, got {checks.short(value)}")
        return n

    def names_arg(self, variants) -> list[str]:
        """fp32 and the chosen variants, each once, in the canonical order of ``VARIANTS`` (so
        [a, b] and [b, a] are one measurement)."""
        if isinstance(variants, str):
            variants = [variants]
        if not isinstance(variants, (list, tuple)) or not variants:
            raise ValueError(f"variants must be a non-empty list of {', '.join(self.choices)}, "
                             f"got {checks.short(variants)}")
        chosen = {self.variant_arg(v, "variants", default=False, recipes=False) for v in variants}
        return [REFERENCE] + [n for n in VARIANTS if n in chosen]

    # ---------------------------------------------------------------- the test split
    def data_status(self) -> str:
        missing = [n for n in SHA256 if not (self.data_dir / n).is_file()]
        if "test.txt" not in missing:
            return f"WikiText-2 test split: `{self.data_dir / 'test.txt'}`."
        return (f"WikiText-2's test split is not here yet (`{self.data_dir}`): **Measure** fetches test.txt "
                f"(1.3 MB, sha256-verified) on first use, or copy it there (or set `WLM_DATA` to its folder).")

    def test_sha256(self) -> str:
        """sha256 of the test file measurements read: the local one, or, while it is missing,
        the published one that Measure would fetch (sha256-verified). Hashed once per file version."""
        path = self.data_dir / "test.txt"
        try:
            st = path.stat()
        except OSError:
            return SHA256["test.txt"]
        with self.lock:
            if self._test_sha is None or self._test_sha[:2] != (st.st_size, st.st_mtime_ns):
                self._test_sha = (st.st_size, st.st_mtime_ns, sha256_file(path))
                self._test_ids = None
            return self._test_sha[2]

    def test_split(self):
        self.test_sha256()                       # drops the ids when the file changed
        with self.lock:
            if self._test_ids is None:
                self._test_ids = load_split(self.data_dir, "test", self.dictionary)
            return self._test_ids

    def ensure_test_split(self, progress_factory=None) -> str | None:
        """Fetch test.txt alone when it is missing (sha256-verified); None, or why it failed
        (for the server log: it names paths and settings a web visitor cannot use)."""
        if (self.data_dir / "test.txt").is_file():
            return None
        try:
            download(self.data_dir, files=("test.txt",), progress_factory=progress_factory)
        except DownloadError as e:
            return (f"could not fetch WikiText-2's test split ({e}); copy test.txt into {self.data_dir} or set "
                    f"WLM_DATA to its folder")
        return None

    def slice_tokens(self, first: int | None) -> int:
        """Test tokens the first ``first`` (None: all) predict: counted in the test file when it
        is here, else nominal."""
        nominal = first or TEST_TOKENS
        if not (self.data_dir / "test.txt").is_file():
            return nominal - 1
        return min(nominal, len(self.test_split())) - 1

    # ---------------------------------------------------------------- stored results
    def match(self, slice_label: str, threads: int, **more) -> dict:
        """The fields that make two stored results the same one, but for the machine."""
        return {"slice": slice_label, "threads": threads, "test_sha256": self.test_sha256(),
                "checkpoint_sha256": self.ckpt.sha256, **more}

    def full_split_record(self) -> dict | None:
        """The newest stored measurement of the whole test split for this checkpoint (this server's,
        else the shipped one): the figures a panel compares with."""
        return self.store.find(slice=FULL_SLICE, checkpoint_sha256=self.ckpt.sha256, test_sha256=self.test_sha256())

    @staticmethod
    def here(machine: dict) -> dict:
        """The fields that say a stored result was taken on this machine, with these libraries."""
        return {"cpu": machine["cpu"], "versions": result_versions()}

    @staticmethod
    def keep(store: ResultStore, record: dict) -> None:
        try:
            store.save(record)
        except OSError as e:
            log.warning("could not store a result: %s", e)   # costs the memory of the result, not the result

    def call_line(self, variant: str) -> str:
        """Why generating gains more from int8 than evaluating, from the newest stored bench of
        this checkpoint that profiled fp32 and ``variant`` per call (``wlm.bench.call_profile``);
        "" when there is none."""
        if variant not in self._call_lines:
            def has(r):
                calls = {n: (r.get("speed") or {}).get(n, {}).get("calls") or {} for n in ("fp32", variant)}
                return all("1" in c and "25" in c for c in calls.values())
            r = self.store.find(has, checkpoint_sha256=self.ckpt.sha256)
            self._call_lines[variant] = call_sentence(r, variant) if r else ""
        return self._call_lines[variant]

    def quick_quality(self, name: str, progress=None) -> dict:
        """fp32 against a visitor's recipe on the first ``QUICK_TOKENS`` test tokens (bptt 25, batch
        1, in measurement turns), as a measurement record (``wlm.results``) marked quality only;
        made once per recipe (``wlm.recipes.RecipeBook.quick``)."""
        from .bench import machine_info, measurements
        from .data import slice_label
        from .evaluate import Comparison
        from .threads import num_threads

        def measure(variant) -> dict:
            why = self.ensure_test_split()
            if why:
                log.warning("recipe: %s", why)
                raise ValueError("the WikiText-2 test split could not be fetched on this server, so the recipe "
                                 "was built but not measured; try again later.")
            ref = self.model("fp32")
            models = {"fp32": ref.model, name: variant.model}
            c = Comparison(models, self.test_split(), max_tokens=QUICK_TOKENS + 1, block_chunks=4)
            while not c.done:
                with self.turns.chunk(), num_threads(self.cfg.threads):
                    c.step()
                if progress:
                    progress(*c.tokens)
            rows = measurements(models, c, {"fp32": ref.size, name: variant.size})
            record = make_record(slice_label=slice_label(QUICK_TOKENS), threads=self.cfg.threads,
                                 variants=["fp32", name], rows=rows, engines={"fp32": "torch", name: "torch"},
                                 machine=machine_info(self.cfg.threads), checkpoint_sha256=self.ckpt.sha256,
                                 test_sha256=self.test_sha256(), source="the page's recipe", no_speed=[name])
            return record
        return self.recipes.quick(name, measure)

    # ---------------------------------------------------------------- descriptions
    def model_text(self, name: str) -> str:
        v = self.model(self.variant_arg(name) if name != REFERENCE else name)
        how = ("bytes of its packed .safetensors file" if not v.spec.speed_claimed
               else "torch.save of the state_dict" if v.spec.engine == "torch" else "bytes of the .onnx file")
        return f"{v.description}\n\n# {v.spec.engine}: {v.spec.recipe}\n# size: {v.size.total_mb:.3f} MB ({how})"

    def variants_note(self) -> str:
        """Which variants are offered, and why any are not, or could not be built."""
        parts = []
        if self.hidden:
            parts.append("Not offered here: " + "; ".join(f"`{n}`: {why}" for n, why in self.hidden.items()))
        if self.variants.failed:
            parts.append("Could not be built on this server (not tried again until it restarts): "
                         + "; ".join(f"`{n}` ({why if len(why) <= 120 else why[:117] + '...'})"
                                     for n, why in self.variants.failed.items()) + ".")
        return " ".join(parts)
