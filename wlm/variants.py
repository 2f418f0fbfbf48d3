"""Variants: the runnable models the demo, ``wlm eval`` and ``wlm bench`` compare.

A variant is a name, an engine and a recipe; built from a checkpoint it gives a model with
``forward(ids, hidden) -> (logits, hidden)`` and ``init_hidden``, a size report with its
per-module split and a printable description. Adding a variant is one entry in ``VARIANTS``.

A variant that follows a plan file (``qint8-mixed``) is its plan: ``Variant.plan_sha256`` (and
``VariantCache.plans``) name the plan a model was built from, so stored results are keyed by it.
A variant whose build failed is not built again by the same ``VariantCache`` (``failed``).
"""
from __future__ import annotations

import os
import threading
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager

import torch.nn as nn

from . import onnx_engine
from .checkpoint import Checkpoint
from .quantize import QuantRecipe, SizeReport, model_size, quantize
from .recipe import LOWBIT_FILE, RECIPE_FILE, plan_sha256


@dataclass(frozen=True)
class PlanFile:
    """A recipe chosen by ``wlm.recipe`` and stored as data: each part's precision."""
    path: Path


@dataclass(frozen=True)
class LowBitFile:
    """A low-bit recipe (``wlm.lowbit``) chosen from the bit ladder and stored as data
    (``wlm.recipe.derive_lowbit``): its weights at 2-8 bits, computed in fp32."""
    path: Path


NO_SPEED = "quality of low-bit weights, computed in fp32: no speed claimed"

REFERENCE = "fp32"
DEFAULT_CACHE = Path("data/cache")


@dataclass(frozen=True)
class VariantSpec:
    name: str
    engine: str                    # "torch" or "onnxruntime"
    recipe: str                    # what is quantized, and how
    recipe_config: object = None   # torch: a QuantRecipe, a PlanFile, a LowBitFile or a wlm.lowbit.Recipe;
    # onnxruntime: one of wlm.onnx_engine.KINDS
    speed_claimed: bool = True     # False: the weights are low-bit but the model computes in fp32 (NO_SPEED)


VARIANTS: dict[str, VariantSpec] = {s.name: s for s in [
    VariantSpec("fp32", "torch", "none: the trained fp32 model"),
    VariantSpec("qint8", "torch", "tutorial: LSTM + Linear weights int8, one scale per tensor, dynamic activations",
                QuantRecipe()),
    VariantSpec("qint8-per-channel", "torch", "as the tutorial, the decoder with one scale per output row",
                QuantRecipe(qscheme="per_channel")),
    VariantSpec("qint8-embedding-8bit", "torch", "as the tutorial, plus the embedding as 8-bit rows (weight only)",
                QuantRecipe(modules=("Embedding", "LSTM", "Linear"))),
    VariantSpec("fp16", "torch", "LSTM + Linear weights fp16, dynamic", QuantRecipe(dtype="float16")),
    VariantSpec("qint8-lstm-only", "torch", "LSTM weights int8 only", QuantRecipe(modules=("LSTM",))),
    VariantSpec("qint8-linear-only", "torch", "decoder weights int8 only", QuantRecipe(modules=("Linear",))),
    VariantSpec("qint8-mixed", "torch", "chosen by the analysis (`wlm inspect --derive-recipe`): each part int8 "
                "per tensor, per channel, 8-bit rows or fp32, the least summed single-part KL within 31 MB",
                PlanFile(RECIPE_FILE)),
    VariantSpec("lowbit-mixed", "torch", "chosen from the validation split's bit ladder (`wlm bits --split valid "
                "--derive-recipe`): each part at 2-8 bits per row or per group of 32, GPTQ-rounded, the smallest "
                f"packed file predicted at two thirds of qint8's KL; {NO_SPEED}", LowBitFile(LOWBIT_FILE),
                speed_claimed=False),
    VariantSpec("ort-fp32", "onnxruntime", "the fp32 model exported to ONNX (opset 17)", "fp32"),
    VariantSpec("ort-int8", "onnxruntime", "onnxruntime quantize_dynamic, QInt8 weights: LSTM, MatMul, Gather "
                "(the embedding)", "int8"),
    VariantSpec("ort-int8-per-channel", "onnxruntime", "as ort-int8, with one scale per output channel",
                "int8-per-channel"),
    VariantSpec("ort-int4", "onnxruntime", "the LSTM as ort-int8; the decoder and the embedding 4-bit, one scale per "
                "group of 32, in ONNX Runtime's packed 4-bit kernels (MatMulNBits, GatherBlockQuantized)", "int4"),
]}


