"""The model part by part: the five-layer LSTM split into five one-layer LSTMs, each part
quantized (or not) on its own, and what each part's int8 copy gives against fp32.

Parts: ``embedding``, ``lstm.0`` ... ``lstm.4``, ``decoder``. A *plan* says what each part
becomes (``OPTIONS``): fp32, int8 (one scale per tensor, dynamic activations), int8 with one
scale per output row (the decoder), or 8-bit rows (the embedding, weight only). The split
model gives bit-identical logits to the original in fp32 (a test checks it), so a plan's
model differs from fp32 only where the plan says.

Signal-to-quantization-noise ratio, as PyTorch's Numeric Suite reported it:
SQNR = 10 log10(sum(ref^2) / sum((ref - x)^2)) dB; infinite when x is ref.
"""
from __future__ import annotations

import copy
import io
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from .model import LSTMModel, ModelConfig, part_names
from .quantize import QuantRecipe, select_engine

OPTIONS = {
    "fp32": "kept in fp32",
    "int8": "int8 weights, one scale per tensor, dynamic int8 activations",
    "int8-per-channel": "int8 weights, one scale per output row, dynamic int8 activations",
    "8bit-rows": "8-bit rows, a scale and offset per row (weight only)",
}
PART_OPTIONS = {"embedding": ("fp32", "8bit-rows"), "lstm": ("fp32", "int8"),
                "decoder": ("fp32", "int8", "int8-per-channel")}


def parts(config: ModelConfig) -> list[str]:
    return part_names(config.nlayers)


def kind_of(part: str) -> str:
    return "lstm" if part.startswith("lstm.") else part


class SplitModel(nn.Module):
    """``LSTMModel`` with its n-layer LSTM as n one-layer LSTMs holding the same weights.

    Same interface: forward(ids, hidden) -> (logits, hidden), hidden (h, c) each
    (nlayers, bsz, nhid); ``init_hidden``. Its children are the parts (``encoder``,
    ``rnn[k]``, ``decoder``), so each can be quantized on its own (``quantize_plan``).
    """

    def __init__(self, model: LSTMModel):
        super().__init__()
        cfg = self.config = model.config
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = copy.deepcopy(model.encoder)
        self.rnn = nn.ModuleList()
        for k in range(cfg.nlayers):
            layer = nn.LSTM(cfg.ninp if k == 0 else cfg.nhid, cfg.nhid, 1)
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(layer, f"{name}_l0").copy_(getattr(model.rnn, f"{name}_l{k}"))
            self.rnn.append(layer)
        self.decoder = copy.deepcopy(model.decoder)
        self.train(model.training)

    def forward(self, ids: torch.Tensor, hidden):
        x, hidden = self.features(ids, hidden)
        return self.decoder(x), hidden

    def features(self, ids: torch.Tensor, hidden):
        """(the decoder's input (T, B, nhid), hidden), as ``LSTMModel.features``."""
        h, c = hidden                                    # (nlayers, B, nhid) each
        x = self.drop(self.encoder(ids))                 # (T, B, ninp)
        hs, cs = [], []
        for k, layer in enumerate(self.rnn):
            x, (hk, ck) = layer(x, (h[k:k + 1], c[k:k + 1]))
            hs.append(hk)
            cs.append(ck)
            if k + 1 < len(self.rnn):
                x = self.drop(x)                         # nn.LSTM's dropout between layers
        return self.drop(x), (torch.cat(hs), torch.cat(cs))

    def init_hidden(self, bsz: int):
        c = self.config
        return (torch.zeros(c.nlayers, bsz, c.nhid), torch.zeros(c.nlayers, bsz, c.nhid))

    def part(self, name: str) -> nn.Module:
        if name == "embedding":
            return self.encoder
        if name == "decoder":
            return self.decoder
        return self.rnn[int(name.split(".")[1])]


def plan_of(recipe: QuantRecipe | None, config: ModelConfig) -> dict[str, str]:
    """The plan a ``wlm.quantize.QuantRecipe`` amounts to (None: all fp32); int8 recipes only."""
    plan = dict.fromkeys(parts(config), "fp32")
    if recipe is None:
        return plan
    if recipe.dtype != "qint8":
        raise ValueError(f"the per-part analysis covers int8 recipes, not {recipe.dtype}")
    if "Embedding" in recipe.modules:
        plan["embedding"] = "8bit-rows"
    if "LSTM" in recipe.modules:
        plan.update({p: "int8" for p in plan if p.startswith("lstm.")})
    if "Linear" in recipe.modules:
        plan["decoder"] = "int8-per-channel" if recipe.qscheme == "per_channel" else "int8"
    return plan


