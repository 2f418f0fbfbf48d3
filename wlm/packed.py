"""Packed low-bit files: a recipe's weights as real bytes, and back to a runnable model.

One ``.safetensors`` file (data, never pickles). Each quantized matrix ``K`` (a state_dict key of
the tutorial's model, e.g. ``decoder.weight``) is two tensors:

    K.q      uint8, the codes packed as a little-endian bit stream: code i (offset by qmax, so in
             0 .. 2**bits - 2) takes bits [i*bits, (i+1)*bits); row-major order
    K.scale  float16, (rows, groups): one scale per row or per group of inputs

Every other tensor (biases, parts kept in fp32) is stored as float32 under its own key. The
metadata holds the format, the model config, the vocabulary, the recipe's text, each packed
matrix's bits, group and shape (``layout``), and the provenance. ``file_bytes`` is the file's
size without writing it; ``read_packed`` rebuilds the model that computes with the dequantized
weights, bit for bit what the recipe's model computed with.

``save_dequantized`` writes the same weights dequantized to float32 under the tutorial's keys,
as a wlm checkpoint: the tutorial's own class loads it with ``load_state_dict(strict=True)``,
and ``python -m wlm eval --checkpoint`` evaluates it like any checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as save_bytes

from .grid import qmax
from .lowbit import QuantizedMatrix

FORMAT = "wlm-packed/1"


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed codes (any shape, in -qmax..qmax) as a uint8 bit stream of ceil(n * bits / 8) bytes."""
    u = (codes.reshape(-1).to(torch.int16) + qmax(bits)).to(torch.uint8).numpy()
    if bits == 8:
        return torch.from_numpy(u.copy())
    stream = np.unpackbits(u[:, None], axis=1, bitorder="little")[:, :bits]      # (n, bits), lowest bit first
    return torch.from_numpy(np.packbits(stream.reshape(-1), bitorder="little"))


def unpack_codes(data: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """The first ``n`` signed codes (int8) of a stream written by ``pack_codes``."""
    raw = data.numpy()
    if bits == 8:
        u = raw[:n]
    else:
        stream = np.unpackbits(raw, bitorder="little")[:n * bits].reshape(n, bits)
        u = np.packbits(stream, axis=1, bitorder="little")[:, 0]        # pads the high bits with 0
    return torch.from_numpy((u.astype(np.int16) - qmax(bits)).astype(np.int8))


def packed_tensors(model, quantized: dict[str, QuantizedMatrix], pack: bool = True
                   ) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a packed file and its layout: each quantized matrix as ``K.q`` and ``K.scale``,
    every other tensor of ``model``'s state_dict as float32. ``pack`` False: the ``K.q`` tensors
    are zeros of their packed size (for ``file_size``: the bytes, not the codes)."""
    tensors, layout = {}, {}
    for key, value in model.state_dict().items():
        q = quantized.get(key)
        if q is None:
            tensors[key] = value.detach().to(torch.float32).contiguous()
            continue
        tensors[f"{key}.q"] = (pack_codes(q.codes, q.bits) if pack
                               else torch.zeros(-(-q.codes.numel() * q.bits // 8), dtype=torch.uint8))
        tensors[f"{key}.scale"] = q.scales.to(torch.float16).contiguous()
        layout[key] = {"bits": q.bits, "group": q.group, "shape": list(q.shape)}
    return tensors, layout


def _metadata(model, vocab: list[str], recipe_text: str, layout: dict, provenance: dict | None) -> dict[str, str]:
    return {"format": FORMAT, "config": json.dumps(model.config.to_dict()),
            "vocab": json.dumps(vocab, ensure_ascii=False), "recipe": recipe_text, "layout": json.dumps(layout),
            "provenance": json.dumps(provenance or {})}


def file_bytes(model, vocab: list[str], recipe_text: str, quantized: dict[str, QuantizedMatrix],
               provenance: dict | None = None) -> bytes:
    """The packed file's bytes (what ``write_packed`` writes), in memory."""
    tensors, layout = packed_tensors(model, quantized)
    return save_bytes(tensors, metadata=_metadata(model, vocab, recipe_text, layout, provenance))


def file_size(model, vocab: list[str], recipe_text: str, quantized: dict[str, QuantizedMatrix],
              provenance: dict | None = None) -> int:
    """The packed file's size in bytes, exactly (``file_bytes`` without packing the codes)."""
    return file_sizes(model, vocab, recipe_text, quantized, provenance)[0]


def file_sizes(model, vocab: list[str], recipe_text: str, quantized: dict[str, QuantizedMatrix],
               provenance: dict | None = None) -> tuple[int, dict[str, int]]:
    """(``file_size``, the bytes of each module's tensors in the file: ``{"decoder": ...}``)."""
    tensors, layout = packed_tensors(model, quantized, pack=False)
    modules: dict[str, int] = {}
    for key, t in tensors.items():
        modules[key.split(".")[0]] = modules.get(key.split(".")[0], 0) + t.numel() * t.element_size()
    return len(save_bytes(tensors, metadata=_metadata(model, vocab, recipe_text, layout, provenance))), modules


def write_packed(path: str | os.PathLike, model, vocab: list[str], recipe_text: str,
                 quantized: dict[str, QuantizedMatrix], provenance: dict | None = None) -> Path:
    """Write the packed file atomically (``wlm.storage.atomic_write``); returns its path."""
    from .storage import atomic_write
    data = file_bytes(model, vocab, recipe_text, quantized, provenance)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def read_packed(path: str | os.PathLike):
    """(model, dictionary, recipe text, quantized matrices, provenance) of a packed file; the model
    computes with the dequantized weights. ValueError with the reason for a file that is not one."""
    from .data import Dictionary
    from .model import LSTMModel, ModelConfig
    from .storage import read_safetensors
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a wlm packed file (format {meta.get('format')!r}, expected {FORMAT!r})")
    config = ModelConfig(**json.loads(meta["config"]))
    layout = json.loads(meta["layout"])
    quantized = {}
    for key, lay in layout.items():
        rows, cols = lay["shape"]
        codes = unpack_codes(tensors.pop(f"{key}.q"), lay["bits"], rows * cols).view(rows, cols)
        quantized[key] = QuantizedMatrix(codes, tensors.pop(f"{key}.scale"), lay["bits"], lay["group"])
    model = LSTMModel(config)
    model.load_state_dict({**tensors, **{k: q.dequantize() for k, q in quantized.items()}}, strict=True)
    return (model.eval(), Dictionary(json.loads(meta["vocab"])), meta["recipe"], quantized,
            json.loads(meta.get("provenance", "{}")))


def save_dequantized(path: str | os.PathLike, model, dictionary, provenance: dict) -> Path:
    """The model's weights as float32 under the tutorial's keys, in a wlm checkpoint
    (``wlm.checkpoint``): loadable by the tutorial's class and by ``python -m wlm eval``."""
    from .checkpoint import save_checkpoint
    return save_checkpoint(path, model, dictionary, provenance)