@dataclass
class Variant:
    """A built variant. Its size is measured on first use (``size``): the tutorial's way, a
    ``torch.save`` of each part, copies ~0.5 s of weights, which a server does after it serves."""
    spec: VariantSpec
    model: nn.Module
    size_of: Callable[[], SizeReport]
    description: str
    plan_sha256: str | None = None      # the plan it was built from (plan-file variants only)
    _size: SizeReport | None = field(default=None, repr=False)

    @property
    def size(self) -> SizeReport:
        if self._size is None:
            self._size = self.size_of()
        return self._size

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str:
        """What names this model exactly: the variant's name, with its plan's hash if it has one."""
        return f"{self.name}@{self.plan_sha256[:16]}" if self.plan_sha256 else self.name


class VariantBuildError(RuntimeError):
    """A variant that could not be built here (the message says why); not retried."""


def _load_plan(path: Path, checkpoint_sha256: str | None) -> dict[str, str]:
    from .recipe import load_plan
    return load_plan(path, checkpoint_sha256=checkpoint_sha256)


def unavailable(name: str, checkpoint_sha256: str | None = None) -> str | None:
    """None if the variant can be built here (from the checkpoint of ``checkpoint_sha256``, when
    given, which a plan file must have been derived from), else why not."""
    if name not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {name!r}")
    spec = VARIANTS[name]
    if isinstance(spec.recipe_config, PlanFile):
        try:
            _load_plan(spec.recipe_config.path, checkpoint_sha256)
        except ValueError as e:
            return str(e)
    if isinstance(spec.recipe_config, LowBitFile):
        try:
            lowbit_recipe(spec.recipe_config.path, checkpoint_sha256)
        except ValueError as e:
            return str(e)
    return onnx_engine.available(spec.recipe_config) if spec.engine == "onnxruntime" else None


def lowbit_recipe(path: Path, checkpoint_sha256: str | None, nlayers: int | None = None):
    """The ``wlm.lowbit.Recipe`` a low-bit recipe file holds (its calibration checked when it
    rounds by gptq); ValueError with the reason when it cannot be used here."""
    from .gptq import Calibration
    from .lowbit import Recipe
    from .recipe import load_lowbit
    record = load_lowbit(path, checkpoint_sha256)
    recipe = Recipe.parse(record["recipe"], nlayers or record.get("nlayers", 5))
    if recipe.rounding == "gptq":
        Calibration.check(checkpoint_sha256=checkpoint_sha256)
    return recipe


