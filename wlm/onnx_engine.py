"""The ONNX Runtime engine: the checkpoint exported to ONNX, fp32, dynamic int8, and 4-bit
weights through ONNX Runtime's own packed 4-bit kernels.

``torch.ao.quantization`` is deprecated and torchao's ``quantize_`` covers Linear layers only;
for an LSTM the live int8 path is ONNX Runtime's ``DynamicQuantizeLSTM``, which
``onnxruntime.quantization.quantize_dynamic`` produces from the exported ``LSTM`` node.
``int4``: the LSTM as in ``int8``; the decoder's MatMul and the embedding's Gather with 4-bit
weights (``MatMulNBits``, ``GatherBlockQuantized``: symmetric, one fp32 scale per block of 32
inputs, rounded to nearest by ONNX Runtime's ``MatMulNBitsQuantizer``), the MatMul computed
on int8-quantized activations (``accuracy_level`` 4); the quantizer raises the file's opset
(to 21 with onnxruntime 1.32) for these contrib ops. These kernels take 2, 4 or 8 bits and
have no LSTM: this is the low-bit model whose speed is real here.

Exports are cached under their key: ``<cache>/onnx-<key>/wlm-<kind>.onnx``, where ``key`` is
a hash of the checkpoint's sha256, the torch / onnx / onnxruntime versions and the opset
(``key.json`` in the folder spells it out, for people; nothing reads it). So another
checkpoint or another library version never replaces a file in use, and a file is valid as
soon as it is whole at its name: every file is written to a temporary name and renamed
(``wlm.storage.atomic_write``; where rename fails, copied and verified), so a crash leaves
no half file that counts. A build in a child process that fails or runs out of time leaves
none of its temporary files behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .quantize import SizeReport
from .storage import atomic_write, complete, remove_stale_parts, temp_prefix, write_json

OPSET = 17
KINDS = ("fp32", "int8", "int8-per-channel", "int4")
INT4_BLOCK = 32                   # inputs per scale of the 4-bit weights (as the bit ladder's groups)
INT4_ACCURACY = 4                 # MatMulNBits' accuracy_level: 4 = the activations quantized to int8, int8 dot products
# a kind's settings that the cache key (library versions, opset) does not hold go into its file's name
FILE_KINDS = {"int4": f"int4-g{INT4_BLOCK}-a{INT4_ACCURACY}"}
QUANTIZING = {"int8": "int8: onnxruntime.quantization.quantize_dynamic",
              "int8-per-channel": "int8, per channel: onnxruntime.quantization.quantize_dynamic",
              "int4": "LSTM int8, decoder and embedding 4-bit: MatMulNBitsQuantizer"}
BUILD_TIMEOUT_S = 900             # a child build that takes longer is killed
# torch.onnx.export keeps its state in module globals: two exports at once in one process fail
# ("GLOBALS.in_onnx_export must be ..."), so builds take turns, whoever asks.
_BUILD_LOCK = threading.RLock()


def available(kind: str = "int8") -> str | None:
    """None if the engine can build and run ``kind`` here, else why not (one line)."""
    import importlib.util
    needed = ("onnx", "onnxruntime", "onnx_ir") if kind == "int4" else ("onnx", "onnxruntime")
    for name in needed:                      # found, not imported: importing them costs ~1.5 s of start-up
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):    # e.g. a module set to None in sys.modules
            found = False
        if not found:
            return ("ONNX Runtime's 4-bit quantizer needs onnx-ir (pip install onnx-ir)" if name == "onnx_ir" else
                    f"ONNX Runtime is not installed ({name} missing): pip install onnxruntime onnx")
    return None


def cache_key(checkpoint_sha256: str) -> dict:
    """What an export depends on: the checkpoint, the exporter's and the runtime's versions."""
    import onnx
    import onnxruntime
    return {"checkpoint_sha256": checkpoint_sha256, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": OPSET}


def key_dir(cache: str | os.PathLike, checkpoint_sha256: str) -> Path:
    """The folder of the exports of this checkpoint with these versions: ``<cache>/onnx-<key>``."""
    key = json.dumps(cache_key(checkpoint_sha256), sort_keys=True)
    return Path(cache) / f"onnx-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def onnx_path(cache: str | os.PathLike, kind: str, checkpoint_sha256: str) -> Path:
    """Where the export of ``kind`` for this checkpoint and these versions lives (whole, or absent)."""
    return key_dir(cache, checkpoint_sha256) / f"wlm-{FILE_KINDS.get(kind, kind)}.onnx"


def clean_cache(cache: str | os.PathLike) -> list[Path]:
    """Remove temporary files of builds that are gone (a killed process, a crash), and exports in
    the earlier layout (``<cache>/wlm-<kind>.onnx`` and its ``.json`` manifest, which nothing
    reads now); returns what was removed."""
    cache = Path(cache)
    if not cache.is_dir():
        return []
    removed = remove_stale_parts(cache)
    for kind in KINDS:
        for old in (cache / f"wlm-{kind}.onnx", cache / f"wlm-{kind}.json"):
            try:
                old.unlink()
                removed.append(old)
            except OSError:
                pass
    return removed


def export(model: nn.Module, path: Path) -> None:
    """The fp32 model as ONNX: inputs ids (seq, 1) int64, h0, c0; outputs logits, hn, cn."""
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(1)
    ids = torch.zeros(3, 1, dtype=torch.long)
    try:
        with _BUILD_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")       # the TorchScript exporter's notes on LSTM and dropout
            atomic_write(path, lambda tmp: torch.onnx.export(
                model, (ids, hidden), tmp, dynamo=False, opset_version=OPSET,
                input_names=["ids", "h0", "c0"], output_names=["logits", "hn", "cn"],
                dynamic_axes={"ids": {0: "seq"}, "logits": {0: "seq"}}))
    finally:
        model.train(was_training)                 # the exporter restores its own idea of the mode


def build(model: nn.Module, checkpoint_sha256: str, cache: Path, kind: str, progress=None,
          checkpoint_path: Path | None = None, timeout_s: float = BUILD_TIMEOUT_S) -> Path:
    """The cached .onnx file of ``kind`` (one of ``KINDS``), built if missing (``onnx_path``).

    With ``checkpoint_path`` a missing file is built by a child process (``python -m
    wlm.onnx_engine``): the export and ONNX Runtime's quantizer are mostly Python, and in a
    server's process they would hold the interpreter's lock for seconds, slowing every other
    visitor's request. The parent only waits, at most ``timeout_s``; when the child fails or is
    killed, its temporary files are removed and RuntimeError says why."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cache = Path(cache)
    path = onnx_path(cache, kind, checkpoint_sha256)
    with _BUILD_LOCK:
        if checkpoint_path is None or complete(path):
            return _build(model, checkpoint_sha256, cache, kind, progress)
        if progress:
            progress(f"building the {kind} ONNX file in a child process")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        child = subprocess.Popen(_child_command(checkpoint_path, cache, kind), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env,
                                 cwd=Path(__file__).resolve().parent.parent)
        try:
            _, err = child.communicate(timeout=timeout_s)
            why = f"exit status {child.returncode}: {err.strip()[-500:]}"
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            why = f"killed after {timeout_s:g} s"
        finally:
            if child.poll() is None:              # interrupted while waiting: never leave it running
                child.kill()
                child.wait()
            remove_stale_parts(key_dir(cache, checkpoint_sha256), pids={child.pid})
        if child.returncode != 0 or not complete(path):
            raise RuntimeError(f"building the {kind} ONNX file failed ({why})")
        return path


