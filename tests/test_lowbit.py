"""wlm.lowbit: integer grids of 2-8 bits, three roundings, recipes. Checked against plain numpy
written here (exact: the same float16 scales and codes), and against what each rounding is for."""
import numpy as np
import pytest
import torch

from wlm.grid import mse_scales, rtn_scales
from wlm.lowbit import GROUPS, Precision, Recipe, quantize_matrix, quantize_model


def numpy_rtn(w: np.ndarray, bits: int, group: int | None):
    """Symmetric round to nearest, one absmax scale per row or group, float16 scales: plain numpy."""
    rows, cols = w.shape
    g = group or cols
    top = 2 ** (bits - 1) - 1
    wg = w.reshape(rows, cols // g, g)
    scale = (np.abs(wg).max(-1) / top).astype(np.float16).astype(np.float32)
    codes = np.clip(np.round(wg / scale[..., None]), -top, top)
    return codes.reshape(rows, cols), scale, (codes * scale[..., None]).reshape(rows, cols)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("group", [None, 32])
def test_round_to_nearest_is_plain_numpy_exactly(bits, group):
    w = torch.randn(40, 64, generator=torch.Generator().manual_seed(bits)) * 0.2
    q = quantize_matrix(w, bits, group, "rtn")
    codes, scale, deq = numpy_rtn(w.numpy(), bits, group)
    assert np.array_equal(q.codes.numpy(), codes) and np.array_equal(q.scales.float().numpy(), scale)
    assert np.array_equal(q.dequantize().numpy(), deq)
    assert q.codes.abs().max() <= 2 ** (bits - 1) - 1


def test_an_all_zero_group_gets_scale_and_codes_zero():
    w = torch.zeros(3, 64)
    w[0, 40] = 1.0
    q = quantize_matrix(w, 2, 32, "rtn")                 # scale 1 / qmax = 1: exact
    assert q.scales[1, 0] == 0 and q.codes[1].abs().sum() == 0 and torch.equal(q.dequantize(), w)


def test_a_clipped_scale_never_has_more_squared_error_than_absmax():
    """mse picks, per group, the least-error scale among candidates that include absmax itself."""
    w = torch.randn(50, 128, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.1, 2.0, 128)
    for bits in (2, 3, 4):
        err = {r: (w - quantize_matrix(w, bits, 32, r).dequantize()).square().view(50, 4, 32).sum(-1)
               for r in ("rtn", "mse")}
        assert (err["mse"] <= err["rtn"] + 1e-6).all()
        assert err["mse"].sum() < 0.9 * err["rtn"].sum()          # at 2-4 bits clipping pays
    assert torch.equal(mse_scales(w, 8, None, ratios=(1.0,)), rtn_scales(w, 8, None))


def test_gptq_makes_the_layer_output_closer_than_rounding_each_weight():
    """On correlated inputs, GPTQ's output error tr(E H E^T) is well below round to nearest's, even
    though its weights are further from fp32 (that is the trade it makes)."""
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(64, 96, generator=gen) * 0.1
    x = torch.randn(4000, 96, generator=gen) @ torch.randn(96, 96, generator=gen)
    h = x.T @ x / len(x)
    out_err = {r: float(((w - quantize_matrix(w, 3, 32, r, h).dequantize()) @ x.T).square().mean())
               for r in ("rtn", "mse", "gptq")}
    assert out_err["gptq"] < 0.7 * out_err["mse"] < 0.7 * out_err["rtn"]


def test_gptq_with_uncorrelated_inputs_rounds_as_mse_does():
    """With H = I there is no error to push on: GPTQ's codes are mse's, per row."""
    w = torch.randn(30, 64, generator=torch.Generator().manual_seed(3))
    a = quantize_matrix(w, 4, None, "gptq", torch.eye(64) / 1.01)      # the damping keeps it diagonal
    b = quantize_matrix(w, 4, None, "mse")
    assert torch.equal(a.codes, b.codes) and torch.equal(a.scales, b.scales)


def test_recipe_text_is_canonical_and_a_part_can_be_overridden():
    r = Recipe.parse("lstm=int6-g32, decoder=INT5-g32 embedding=int4-g32 lstm.4=int8-row rounding=gptq", 5)
    assert r.text == ("embedding=int4-g32 lstm.0=int6-g32 lstm.1=int6-g32 lstm.2=int6-g32 lstm.3=int6-g32 "
                      "lstm.4=int8-row decoder=int5-g32 rounding=gptq")
    assert Recipe.parse(r.text, 5) == r
    assert Recipe.parse("decoder=int2-row", 2).text == "embedding=fp32 lstm=fp32 decoder=int2-row rounding=rtn"
    assert Precision.parse("int3-g128") == Precision(3, 128) and Precision(4, None).text == "int4-row"


@pytest.mark.parametrize("text, says", [
    ("embedding=int9-g32", "embedding must be fp32, int<bits>-row or int<bits>-g<group> with bits 2-8"),
    ("decoder=int4-g48", f"group {', '.join(map(str, GROUPS))}"),
    ("lstm.5=int4-row", "part one of embedding, lstm, lstm.0, lstm.1, decoder, rounding"),
    ("rounding=best", "rounding must be one of rtn, mse, gptq"),
    ("decoder=int4-row decoder=int5-row", "decoder is given twice"),
    ("", "recipe must be text"),
    ("decoder", "each entry is <part>=<precision>"),
])
def test_a_bad_recipe_is_refused_naming_the_part_and_what_is_allowed(text, says):
    with pytest.raises(ValueError, match=None) as e:
        Recipe.parse(text, 2)
    assert says in str(e.value)


def test_a_quantized_model_shares_its_fp32_parts_and_computes_with_the_codes(tiny_model):
    r = Recipe.parse("lstm.1=int4-g32 decoder=int3-row", 2)
    with pytest.raises(ValueError, match="does not divide"):
        quantize_model(tiny_model, Recipe.parse("decoder=int4-g32", 2))     # 12 inputs: no group of 32
    r = Recipe.parse("lstm.1=int4-row decoder=int3-row", 2)
    model, quantized = quantize_model(tiny_model, r)
    assert set(quantized) == {"rnn.weight_ih_l1", "rnn.weight_hh_l1", "decoder.weight"}
    sd, ref = model.state_dict(), tiny_model.state_dict()
    assert sd["encoder.weight"].data_ptr() == ref["encoder.weight"].data_ptr()            # shared, not copied
    assert torch.equal(sd["rnn.weight_ih_l0"], ref["rnn.weight_ih_l0"])
    for key, q in quantized.items():
        assert torch.equal(sd[key], q.dequantize()) and not torch.equal(sd[key], ref[key])
    x = torch.randint(0, tiny_model.config.ntoken, (7, 1))
    manual = type(tiny_model)(tiny_model.config)
    manual.load_state_dict({**ref, **{k: q.dequantize() for k, q in quantized.items()}})
    manual.eval()
    with torch.no_grad():
        assert torch.equal(model(x, model.init_hidden(1))[0], manual(x, manual.init_hidden(1))[0])
