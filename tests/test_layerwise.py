"""The model part by part (wlm.layerwise): the split LSTM, plans, weights and SQNR."""
import math

import pytest
import torch

from wlm import layerwise as lw
from wlm.quantize import QuantRecipe, quantize
from tests.conftest import sharpen


@pytest.fixture
def model(tiny_corpus):
    from wlm.model import LSTMModel, ModelConfig
    torch.manual_seed(0)
    m = LSTMModel(ModelConfig(len(tiny_corpus.dictionary), ninp=16, nhid=12, nlayers=3)).eval()
    sharpen(m)
    return m


def test_the_split_lstm_gives_bit_identical_logits_in_fp32(model, tiny_corpus):
    split = lw.SplitModel(model).eval()
    x = tiny_corpus.test[:300].view(-1, 1)
    ha, hb = model.init_hidden(1), split.init_hidden(1)
    with torch.inference_mode():
        for i in range(0, 300, 25):                     # chunks, hidden state carried, as evaluation
            a, ha = model(x[i:i + 25], ha)
            b, hb = split(x[i:i + 25], hb)
            assert torch.equal(a, b) and torch.equal(ha[0], hb[0]) and torch.equal(ha[1], hb[1])
    assert [p for p, _ in split.named_children()] == ["drop", "encoder", "rnn", "decoder"] and len(split.rnn) == 3


def test_the_tutorials_plan_on_the_split_model_is_the_tutorials_model(model, tiny_corpus):
    """The plan of a recipe, applied part by part, gives the logits of quantize(model, recipe)."""
    x = tiny_corpus.test[:50].view(-1, 1)
    for recipe in (QuantRecipe(), QuantRecipe(qscheme="per_channel", modules=("Embedding", "LSTM", "Linear"))):
        plan = lw.plan_of(recipe, model.config)
        q, s = quantize(model, recipe), lw.quantize_plan(model, plan)
        with torch.inference_mode():
            assert torch.equal(q(x, q.init_hidden(1))[0], s(x, s.init_hidden(1))[0])
    assert lw.plan_of(QuantRecipe(modules=("LSTM",)), model.config) == {
        "embedding": "fp32", "lstm.0": "int8", "lstm.1": "int8", "lstm.2": "int8", "decoder": "fp32"}


def test_a_plan_changes_only_its_parts_and_shares_the_rest(model):
    split = lw.SplitModel(model).eval()
    q = lw.quantize_plan(split, {"lstm.1": "int8", "decoder": "int8-per-channel"})
    assert q.encoder is split.encoder and q.rnn[0] is split.rnn[0] and q.rnn[2] is split.rnn[2]
    assert type(q.rnn[1]).__module__.startswith("torch.ao") and type(q.decoder).__module__.startswith("torch.ao")
    assert q.plan["lstm.1"] == "int8" and q.plan["lstm.0"] == "fp32"
    assert type(split.rnn[1]).__module__.startswith("torch.nn")                 # the split model is untouched
    nothing = lw.quantize_plan(split, {})
    assert all(nothing.part(p) is split.part(p) for p in lw.parts(model.config))


@pytest.mark.parametrize("plan,field", [({"lstm.9": "int8"}, "part must be one of"),
                                        ({"embedding": "int8"}, "embedding may be fp32, 8bit-rows"),
                                        ({"decoder": "int4"}, "decoder may be")])
def test_bad_plans_are_named(model, plan, field):
    with pytest.raises(ValueError, match=field):
        lw.quantize_plan(model, plan)


def test_sqnr_of_a_weight_against_itself_is_infinite_and_matches_the_closed_form():
    w = torch.randn(64, 32)
    assert lw.sqnr_db(w, w.clone()) == math.inf
    noise = 0.1 * torch.ones_like(w)                 # known perturbation: SQNR = 10 log10(sum w^2 / (n 0.01))
    expected = 10 * math.log10(float(w.double().square().sum()) / (w.numel() * 0.01))
    assert lw.sqnr_db(w, w + noise) == pytest.approx(expected, abs=1e-6)
    acc = lw.SqnrSum()
    for half in (w[:32], w[32:]):                    # summed over chunks: the same number
        acc.add(half, half + 0.1)
    assert acc.db == pytest.approx(expected, abs=1e-6) and lw.SqnrSum().db == math.inf


def test_weight_sqnr_reads_the_quantized_weights(model):
    split = lw.SplitModel(model).eval()
    q = lw.quantize_plan(split, {"lstm.0": "int8", "decoder": "int8", "embedding": "8bit-rows"})
    w = lw.weight_sqnr(split, q)
    assert w["lstm.1"]["all"] == math.inf and set(w["lstm.0"]) == {"weight_ih", "weight_hh", "all"}
    assert 20 < w["lstm.0"]["weight_ih"] < 60 and 20 < w["decoder"]["weight"] < 60 and w["embedding"]["all"] > 30
    with torch.no_grad():                            # rows of very different ranges, as a trained decoder's
        split.decoder.weight.mul_(torch.linspace(0.05, 1, split.decoder.weight.size(0)).unsqueeze(1))
    per_tensor = lw.weight_sqnr(split, lw.quantize_plan(split, {"decoder": "int8"}))["decoder"]["weight"]
    per_channel = lw.weight_sqnr(split, lw.quantize_plan(split, {"decoder": "int8-per-channel"}))["decoder"]["weight"]
    assert per_channel > per_tensor + 3                # a scale per row fits each row's range
    deq = lw.weights(q.part("decoder"))["weight"]
    assert deq.shape == model.decoder.weight.shape and len(torch.unique(deq)) <= 256
