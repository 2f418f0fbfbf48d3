"""Weights at 2 to 8 bits: symmetric integer grids per row or per group, three roundings, and
the recipe that says which part gets which.

A weight matrix W (rows x cols; a row is one output, or one word of the embedding) is cut along
its columns into groups of ``group`` inputs (None: the whole row is one group). Each group gets
one scale s, stored as float16, and each weight an integer code:

    qmax = 2**(bits-1) - 1            # 8 bits: 127, 4 bits: 7, 2 bits: 1 (levels -1, 0, 1)
    code = clamp(round(w / s), -qmax, qmax)
    w_hat = code * s                  # what the model computes with (in fp32)

Roundings (``ROUNDINGS``):
- ``rtn``: round to nearest, s = absmax(group) / qmax.
- ``mse``: round to nearest with the scale clipped: s = r * absmax / qmax, with r the one of
  ``wlm.grid.CLIP_RATIOS`` that gives the group the least squared error (a clipped scale trades a few
  large weights for finer steps for all the others).
- ``gptq``: the ``mse`` scales, and each column's rounding error pushed onto the columns not yet
  rounded, weighted by the inverse Hessian of the matrix's inputs (GPTQ, Frantar et al. 2022,
  arXiv 2210.17323), so the layer's *output* error is small rather than each weight's. It needs
  the inputs' second moments (``wlm.gptq``); the embedding is a lookup, with no inputs to
  compensate, so under ``gptq`` it is rounded as ``mse``.

A recipe is text, so it can be typed, sent through the API and stored (``Recipe.parse``):

    embedding=int4-g32 lstm=int6-g32 decoder=int5-g32 rounding=gptq

Parts: ``embedding``, ``lstm`` (every layer) or ``lstm.K`` (one layer), ``decoder``; each
``fp32``, ``int<bits>-row`` or ``int<bits>-g<group>``; ``rounding`` one of ``ROUNDINGS`` (default
``rtn``). A part left out stays fp32. Biases always stay fp32.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .gptq import gptq_codes
from .grid import MAX_BITS, MIN_BITS, check, codes_of, mse_scales, rtn_scales
from .model import part_names

BITS = (8, 6, 5, 4, 3, 2)                  # the ladder; any of 2..8 is allowed
GROUPS = (32, 64, 128)                     # group sizes allowed besides one scale per row
ROUNDINGS = ("rtn", "mse", "gptq")
_PRECISION = re.compile(r"int([0-9]+)-(row|g([0-9]+))")


@dataclass(frozen=True)
class Precision:
    """How one part is stored: ``bits`` None is fp32; ``group`` None is one scale per row."""
    bits: int | None = None
    group: int | None = None

    @property
    def text(self) -> str:
        if self.bits is None:
            return "fp32"
        return f"int{self.bits}-{'row' if self.group is None else f'g{self.group}'}"

    @classmethod
    def parse(cls, text, part: str = "part") -> "Precision":
        """``fp32``, ``int<bits>-row`` or ``int<bits>-g<group>``; ValueError naming ``part`` and
        what is allowed."""
        allowed = (f"fp32, int<bits>-row or int<bits>-g<group> with bits {MIN_BITS}-{MAX_BITS} and group "
                   f"{', '.join(map(str, GROUPS))} (e.g. int4-g32)")
        if not isinstance(text, str):
            raise ValueError(f"{part} must be {allowed}, got {text!r}")
        t = text.strip().lower()
        if t == "fp32":
            return cls()
        m = _PRECISION.fullmatch(t)
        if not m or not MIN_BITS <= int(m.group(1)) <= MAX_BITS or (m.group(3) and int(m.group(3)) not in GROUPS):
            raise ValueError(f"{part} must be {allowed}, got {text!r}")
        return cls(int(m.group(1)), int(m.group(3)) if m.group(3) else None)


@dataclass(frozen=True)
class Recipe:
    """Each part's ``Precision`` (every part, in order: embedding, lstm.0 ..., decoder) and the
    rounding. Build one with ``Recipe.parse(text, nlayers)``; ``text`` is its canonical form."""
    parts: tuple[tuple[str, Precision], ...]
    rounding: str = "rtn"

    def __post_init__(self):
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {self.rounding!r}")

    @property
    def plan(self) -> dict[str, Precision]:
        return dict(self.parts)

    @property
    def nlayers(self) -> int:
        return sum(p.startswith("lstm.") for p, _ in self.parts)

    @property
    def text(self) -> str:
        """The canonical text: embedding, the LSTM (one entry when every layer is the same),
        decoder, rounding."""
        plan = self.plan
        layers = [plan[f"lstm.{k}"] for k in range(self.nlayers)]
        lstm = ([f"lstm={layers[0].text}"] if len(set(layers)) == 1
                else [f"lstm.{k}={p.text}" for k, p in enumerate(layers)])
        return " ".join([f"embedding={plan['embedding'].text}", *lstm, f"decoder={plan['decoder'].text}",
                         f"rounding={self.rounding}"])

    @property
    def quantized(self) -> bool:
        return any(p.bits is not None for _, p in self.parts)

    @classmethod
    def parse(cls, text, nlayers: int) -> "Recipe":
        """A recipe from its text (see the module's docstring); ValueError naming the part and the
        allowed values for anything else."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("recipe must be text such as 'embedding=int4-g32 lstm=int6-g32 decoder=int5-g32 "
                             f"rounding=gptq', got {text!r}")
        names = part_names(nlayers)
        keys = ["embedding", "lstm", *names[1:-1], "decoder", "rounding"]
        plan = dict.fromkeys(names, Precision())
        rounding, seen = "rtn", set()
        for item in re.split(r"[\s,;]+", text.strip()):
            key, eq, value = item.partition("=")
            key = key.strip().lower()
            if not eq or key not in keys:
                raise ValueError(f"recipe: each entry is <part>=<precision> with part one of {', '.join(keys)}, "
                                 f"got {item!r}")
            if key in seen:
                raise ValueError(f"recipe: {key} is given twice")
            seen.add(key)
            if key == "rounding":
                rounding = value.strip().lower()
                if rounding not in ROUNDINGS:
                    raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {value!r}")
            elif key == "lstm":
                p = Precision.parse(value, "lstm")
                for k in range(nlayers):
                    if f"lstm.{k}" not in seen:
                        plan[f"lstm.{k}"] = p
            else:
                plan[key] = Precision.parse(value, key)
        return cls(tuple(plan.items()), rounding)


