import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import SHIPPED_CHECKPOINT
from tests.tutorial_model import LSTMModel as TutorialLSTMModel
from wlm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_roundtrip_rebuilds_model_and_dictionary(tiny_checkpoint, tiny_model, tiny_corpus):
    ck = load_checkpoint(tiny_checkpoint)
    assert ck.model.config == tiny_model.config
    assert ck.dictionary.idx2word == tiny_corpus.dictionary.idx2word
    assert ck.provenance == {"note": "test"}
    assert not ck.model.training
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v)


def test_file_is_plain_safetensors_without_pickle(tiny_checkpoint):
    raw = tiny_checkpoint.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__")
    assert set(meta) == {"format", "config", "vocab", "provenance"}
    assert "encoder.weight" in header and header["encoder.weight"]["dtype"] == "F32"
    assert b"\x80\x04" not in raw[:8 + n]   # no pickle protocol marker in the header


def test_truncated_file_is_a_clear_error(tiny_checkpoint, tmp_path):
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(tiny_checkpoint.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(bad)


def test_garbage_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_foreign_safetensors_is_rejected(tmp_path):
    f = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(f))
    with pytest.raises(CheckpointError, match="not a wlm checkpoint"):
        load_checkpoint(f)


def test_shape_mismatch_is_named(tiny_checkpoint, tmp_path):
    from safetensors import safe_open
    with safe_open(str(tiny_checkpoint), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["decoder.bias"] = torch.zeros(3)
    bad = tmp_path / "mismatch.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(CheckpointError, match="decoder.bias has shape"):
        load_checkpoint(bad)


def test_vocabulary_size_mismatch(tiny_checkpoint, tmp_path):
    from safetensors import safe_open
    with safe_open(str(tiny_checkpoint), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["vocab"] = json.dumps(json.loads(meta["vocab"])[:-1])
    bad = tmp_path / "vocab.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(CheckpointError, match="vocabulary"):
        load_checkpoint(bad)


def test_save_refuses_dictionary_of_wrong_size(tiny_model, tmp_path):
    from wlm.data import Dictionary
    with pytest.raises(ValueError, match="dictionary has"):
        save_checkpoint(tmp_path / "x.safetensors", tiny_model, Dictionary(["a"]))
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped checkpoint in data/ yet")
def test_shipped_checkpoint_loads_strictly_into_the_tutorial_class():
    ck = load_checkpoint(SHIPPED_CHECKPOINT)
    c = ck.model.config
    assert (c.ntoken, c.ninp, c.nhid, c.nlayers) == (33278, 512, 256, 5)
    t = TutorialLSTMModel(33278, 512, 256, 5, 0.5).eval()     # dropout holds no weights
    t.load_state_dict(ck.model.state_dict(), strict=True)
    x = torch.randint(0, 33278, (6, 1))
    assert torch.equal(ck.model(x, ck.model.init_hidden(1))[0], t(x, t.init_hidden(1))[0])
    assert ck.provenance["test_loss"] <= 5.17


def test_saving_where_rename_is_not_supported_still_gives_a_whole_checkpoint(tiny_model, tiny_corpus, tmp_path,
                                                                             monkeypatch):
    """A bucket mount may refuse rename (EXDEV/ENOTSUP): the file is copied into place and verified."""
    import errno
    import os

    from wlm.checkpoint import load_checkpoint, save_checkpoint
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model, tiny_corpus.dictionary, {"epochs": 1})

    def no_rename(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")
    monkeypatch.setattr(os, "replace", no_rename)
    save_checkpoint(path, tiny_model, tiny_corpus.dictionary, {"epochs": 2})
    assert load_checkpoint(path).provenance["epochs"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]          # no temporary file left


def test_a_save_that_fails_leaves_the_old_checkpoint(tiny_model, tiny_corpus, tmp_path, monkeypatch):
    from wlm import checkpoint
    path = checkpoint.save_checkpoint(tmp_path / "m.safetensors", tiny_model, tiny_corpus.dictionary, {"epochs": 1})

    def dies(tensors, filename, metadata=None):
        open(filename, "wb").write(b"half a file")
        raise OSError("No space left on device")
    monkeypatch.setattr(checkpoint, "save_file", dies)
    with pytest.raises(OSError, match="No space"):
        checkpoint.save_checkpoint(path, tiny_model, tiny_corpus.dictionary, {"epochs": 2})
    assert checkpoint.load_checkpoint(path).provenance["epochs"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
