"""wlm.packed: a recipe's weights as a real file, read back bit for bit; the dequantized export in
the tutorial's class."""
import numpy as np
import pytest
import torch
from safetensors import safe_open

from tests.tutorial_model import LSTMModel as TutorialLSTMModel
from wlm.checkpoint import load_checkpoint
from wlm.lowbit import Recipe, quantize_model
from wlm.packed import file_bytes, file_size, pack_codes, read_packed, save_dequantized, unpack_codes, write_packed


@pytest.mark.parametrize("bits", range(2, 9))
def test_codes_pack_to_bits_x_n_over_8_bytes_and_back(bits):
    top = 2 ** (bits - 1) - 1
    codes = torch.cat([torch.tensor([-top, top, 0]), torch.randint(-top, top + 1, (997,))])
    data = pack_codes(codes, bits)
    assert data.dtype == torch.uint8 and len(data) == -(-1000 * bits // 8)
    assert torch.equal(unpack_codes(data, bits, 1000).to(torch.int64), codes)


def test_the_bit_stream_is_little_endian_code_after_code():
    """3-bit codes 1, 2, 3 with qmax 3: stored 4, 5, 6 -> bits 001 101 011 from the lowest up."""
    data = pack_codes(torch.tensor([1, 2, 3]), 3).numpy()
    bits = np.unpackbits(data, bitorder="little")[:9]
    assert bits.tolist() == [0, 0, 1, 1, 0, 1, 0, 1, 1]


def test_a_packed_file_reads_back_bit_for_bit_and_runs(small_model, tiny_corpus, tmp_path):
    r = Recipe.parse("embedding=int4-g32 lstm.0=int6-row decoder=int3-g32 rounding=mse", 2)
    model, quantized = quantize_model(small_model, r)
    words = tiny_corpus.dictionary.idx2word
    path = write_packed(tmp_path / "m.safetensors", model, words, r.text, quantized, {"note": "test"})
    assert path.stat().st_size == len(file_bytes(model, words, r.text, quantized, {"note": "test"})) \
        == file_size(model, words, r.text, quantized, {"note": "test"})
    with safe_open(str(path), framework="pt") as f:                       # what is in the file
        keys = set(f.keys())
        assert f.get_tensor("encoder.weight.q").dtype == torch.uint8
        assert f.get_tensor("encoder.weight.scale").dtype == torch.float16
    assert "encoder.weight" not in keys and {"decoder.bias", "rnn.weight_ih_l1", "decoder.weight.q"} <= keys
    back, dictionary, text, q2, prov = read_packed(path)
    assert text == r.text and dictionary.idx2word == words and prov == {"note": "test"}
    for key, q in quantized.items():
        assert torch.equal(q.codes, q2[key].codes) and torch.equal(q.scales, q2[key].scales)
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.randint(0, len(words), (9, 1))
    with torch.no_grad():
        assert torch.equal(model(x, model.init_hidden(1))[0], back(x, back.init_hidden(1))[0])


def test_the_dequantized_export_loads_strictly_into_the_tutorials_class(tiny_model, tiny_corpus, tmp_path):
    r = Recipe.parse("embedding=int3-row lstm=int4-row decoder=int2-row", 2)
    model, _ = quantize_model(tiny_model, r)
    path = save_dequantized(tmp_path / "d.safetensors", model, tiny_corpus.dictionary, {"dequantized_from": r.text})
    ck = load_checkpoint(path)
    c = ck.model.config
    t = TutorialLSTMModel(c.ntoken, c.ninp, c.nhid, c.nlayers, c.dropout).eval()
    t.load_state_dict(ck.model.state_dict(), strict=True)
    x = torch.randint(0, c.ntoken, (9, 1))
    with torch.no_grad():
        assert torch.equal(model(x, model.init_hidden(1))[0], t(x, t.init_hidden(1))[0])
    assert ck.provenance["dequantized_from"] == r.text


def test_a_file_that_is_not_packed_is_refused(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="not a wlm packed file"):
        read_packed(tiny_checkpoint)
    (tmp_path / "junk").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a readable"):
        read_packed(tmp_path / "junk")


def test_export_on_the_command_line(small_model, tiny_corpus, tiny_dir, tmp_path, capsys):
    import json
    from wlm.checkpoint import save_checkpoint
    from wlm.cli import main
    ck = save_checkpoint(tmp_path / "m.safetensors", small_model, tiny_corpus.dictionary)
    out, deq = tmp_path / "p.safetensors", tmp_path / "d.safetensors"
    recipe = "decoder=int3-g32 lstm=int4-row embedding=int5-g32 rounding=mse"
    assert main(["export", "--checkpoint", str(ck), "--recipe", recipe, "--out", str(out), "--dequantized", str(deq),
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["recipe"] == "embedding=int5-g32 lstm=int4-row decoder=int3-g32 rounding=mse"
    assert got["packed_bytes"] == out.stat().st_size < ck.stat().st_size / 3
    model, *_ = read_packed(out)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 load_checkpoint(deq).model.state_dict().values()))
    assert main(["eval", "--checkpoint", str(deq), "--data", str(tiny_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] > 0
    assert main(["export", "--checkpoint", str(ck), "--recipe", "decoder=int9-row", "--out", str(out)]) == 2
    assert "decoder must be fp32, int<bits>-row" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ck), "--variant", "qint8", "--out", str(out)]) == 2
    assert "--variant must be one of lowbit-mixed" in capsys.readouterr().err