def variant_plans(names, checkpoint_sha256: str | None = None) -> dict[str, str]:
    """name -> sha256 of the plan its file holds now, for the plan-file variants among ``names``
    whose plan can be read."""
    out = {}
    for name in names:
        spec = VARIANTS[name]
        try:
            if isinstance(spec.recipe_config, PlanFile):
                out[name] = plan_sha256(_load_plan(spec.recipe_config.path, checkpoint_sha256))
            elif isinstance(spec.recipe_config, LowBitFile):
                from .recipe import load_lowbit
                out[name] = plan_sha256(load_lowbit(spec.recipe_config.path, checkpoint_sha256))
        except ValueError:
            pass
    return out


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where exports are cached: ``cache``, else ``$WLM_CACHE``, else data/cache."""
    return Path(cache or os.environ.get("WLM_CACHE") or DEFAULT_CACHE)


def build(name: str, ckpt: Checkpoint, cache: str | os.PathLike | None = None,
          progress: Callable[[str], None] | None = None, thread_counts: tuple[int, ...] | None = None) -> Variant:
    """Build variant ``name`` from a checkpoint (ONNX files come from / go to ``cache``);
    ``thread_counts``: the thread counts an ONNX Runtime variant may be run at (None: any)."""
    why = unavailable(name, ckpt.sha256)
    if why:
        raise RuntimeError(f"{name}: {why}")
    spec = VARIANTS[name]
    if isinstance(spec.recipe_config, LowBitFile):
        return build_lowbit(spec, ckpt, lowbit_recipe(spec.recipe_config.path, ckpt.sha256,
                                                        ckpt.model.config.nlayers))
    if spec.engine == "torch" and isinstance(spec.recipe_config, PlanFile):
        from .layerwise import quantize_plan
        from .recipe import describe
        plan = _load_plan(spec.recipe_config.path, ckpt.sha256)
        model = quantize_plan(ckpt.model, plan)
        return Variant(spec, model, lambda: model_size(model), f"{model}\n\n# plan: {describe(model.plan)}",
                       plan_sha256(plan))
    if spec.engine == "torch":
        model = ckpt.model if spec.recipe_config is None else quantize(ckpt.model, spec.recipe_config)
        return Variant(spec, model, lambda: model_size(model), str(model))
    path = onnx_engine.build(ckpt.model, ckpt.sha256, cache_dir(cache), spec.recipe_config, progress,
                             checkpoint_path=ckpt.path)
    cfg = ckpt.model.config
    model = onnx_engine.OrtModel(path, cfg.nlayers, cfg.nhid, thread_counts)
    ops = Counter(n.op_type for n in _graph(path).node if n.op_type != "Constant")
    text = (f"{model}\n\nONNX graph ({spec.recipe_config}): "
            + ", ".join(f"{op} x{k}" if k > 1 else op for op, k in sorted(ops.items())))
    return Variant(spec, model, lambda: onnx_engine.onnx_size(path), text)


def quantize_lowbit(ckpt: Checkpoint, recipe, hessians=None):
    """(model, quantized matrices) of a ``wlm.lowbit.Recipe`` on the checkpoint's model; gptq
    rounds with ``hessians``, else with the shipped calibration (``wlm.gptq``)."""
    from .lowbit import quantize_model
    if recipe.rounding == "gptq" and hessians is None:
        from .gptq import Calibration
        hessians = Calibration.load(checkpoint_sha256=ckpt.sha256).hessians
    return quantize_model(ckpt.model, recipe, hessians)


def build_lowbit(spec: VariantSpec, ckpt: Checkpoint, recipe, hessians=None) -> Variant:
    """A variant of a ``wlm.lowbit.Recipe``: its weights quantized (``quantize_lowbit``) and
    dequantized to fp32; its size is its packed file's bytes (``wlm.packed``), per module the
    bytes of that module's tensors in the file."""
    from .packed import file_sizes
    model, quantized = quantize_lowbit(ckpt, recipe, hessians)
    vocab = ckpt.dictionary.idx2word

    def size() -> SizeReport:
        total, modules = file_sizes(model, vocab, recipe.text, quantized)
        return SizeReport(total / 1e6, {m: b / 1e6 for m, b in modules.items()})
    model.quantized, model.recipe_text = quantized, recipe.text
    lines = [f"{p}: {prec.text}" for p, prec in recipe.parts]
    text = (f"{model}\n\n# recipe: {recipe.text}\n# " + "\n# ".join(lines)
            + f"\n# the weights dequantized to fp32 for computing: {NO_SPEED}")
    return Variant(spec, model, size, text, plan_sha256({"recipe": recipe.text}))