def check_plan(plan: dict[str, str], config: ModelConfig) -> dict[str, str]:
    """The plan with every part, each option allowed for its part; ValueError otherwise."""
    full = dict.fromkeys(parts(config), "fp32")
    for part, option in plan.items():
        if part not in full:
            raise ValueError(f"plan: part must be one of {', '.join(full)}, got {part!r}")
        if option not in PART_OPTIONS[kind_of(part)]:
            raise ValueError(f"plan: {part} may be {', '.join(PART_OPTIONS[kind_of(part)])}, got {option!r}")
        full[part] = option
    return full


def _qconfig(option: str):
    from torch.ao.quantization import qconfig as qc
    return {"int8": qc.default_dynamic_qconfig, "int8-per-channel": qc.per_channel_dynamic_qconfig,
            "8bit-rows": qc.float_qparams_weight_only_qconfig}[option]


def quantize_part(module: nn.Module, option: str) -> nn.Module:
    """A quantized copy of one part (``module`` is untouched); ``fp32``: the module itself."""
    if option == "fp32":
        return module
    select_engine()
    from torch.ao.quantization import quantize_dynamic
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        holder = quantize_dynamic(nn.Sequential(module).eval(), {"0": _qconfig(option)}, dtype=torch.qint8)
    return holder[0]


def assemble(split: SplitModel, replaced: dict[str, nn.Module]) -> SplitModel:
    """A ``SplitModel`` made of ``split``'s parts, but for the ``replaced`` ones (shared, not
    copied: every model of an analysis holds the fp32 weights once)."""
    new = SplitModel.__new__(SplitModel)
    nn.Module.__init__(new)
    new.config, new.drop = split.config, split.drop
    new.encoder = replaced.get("embedding", split.encoder)
    new.rnn = nn.ModuleList([replaced.get(f"lstm.{k}", layer) for k, layer in enumerate(split.rnn)])
    new.decoder = replaced.get("decoder", split.decoder)
    return new.eval()


def quantize_plan(model: LSTMModel | SplitModel, plan: dict[str, str]) -> SplitModel:
    """A ``SplitModel`` of ``model`` with each part as ``plan`` says (eval mode); ``model`` is
    untouched (the fp32 parts are the split copy's)."""
    split = model if isinstance(model, SplitModel) else SplitModel(model).eval()
    plan = check_plan(plan, split.config)
    out = assemble(split, {p: quantize_part(split.part(p), o) for p, o in plan.items() if o != "fp32"})
    out.plan = plan
    return out


# ------------------------------------------------------------------------------ weights
def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """The weight matrices of one part as float tensors (dequantized when quantized):
    ``weight`` for the embedding and decoder, ``weight_ih`` and ``weight_hh`` for an LSTM layer."""
    if isinstance(module, nn.LSTM):
        return {"weight_ih": module.weight_ih_l0.detach(), "weight_hh": module.weight_hh_l0.detach()}
    if isinstance(module, (nn.Linear, nn.Embedding)):
        return {"weight": module.weight.detach()}
    if hasattr(module, "_all_weight_values"):             # torch.ao dynamic quantized LSTM
        w = module._weight_bias()["weight"]
        return {"weight_ih": w["weight_ih_l0"].dequantize(), "weight_hh": w["weight_hh_l0"].dequantize()}
    w = module.weight()                                   # torch.ao quantized Linear / Embedding
    return {"weight": w.dequantize()}


def sqnr_db(ref: torch.Tensor, x: torch.Tensor) -> float:
    """10 log10(sum ref^2 / sum (ref - x)^2), in float64; inf when x equals ref."""
    ref, x = ref.double(), x.double()
    noise = float((ref - x).square().sum())
    signal = float(ref.square().sum())
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


@dataclass
class SqnrSum:
    """Sums for an SQNR over many chunks."""
    signal: float = 0.0
    noise: float = 0.0

    def add(self, ref: torch.Tensor, x: torch.Tensor) -> None:
        ref, x = ref.double(), x.double()
        self.signal += float(ref.square().sum())
        self.noise += float((ref - x).square().sum())

    @property
    def db(self) -> float:
        if self.noise == 0:
            return math.inf
        return 10 * math.log10(self.signal / self.noise) if self.signal > 0 else -math.inf


def weight_sqnr(fp32: SplitModel, quant: SplitModel) -> dict[str, dict[str, float]]:
    """Per part, per weight matrix: SQNR of the dequantized weight against the fp32 weight,
    and ``all`` over the part's matrices together."""
    out = {}
    for part in parts(fp32.config):
        ref, q = weights(fp32.part(part)), weights(quant.part(part))
        per = {name: sqnr_db(ref[name], q[name]) for name in ref}
        total = SqnrSum()
        for name in ref:
            total.add(ref[name], q[name])
        out[part] = {**per, "all": total.db}
    return out


def part_mb(module: nn.Module) -> float:
    """Bytes of ``torch.save`` of one part's state_dict, in MB (the size the tutorial reports)."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes / 1e6