# ------------------------------------------------------------------ one matrix
@dataclass
class QuantizedMatrix:
    """Integer codes (rows x cols, int8, in -qmax..qmax) and float16 scales (rows x groups) of one
    weight matrix: ``dequantize()`` gives the fp32 weights the model runs with."""
    codes: torch.Tensor
    scales: torch.Tensor
    bits: int
    group: int | None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)

    def dequantize(self) -> torch.Tensor:
        rows, cols = self.shape
        g = self.group or cols
        w = self.codes.float().view(rows, -1, g) * self.scales.float().unsqueeze(-1)
        return w.view(rows, cols)


def quantize_matrix(w: torch.Tensor, bits: int, group: int | None, rounding: str = "rtn",
                    hessian: torch.Tensor | None = None) -> QuantizedMatrix:
    """``w`` (rows x cols) on the grid of ``bits`` and ``group`` by ``rounding`` (``gptq`` needs
    ``hessian``, the cols x cols second moment of the inputs, ``wlm.gptq``)."""
    g = check(w, bits, group)
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
    w = w.detach().float()
    if rounding == "gptq":
        if hessian is None:
            raise ValueError("rounding gptq needs the Hessian of the matrix's inputs (wlm.gptq)")
        codes, scales = gptq_codes(w, hessian, bits, group)
        return QuantizedMatrix(codes.to(torch.int8), scales, bits, group)
    scales = (mse_scales if rounding == "mse" else rtn_scales)(w, bits, group)
    codes = codes_of(w.view(w.size(0), -1, g), scales, bits).view_as(w)
    return QuantizedMatrix(codes.to(torch.int8), scales, bits, group)