def _graph(path: Path):
    import onnx
    return onnx.load(str(path), load_external_data=False).graph


class VariantCache:
    """Variants of one checkpoint, each built once, on first use or ahead of it (thread-safe).

    Each variant has its own lock, so a caller waits only for the build of the variant it
    asked for, never for another one's. ``guard`` (e.g. ``CpuTurns.build``) is entered around
    every build: a server uses it to keep builds out of measurements' timed chunks.

    A build that fails is remembered with its reason (``failed``): ``get`` raises
    ``VariantBuildError`` at once instead of building again (each try of an ONNX build is a
    child process of up to 15 minutes), until ``forget_failure`` or a new cache (a restart, a
    new checkpoint). Temporary files that dead builds left in the cache folder are removed
    when the cache is made.
    """

    def __init__(self, ckpt: Checkpoint, cache: str | os.PathLike | None = None, *,
                 thread_counts: tuple[int, ...] | None = None, guard: Callable[[], ContextManager] = nullcontext):
        self.ckpt, self.cache, self.thread_counts, self.guard = ckpt, cache, thread_counts, guard
        self._built: dict[str, Variant] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()          # guards the dicts only, never held while building
        self.failed: dict[str, str] = {}       # variants whose build failed, and why
        onnx_engine.clean_cache(cache_dir(cache))

    def _lock_of(self, name: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(name, threading.Lock())

    def _refuse(self, name: str) -> VariantBuildError:
        return VariantBuildError(f"{name} could not be built here: {self.failed[name]} (not tried again until "
                                 f"the app restarts)")

    def get(self, name: str, progress: Callable[[str], None] | None = None) -> Variant:
        """The built variant ``name``, built now if needed; ``VariantBuildError`` if its build failed
        (now or before)."""
        if name not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {name!r}")
        built = self._built.get(name)
        if built is not None:
            return built
        if name in self.failed:
            raise self._refuse(name)
        with self._lock_of(name):
            if name in self.failed:            # failed while this caller waited for the lock
                raise self._refuse(name)
            if name not in self._built:
                try:
                    with self.guard():
                        variant = build(name, self.ckpt, self.cache, progress, self.thread_counts)
                except Exception as e:
                    self.failed[name] = f"{type(e).__name__}: {e}"
                    raise self._refuse(name) from e
                self._built[name] = variant
            return self._built[name]

    def forget_failure(self, name: str) -> None:
        """Let ``get`` try to build ``name`` again."""
        self.failed.pop(name, None)

    def is_built(self, name: str) -> bool:
        return name in self._built

    def plans(self, names) -> dict[str, str]:
        """name -> sha256 of its plan, for the plan-file variants among ``names``: the plan the built
        variant follows, else (not built yet) the one its file holds now. Stored results of such a
        variant are keyed by it (``wlm.results.ResultStore.lookup(plans=...)``)."""
        out = {}
        for name in names:
            built = self._built.get(name)
            if built is not None:
                if built.plan_sha256:
                    out[name] = built.plan_sha256
            else:
                out.update(variant_plans([name], self.ckpt.sha256))
        return out

    def prebuild(self, names, log: Callable[[str], None] | None = None) -> threading.Thread:
        """Build ``names`` one after another in a background thread (a failure is recorded in
        ``failed`` and the others go on), then measure every built variant's size; returns the
        thread."""
        def work():
            for name in names:
                try:
                    self.get(name)
                except Exception as e:  # one variant that cannot be built must not stop the rest
                    if log:
                        log(f"variant {name} could not be built: {self.failed.get(name, e)}")
            for variant in list(self._built.values()):      # and their sizes, so no request measures one
                with self.guard():
                    _ = variant.size
        t = threading.Thread(target=work, name="wlm-prebuild", daemon=True)
        t.start()
        return t
