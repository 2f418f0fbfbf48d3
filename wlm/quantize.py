"""Post-training dynamic quantization and model size.

The tutorial's recipe: ``quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)``;
weights are stored as int8 with one scale per tensor, activations are quantized on the fly.
"""
from __future__ import annotations

import copy
import io
import platform
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

MODULE_TYPES = {"LSTM": nn.LSTM, "Linear": nn.Linear, "Embedding": nn.Embedding}
DTYPES = {"qint8": torch.qint8, "float16": torch.float16}
QSCHEMES = ("per_tensor", "per_channel")


class QuantizationError(Exception):
    """No quantized engine on this CPU, or a recipe this torch cannot apply."""


@dataclass(frozen=True)
class QuantRecipe:
    """What to quantize and how.

    Args:
        modules: module types to replace by dynamic quantized ones ("LSTM", "Linear"), and
            "Embedding" for 8-bit weight-only rows (one scale and offset per row; qint8 only).
        dtype: "qint8" (int8 weights) or "float16".
        qscheme: "per_tensor" (one scale per weight tensor, the tutorial) or "per_channel"
            (one scale per output row; Linear only, LSTM stays per tensor).
    Example:
        >>> qmodel = quantize(model, QuantRecipe(modules=("Linear",)))
    """
    modules: tuple[str, ...] = ("LSTM", "Linear")
    dtype: str = "qint8"
    qscheme: str = "per_tensor"

    def __post_init__(self):
        unknown = [m for m in self.modules if m not in MODULE_TYPES]
        if not self.modules or unknown:
            raise ValueError(f"QuantRecipe.modules must be a non-empty subset of {sorted(MODULE_TYPES)}, "
                             f"got {self.modules!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"QuantRecipe.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.qscheme not in QSCHEMES:
            raise ValueError(f"QuantRecipe.qscheme must be one of {QSCHEMES}, got {self.qscheme!r}")
        if self.dtype == "float16" and self.qscheme != "per_tensor":
            raise ValueError("QuantRecipe: float16 has no scales, so qscheme must be 'per_tensor'")
        if self.dtype == "float16" and "Embedding" in self.modules:
            raise ValueError("QuantRecipe: the embedding can only be quantized to 8 bits (dtype 'qint8')")

    @property
    def name(self) -> str:
        return self.dtype if self.qscheme == "per_tensor" else f"{self.dtype}-{self.qscheme.replace('_', '-')}"


TUTORIAL = QuantRecipe()


def select_engine() -> str:
    """Pick and set a quantized engine that works here: x86/fbgemm on x86-64, qnnpack on ARM."""
    supported = torch.backends.quantized.supported_engines
    arch = platform.machine().lower()
    prefs = ("qnnpack",) if arch in ("arm64", "aarch64") or arch.startswith("arm") else ("x86", "fbgemm", "qnnpack")
    for engine in prefs:
        if engine in supported:
            torch.backends.quantized.engine = engine
            return engine
    raise QuantizationError(f"this torch build has no quantized engine for {arch} "
                            f"(supported: {supported}); int8 inference is not available here")


def _qconfig_spec(recipe: QuantRecipe) -> dict:
    from torch.ao.quantization import qconfig as qc
    spec = {}
    for name in recipe.modules:
        if name == "Embedding":
            spec[nn.Embedding] = qc.float_qparams_weight_only_qconfig      # 8-bit rows, weight only
        elif recipe.dtype == "float16":
            spec[MODULE_TYPES[name]] = qc.float16_dynamic_qconfig
        elif recipe.qscheme == "per_channel" and name == "Linear":
            spec[MODULE_TYPES[name]] = qc.per_channel_dynamic_qconfig
        else:
            spec[MODULE_TYPES[name]] = qc.default_dynamic_qconfig
    return spec


def quantize(model: nn.Module, recipe: QuantRecipe = TUTORIAL) -> nn.Module:
    """A new dynamically quantized copy of ``model`` (eval mode); ``model`` is untouched."""
    select_engine()
    from torch.ao.quantization import quantize_dynamic
    src = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao on every call; see README.
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        qmodel = quantize_dynamic(src, _qconfig_spec(recipe), dtype=DTYPES[recipe.dtype])
    qmodel.recipe = recipe
    return qmodel


def _saved_bytes(state_dict) -> int:
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    return buf.getbuffer().nbytes


@dataclass
class SizeReport:
    total_mb: float                 # bytes of torch.save(model.state_dict()) / 1e6
    modules_mb: dict[str, float]    # same, per top-level module with weights

    def to_dict(self) -> dict:
        return {"total_mb": self.total_mb, "modules_mb": dict(self.modules_mb)}


def model_size(model: nn.Module) -> SizeReport:
    """Size as the tutorial measures it: the bytes ``torch.save(state_dict)`` writes, in MB (1e6)."""
    parts = {name: _saved_bytes(m.state_dict()) / 1e6 for name, m in model.named_children()
             if len(m.state_dict())}
    return SizeReport(_saved_bytes(model.state_dict()) / 1e6, parts)


def describe(model: nn.Module) -> str:
    """The printed model (what the tutorial shows)."""
    return str(model)
