"""The ONNX Runtime engine: the checkpoint exported to ONNX, fp32 and dynamic int8.

``torch.ao.quantization`` is deprecated and torchao's ``quantize_`` covers Linear layers only;
for an LSTM the live int8 path is ONNX Runtime's ``DynamicQuantizeLSTM``, which
``onnxruntime.quantization.quantize_dynamic`` produces from the exported ``LSTM`` node.

Exports are cached: ``<cache>/wlm-<kind>.onnx`` with a ``.json`` manifest holding the key
(checkpoint sha256, torch / onnx / onnxruntime versions, opset). A missing or stale file is
rebuilt; every file is written to a temporary name and renamed, so a crash leaves no half file.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .quantize import SizeReport

OPSET = 17
KINDS = ("fp32", "int8", "int8-per-channel")


def available() -> str | None:
    """None if the engine can run here, else why not (one line)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return f"ONNX Runtime is not installed ({e.name} missing): pip install onnxruntime onnx"
    return None


def cache_key(checkpoint_sha256: str) -> dict:
    import onnx
    import onnxruntime
    return {"checkpoint_sha256": checkpoint_sha256, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": OPSET}


def _atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and rename the result to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export(model: nn.Module, path: Path) -> None:
    """The fp32 model as ONNX: inputs ids (seq, 1) int64, h0, c0; outputs logits, hn, cn."""
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(1)
    ids = torch.zeros(3, 1, dtype=torch.long)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # the TorchScript exporter's notes on LSTM and dropout
            _atomic(path, lambda tmp: torch.onnx.export(
                model, (ids, hidden), tmp, dynamo=False, opset_version=OPSET,
                input_names=["ids", "h0", "c0"], output_names=["logits", "hn", "cn"],
                dynamic_axes={"ids": {0: "seq"}, "logits": {0: "seq"}}))
    finally:
        model.train(was_training)                 # the exporter restores its own idea of the mode


def build(model: nn.Module, checkpoint_sha256: str, cache: Path, kind: str, progress=None) -> Path:
    """The cached .onnx file of ``kind`` (one of ``KINDS``), built if missing or stale."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cache = Path(cache)
    path, manifest = cache / f"wlm-{kind}.onnx", cache / f"wlm-{kind}.json"
    key = cache_key(checkpoint_sha256)
    try:
        fresh = path.is_file() and json.loads(manifest.read_text()) == key
    except (OSError, ValueError):
        fresh = False
    if fresh:
        return path
    if kind == "fp32":
        if progress:
            progress("exporting the checkpoint to ONNX")
        export(model, path)
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        src = build(model, checkpoint_sha256, cache, "fp32", progress)
        if progress:
            progress("quantizing the ONNX model to int8 (onnxruntime.quantization.quantize_dynamic)")
        import logging
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))   # its pre-processing hint
        _atomic(path, lambda tmp: quantize_dynamic(src, tmp, weight_type=QuantType.QInt8,
                                                   per_channel=kind == "int8-per-channel"))
    _atomic(manifest, lambda tmp: Path(tmp).write_text(json.dumps(key, indent=1)))
    return path


def _module_of(initializer: str) -> str:
    """Which part of the model an initializer belongs to, by the exporter's names."""
    if initializer.startswith("encoder"):
        return "encoder"
    if "LSTM" in initializer:
        return "rnn"
    return "decoder"


def onnx_size(path: Path) -> SizeReport:
    """The .onnx file's bytes (MB = 1e6), split by the initializers each module owns."""
    import onnx
    parts: dict[str, float] = {}
    for init in onnx.load(str(path), load_external_data=False).graph.initializer:
        name = _module_of(init.name)
        parts[name] = parts.get(name, 0.0) + len(init.raw_data) / 1e6
    return SizeReport(path.stat().st_size / 1e6, parts)


class OrtModel(nn.Module):
    """An ONNX Runtime session behind the model interface: forward(ids, hidden) -> (logits,
    hidden), init_hidden(bsz). Sessions are made per torch thread count, so ``num_threads``
    applies to this engine too."""

    def __init__(self, path: Path, nlayers: int, nhid: int):
        super().__init__()
        self.path, self.nlayers, self.nhid = Path(path), nlayers, nhid
        self._sessions: dict[int, object] = {}

    def _session(self):
        import onnxruntime as ort
        n = torch.get_num_threads()
        if n not in self._sessions:
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = n, 1
            so.log_severity_level = 3
            self._sessions[n] = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        return self._sessions[n]

    def init_hidden(self, bsz: int):
        if bsz != 1:
            raise ValueError("the exported model runs batch size 1")
        return (torch.zeros(self.nlayers, 1, self.nhid), torch.zeros(self.nlayers, 1, self.nhid))

    def forward(self, ids: torch.Tensor, hidden):
        logits, h, c = self._session().run(None, {"ids": ids.numpy(), "h0": hidden[0].numpy(),
                                                  "c0": hidden[1].numpy()})
        return torch.from_numpy(logits), (torch.from_numpy(h), torch.from_numpy(c))

    def extra_repr(self) -> str:
        return f"{self.path.name}, onnxruntime CPUExecutionProvider"