# ------------------------------------------------------------------ a whole model
def part_weights(model, part: str) -> dict[str, torch.Tensor]:
    """The weight matrices of one part of an ``LSTMModel``, by their state_dict keys (the
    tutorial's): ``encoder.weight``; ``rnn.weight_ih_lK`` and ``rnn.weight_hh_lK``; ``decoder.weight``."""
    if part == "embedding":
        return {"encoder.weight": model.encoder.weight}
    if part == "decoder":
        return {"decoder.weight": model.decoder.weight}
    k = int(part.split(".")[1])
    return {f"rnn.weight_ih_l{k}": getattr(model.rnn, f"weight_ih_l{k}"),
            f"rnn.weight_hh_l{k}": getattr(model.rnn, f"weight_hh_l{k}")}


def quantize_part(model, part: str, precision: Precision, rounding: str = "rtn",
                  hessians: dict[str, torch.Tensor] | None = None) -> dict[str, QuantizedMatrix]:
    """The quantized matrices of one part (key -> ``QuantizedMatrix``); {} for fp32."""
    if precision.bits is None:
        return {}
    if rounding == "gptq" and part == "embedding":
        rounding = "mse"                    # a lookup: no inputs whose error GPTQ could compensate
    out = {}
    for key, w in part_weights(model, part).items():
        h = None
        if rounding == "gptq":
            if not hessians or key not in hessians:
                raise ValueError(f"rounding gptq needs the Hessian of {key}'s inputs (wlm.gptq.Calibration)")
            h = hessians[key]
        out[key] = quantize_matrix(w, precision.bits, precision.group, rounding, h)
    return out


def quantize_model(model, recipe: Recipe, hessians: dict[str, torch.Tensor] | None = None,
                   progress=None) -> tuple[object, dict[str, QuantizedMatrix]]:
    """(a new ``LSTMModel`` that computes with ``recipe``'s weights dequantized to fp32, the
    quantized matrices by key). The fp32 parts share the tensors of ``model``, which is untouched.
    ``progress(done, total)`` after each part."""
    if recipe.nlayers != model.config.nlayers:
        raise ValueError(f"the recipe has {recipe.nlayers} LSTM layers, the model {model.config.nlayers}")
    quantized: dict[str, QuantizedMatrix] = {}
    for k, (part, precision) in enumerate(recipe.parts):
        quantized.update(quantize_part(model, part, precision, recipe.rounding, hessians))
        if progress:
            progress(k + 1, len(recipe.parts))
    return with_weights(model, {key: q.dequantize() for key, q in quantized.items()}), quantized


def with_weights(model, replaced: dict[str, torch.Tensor]):
    """A copy of ``model`` (an ``LSTMModel``, eval mode) with the weights of ``replaced`` (state_dict
    keys); every other tensor is shared with ``model``, not copied."""
    from .model import LSTMModel
    state = dict(model.state_dict())
    unknown = sorted(set(replaced) - set(state))
    if unknown:
        raise ValueError(f"not weights of the model: {', '.join(unknown)}")
    state.update(replaced)
    new = LSTMModel.__new__(LSTMModel)
    torch.nn.Module.__init__(new)
    new.config = model.config
    new.drop = torch.nn.Dropout(model.config.dropout)
    c = model.config
    new.encoder = torch.nn.Embedding(c.ntoken, c.ninp, _weight=state["encoder.weight"])
    new.rnn = _lstm_like(model.rnn, state)
    new.decoder = _linear(state["decoder.weight"], state["decoder.bias"])
    return new.eval().requires_grad_(False)


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> torch.nn.Linear:
    lin = torch.nn.Linear.__new__(torch.nn.Linear)
    torch.nn.Module.__init__(lin)
    lin.in_features, lin.out_features = weight.size(1), weight.size(0)
    lin.weight, lin.bias = torch.nn.Parameter(weight, False), torch.nn.Parameter(bias, False)
    return lin


def _lstm_like(rnn: torch.nn.LSTM, state: dict[str, torch.Tensor]) -> torch.nn.LSTM:
    """An ``nn.LSTM`` of ``rnn``'s shape holding ``state``'s rnn.* tensors (its own init skipped:
    the weights are assigned, not drawn)."""
    new = torch.nn.LSTM(rnn.input_size, rnn.hidden_size, rnn.num_layers, dropout=rnn.dropout, device="cpu")
    for name in new._flat_weights_names:
        setattr(new, name, torch.nn.Parameter(state[f"rnn.{name}"], False))
    return new