def _child_command(checkpoint_path: Path, cache: Path, kind: str) -> list[str]:
    return [sys.executable, "-m", "wlm.onnx_engine", str(checkpoint_path), str(cache), kind]


def _build(model: nn.Module, checkpoint_sha256: str, cache: Path, kind: str, progress=None) -> Path:
    path = onnx_path(cache, kind, checkpoint_sha256)
    if complete(path):
        return path
    folder = path.parent
    if not (folder / "key.json").is_file():
        write_json(folder / "key.json", cache_key(checkpoint_sha256))       # for people only
    if kind == "fp32":
        if progress:
            progress("exporting the checkpoint to ONNX")
        export(model, path)
    else:
        src = _build(model, checkpoint_sha256, cache, "fp32", progress)
        if progress:
            progress(f"quantizing the ONNX model ({QUANTIZING[kind]})")
        import logging
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))   # its pre-processing hint
        quantize = _quantize_int4 if kind == "int4" else _quantize_int8
        atomic_write(path, lambda tmp: quantize(src, tmp, kind))
    return path


def _quantize_int8(src: Path, dst, kind: str) -> None:
    """``int8`` / ``int8-per-channel``: ONNX Runtime's stock dynamic quantization of every part."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=kind == "int8-per-channel")


def _quantize_int4(src: Path, dst, kind: str = "int4") -> None:
    """``int4`` (see the module's docstring) from the fp32 export ``src``, written to ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    # the LSTM-only model, beside the result as a part file: if this process is killed, the build's
    # parent (or the next start) removes it with the other stale parts (wlm.storage.stale_parts)
    folder = Path(dst).parent
    fd, lstm = tempfile.mkstemp(dir=folder, prefix=temp_prefix(folder / "wlm-int4-lstm.onnx"), suffix=".part")
    os.close(fd)
    try:
        quantize_dynamic(src, lstm, weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"])
        config = DefaultWeightOnlyQuantConfig(block_size=INT4_BLOCK, is_symmetric=True, accuracy_level=INT4_ACCURACY,
                                              bits=4, op_types_to_quantize=("MatMul", "Gather"),
                                              quant_axes=(("MatMul", 0), ("Gather", 1)))
        quantizer = MatMulNBitsQuantizer(lstm, algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    finally:
        Path(lstm).unlink(missing_ok=True)


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
    hidden), init_hidden(bsz).

    A session's thread count is fixed when it is made, so there is one session per torch
    thread count in use (``num_threads`` applies to this engine too). ``thread_counts`` bounds
    them: a server passes the counts it accepts, so no request can make sessions (and their
    thread pools and weights) without limit; None accepts any count (the command line). Pool
    threads do not spin between calls: a spinning thread would take CPU time from whatever
    runs next, and disturb its timing.
    """

    def __init__(self, path: Path, nlayers: int, nhid: int, thread_counts: tuple[int, ...] | None = None,
                 profile: bool = False):
        super().__init__()
        self.path, self.nlayers, self.nhid = Path(path), nlayers, nhid
        self.thread_counts, self.profile = thread_counts, profile
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()

    def _session(self):
        import onnxruntime as ort
        n = torch.get_num_threads()
        if self.thread_counts is not None and n not in self.thread_counts:
            raise ValueError(f"threads must be one of {', '.join(map(str, self.thread_counts))} for "
                             f"{self.path.name}, got {n}")
        with self._lock:
            if n not in self._sessions:
                so = ort.SessionOptions()
                so.intra_op_num_threads, so.inter_op_num_threads = n, 1
                so.add_session_config_entry("session.intra_op.allow_spinning", "0")
                so.log_severity_level = 3
                if self.profile:                 # per-node times (wlm.inspection); files in the temp folder
                    so.enable_profiling = True
                    so.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"wlm-ort-profile-{os.getpid()}")
                self._sessions[n] = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
            return self._sessions[n]

    def end_profiling(self) -> str:
        """Stop profiling (``profile=True``) and return the profile file of the session in use."""
        with self._lock:
            return self._sessions[torch.get_num_threads()].end_profiling()

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


if __name__ == "__main__":          # python -m wlm.onnx_engine CHECKPOINT CACHE KIND (see build)
    from .checkpoint import load_checkpoint
    _ckpt = load_checkpoint(sys.argv[1])
    torch.set_num_threads(1)
    build(_ckpt.model, _ckpt.sha256, Path(sys.argv[2]), sys.argv[3])
