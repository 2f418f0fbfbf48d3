"""wlm.dynamic: a dynamic int8 model's log-probabilities depend on how the text is cut into calls;
fp32's and weight-only models' do not. The scale shown is the one the op uses."""
import pytest
import torch

from wlm.dynamic import chunking, explain, input_qparams, is_dynamic
from wlm.lowbit import Recipe, quantize_model


def test_only_the_dynamic_model_changes_with_the_calls(sharp_pair, tiny_corpus):
    fp32, q = sharp_pair
    low, _ = quantize_model(fp32, Recipe.parse("lstm=int4-row decoder=int4-row", 2))
    ids = tiny_corpus.test[:150].tolist()
    d = chunking({"fp32": fp32, "qint8": q, "low": low}, tiny_corpus.dictionary, ids, 64)
    assert d.max_diff["fp32"] == 0.0 and d.max_diff["low"] == 0.0 and d.max_diff["qint8"] > 1e-4
    assert [(c["start"], c["tokens"]) for c in d.calls["qint8"]] == [(0, 64), (64, 64), (128, 22)]
    assert d.calls["fp32"] == [] and d.whole["qint8"]["tokens"] == 150
    scales = {c["scale"] for c in d.calls["qint8"]}
    assert len(scales) > 1                                      # each call its own scale
    text = explain(d, "fp32", "qint8")
    assert "calls of 64 tokens" in text and "| 1-64 |" in text and "one call, 1-150" in text
    assert "not quantized" in explain(d, "fp32", "low")
    assert is_dynamic(q) and not is_dynamic(fp32) and not is_dynamic(low)


def test_the_scale_shown_is_the_one_the_dynamic_linear_computes_with(sharp_pair):
    """Quantizing the input with the shown scale and zero point and multiplying by the dequantized
    int8 weights gives the op's output (tolerance: int32 accumulation and requantization)."""
    _, q = sharp_pair
    x = torch.randn(30, q.decoder.in_features, generator=torch.Generator().manual_seed(0)) * 3
    p = input_qparams(x)
    assert p["scale"] == pytest.approx((max(0.0, p["max"]) - min(0.0, p["min"])) / 127, rel=1e-6)
    xq = torch.quantize_per_tensor(x, p["scale"], p["zero_point"], torch.quint8).dequantize()
    manual = xq @ q.decoder.weight().dequantize().t() + q.decoder.bias()
    got = q.decoder(x)
    assert (got - manual).abs().max() <= 1e-4 * got.abs().max()
    other = torch.quantize_per_tensor(x, p["scale"] * 1.5, p["zero_point"], torch.quint8).dequantize()
    assert (got - (other @ q.decoder.weight().dequantize().t() + q.decoder.bias())).abs().max() > \
        10 * (got - manual).abs().max()                          # another scale would not give it

