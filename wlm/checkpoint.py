"""Checkpoints as data: one .safetensors file with the fp32 state_dict and, in its
metadata, the model config, the vocabulary (id order) and provenance. No pickle."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from .data import Dictionary
from .model import LSTMModel, ModelConfig

FORMAT = "wlm-checkpoint/1"
DEFAULT_CHECKPOINT = "data/wlm-lstm.safetensors"     # the shipped one, from the project's root


class CheckpointError(Exception):
    """A checkpoint file that cannot be used, with the reason."""


@dataclass
class Checkpoint:
    model: LSTMModel
    dictionary: Dictionary
    provenance: dict = field(default_factory=dict)
    path: Path | None = None
    _sha256: str | None = field(default=None, repr=False)

    @property
    def sha256(self) -> str:
        """sha256 of the checkpoint file (computed once): the key of everything derived from it."""
        if self._sha256 is None:
            from .download import sha256_file
            if self.path is None:
                raise CheckpointError("this checkpoint was not loaded from a file, so it has no sha256")
            self._sha256 = sha256_file(self.path)
        return self._sha256


def atomic_save(tensors: dict, metadata: dict, path: Path) -> None:
    """The safetensors file, written whole or not at all (``wlm.storage.atomic_write``: a private
    temporary file, renamed into place, or copied and verified where rename is not supported)."""
    from .storage import atomic_write
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_checkpoint(path, model: LSTMModel, dictionary: Dictionary, provenance: dict | None = None) -> Path:
    """Write model weights + config + vocabulary + provenance to ``path`` atomically."""
    path = Path(path)
    if len(dictionary) != model.config.ntoken:
        raise ValueError(f"dictionary has {len(dictionary)} words but the model {model.config.ntoken}")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "vocab": json.dumps(dictionary.idx2word, ensure_ascii=False),
        "provenance": json.dumps(provenance or {}),
    }
    atomic_save(tensors, metadata, path)
    return path


def read_file(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; any failure becomes CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    from .storage import read_safetensors
    try:
        return read_safetensors(path)
    except ValueError as e:
        raise CheckpointError(str(e)) from e


def load_checkpoint(path) -> Checkpoint:
    """Rebuild model (fp32, eval mode) and dictionary from the file alone."""
    tensors, meta = read_file(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a wlm checkpoint (metadata format={meta.get('format')!r}, "
                              f"expected {FORMAT!r})")
    try:
        config = ModelConfig(**json.loads(meta["config"]))
        words = json.loads(meta["vocab"])
        provenance = json.loads(meta.get("provenance", "{}"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: broken metadata ({e})") from e
    if len(words) != config.ntoken or len(set(words)) != len(words):
        raise CheckpointError(f"{path}: vocabulary has {len(words)} words ({len(set(words))} distinct) "
                              f"but the config says ntoken={config.ntoken}")
    model = LSTMModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: state_dict keys do not match the model (missing {missing}, unexpected {extra})")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: {k} has shape {tuple(tensors[k].shape)}, config needs {tuple(v.shape)}")
        if not torch.isfinite(tensors[k]).all():
            raise CheckpointError(f"{path}: {k} holds NaN or inf values")
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return Checkpoint(model, Dictionary(words), provenance, Path(path))
