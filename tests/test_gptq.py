"""wlm.gptq: the inputs' statistics GPTQ rounds with, against the model's own outputs, and the file."""
import pytest
import torch

from wlm.gptq import Calibration


def test_calibration_averages_each_matrix_inputs_outer_products(small_model, tiny_corpus, tmp_path):
    ids = tiny_corpus.train[:600]
    cal = Calibration.collect(small_model, ids, max_tokens=600, call_tokens=77)       # calls that do not divide 600
    with torch.no_grad():                                  # independently: the whole text in one call
        emb = small_model.encoder(ids.view(-1, 1))
        top, _ = small_model.rnn(emb, small_model.init_hidden(1))
    x, h = emb.view(600, -1).double(), top.view(600, -1).double()
    prev = torch.cat([torch.zeros(1, h.size(1), dtype=h.dtype), h[:-1]])
    for key, inputs in (("rnn.weight_ih_l0", x), ("decoder.weight", h), ("rnn.weight_hh_l1", prev)):
        torch.testing.assert_close(cal.hessians[key].double(), inputs.T @ inputs / 600, rtol=1e-5, atol=1e-6)
    assert set(cal.hessians) == {"rnn.weight_ih_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l0", "rnn.weight_hh_l1",
                                 "decoder.weight"} and cal.tokens == 600
    cal.provenance = {"checkpoint_sha256": "ab" * 32, "split": "train"}
    path = cal.save(tmp_path / "cal.safetensors")
    back = Calibration.load(path, "ab" * 32)
    assert all(torch.equal(back.hessians[k], v) for k, v in cal.hessians.items()) and back.tokens == 600
    with pytest.raises(ValueError, match="collected on checkpoint abababababab..., not this one"):
        Calibration.load(path, "cd" * 32)
    with pytest.raises(ValueError, match="python -m wlm calibrate"):
        Calibration.load(tmp_path / "missing.safetensors")
    Calibration.check(path, "ab" * 32)                     # the same checks from the header alone
    with pytest.raises(ValueError, match="collected on checkpoint abababababab..., not this one"):
        Calibration.check(path, "cd" * 32)
    with pytest.raises(ValueError, match="python -m wlm calibrate"):
        Calibration.check(tmp_path / "missing.safetensors")
