import warnings

import pytest
import torch

from wlm.model import LSTMModel, ModelConfig
from wlm.quantize import TUTORIAL, QuantRecipe, model_size, quantize, select_engine


def sqnr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB."""
    return float(20 * torch.log10(ref.norm() / (ref - test).norm()))


@pytest.fixture(scope="module")
def tutorial_pair():
    torch.manual_seed(0)
    m = LSTMModel(ModelConfig(33278)).eval()
    return m, quantize(m)


def test_quantize_returns_a_new_model_and_leaves_fp32_untouched(tutorial_pair):
    m, q = tutorial_pair
    assert q is not m
    assert type(m.rnn) is torch.nn.LSTM and type(m.decoder) is torch.nn.Linear
    assert m.decoder.weight.dtype == torch.float32
    s = str(q)
    assert "(rnn): DynamicQuantizedLSTM(512, 256, num_layers=5, dropout=0.5)" in s
    assert ("(decoder): DynamicQuantizedLinear(in_features=256, out_features=33278, dtype=torch.qint8, "
            "qscheme=torch.per_tensor_affine)") in s
    assert "(encoder): Embedding(33278, 512)" in s        # the embedding stays fp32


def test_sizes_match_the_tutorial(tutorial_pair):
    m, q = tutorial_pair
    fp, qi = model_size(m), model_size(q)
    assert fp.total_mb == pytest.approx(113.944064, abs=0.01)
    assert qi.total_mb == pytest.approx(79.738484, abs=0.01)
    assert set(fp.modules_mb) == {"encoder", "rnn", "decoder"}
    assert qi.modules_mb["encoder"] == pytest.approx(fp.modules_mb["encoder"])
    assert qi.modules_mb["decoder"] < fp.modules_mb["decoder"] / 3.5   # int8 weights, fp32 bias
    assert sum(fp.modules_mb.values()) == pytest.approx(fp.total_mb, rel=0.01)


def test_quantized_outputs_stay_close_to_fp32(tutorial_pair):
    """SQNR of the logits on random ids; > 30 dB (noise power < 0.1% of signal; seen: 37 dB)."""
    m, q = tutorial_pair
    torch.manual_seed(1)
    x = torch.randint(0, 33278, (30, 2))
    with torch.inference_mode():
        ref, _ = m(x, m.init_hidden(2))
        out, _ = q(x, q.init_hidden(2))
    assert sqnr_db(ref, out) > 30


def test_no_deprecation_flood():
    m = LSTMModel(ModelConfig(20, ninp=8, nhid=8, nlayers=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize(m)
    assert not [w for w in caught if "deprecated" in str(w.message)]


def test_engine_is_usable_here():
    engine = select_engine()
    assert engine in torch.backends.quantized.supported_engines
    assert torch.backends.quantized.engine == engine


@pytest.mark.parametrize("recipe,linear_type,min_db", [
    (QuantRecipe(qscheme="per_channel"), "qint8", 30),
    (QuantRecipe(dtype="float16"), "float16", 60),
    (QuantRecipe(modules=("Linear",)), "qint8", 30),
])
def test_other_recipes(recipe, linear_type, min_db):
    torch.manual_seed(0)
    m = LSTMModel(ModelConfig(50, ninp=16, nhid=16, nlayers=2)).eval()
    q = quantize(m, recipe)
    assert f"dtype=torch.{linear_type}" in str(q.decoder)
    assert ("DynamicQuantizedLSTM" in str(q.rnn)) == ("LSTM" in recipe.modules)
    x = torch.randint(0, 50, (10, 1))
    with torch.inference_mode():
        assert sqnr_db(m(x, m.init_hidden(1))[0], q(x, q.init_hidden(1))[0]) > min_db


@pytest.mark.parametrize("bad", [dict(modules=()), dict(modules=("Conv",)), dict(dtype="int4"),
                                 dict(qscheme="per_row"), dict(dtype="float16", qscheme="per_channel")])
def test_recipe_validates(bad):
    with pytest.raises(ValueError, match="QuantRecipe"):
        QuantRecipe(**bad)


def test_tutorial_recipe():
    assert TUTORIAL == QuantRecipe(("LSTM", "Linear"), "qint8", "per_tensor") and TUTORIAL.name == "qint8"
