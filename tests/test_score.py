"""Scoring a user's text (wlm.score): checked against the tutorial's own model class on the shipped
checkpoint, a model against itself, bad input, the JSON and report, and the command-line entry.

Tolerances: log-probabilities agree within 1e-3 nats with the independent computation (float32
sums in another order, and int8 kernels); KL within 1e-4 nats."""
import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file

from tests.conftest import SHIPPED_CHECKPOINT
from tests.tutorial_model import LSTMModel as TutorialLSTMModel
from wlm import stats
from wlm.checkpoint import load_checkpoint
from wlm.quantize import quantize
from wlm.score import (CHUNK, MAX_SCORE_CHARS, format_report, score,
                       to_json)
from wlm.variants import VariantCache

TOL_LOGP = 1e-3
TOL_KL = 1e-4

# Written for this test in WikiText-2's spelling (not taken from it): 94 words, all in the vocabulary,
# so that the text crosses a chunk boundary (CHUNK = 64) and the hidden state must carry over.
WIKI_STYLE = (
    "The church was built in the early 19th century , and was later extended to the east by the architect "
    "of the new town hall . In 1912 the tower was damaged by a fire , and the roof of the nave was replaced "
    "with one of iron and glass . The building was used as a school during the First World War , and it "
    "was returned to the parish in 1920 . It is now a listed building , and services are held there on "
    "the first Sunday of each month .")

shipped = pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped checkpoint in data/")


# ---------------------------------------------------------------- against the tutorial's model class
@pytest.fixture(scope="module")
def tutorial():
    """The tutorial's model class loaded strictly from the shipped safetensors file (not through
    wlm.checkpoint), its quantize_dynamic copy as the tutorial makes it, and the vocabulary."""
    if not SHIPPED_CHECKPOINT.is_file():
        pytest.skip("no shipped checkpoint in data/")
    with safe_open(str(SHIPPED_CHECKPOINT), framework="pt") as f:
        meta = f.metadata()
    cfg, vocab = json.loads(meta["config"]), json.loads(meta["vocab"])
    model = TutorialLSTMModel(cfg["ntoken"], cfg["ninp"], cfg["nhid"], cfg["nlayers"], cfg["dropout"])
    model.load_state_dict(load_file(str(SHIPPED_CHECKPOINT)), strict=True)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # torch.ao.quantization's notice of its move to torchao
        qmodel = torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
    return model, qmodel, vocab


@pytest.fixture(scope="module")
def wlm_models():
    ckpt = load_checkpoint(SHIPPED_CHECKPOINT)
    cache = VariantCache(ckpt)
    return ckpt, {"fp32": cache.get("fp32").model, "qint8": cache.get("qint8").model}


@torch.no_grad()
def tutorial_logp(model, ids: list[int], eos: int, chunk: int | None) -> torch.Tensor:
    """(n, V) log-probabilities of the words ``ids``, word k predicted from <eos> and the words
    before it; in calls of ``chunk`` words (None: one call) with the hidden state carried over."""
    inputs = torch.tensor([eos] + ids[:-1]).view(-1, 1)        # (n, 1)
    hidden, out = model.init_hidden(1), []
    for i in range(0, len(ids), chunk or len(ids)):
        logits, hidden = model(inputs[i:i + (chunk or len(ids))], hidden)    # (T, 1, V)
        out.append(torch.log_softmax(logits[:, 0], dim=-1))
    return torch.cat(out)


@shipped
def test_logp_equal_the_tutorial_models_on_the_same_ids(tutorial, wlm_models):
    model, qmodel, vocab = tutorial
    ckpt, models = wlm_models
    w2i = {w: i for i, w in enumerate(vocab)}
    ids = [w2i[w] for w in WIKI_STYLE.split()]                 # every word is in the vocabulary
    assert len(ids) > CHUNK
    r = score(models, ckpt.dictionary, WIKI_STYLE)
    assert r.tokens == WIKI_STYLE.split() and r.unknown == []
    ref = tutorial_logp(model, ids, w2i["<eos>"], None)        # fp32: one call over the whole text
    q = tutorial_logp(qmodel, ids, w2i["<eos>"], CHUNK)        # int8: scales per call, so the same chunks
    y = torch.tensor(ids).view(-1, 1)
    want_ref, want_q = ref.gather(1, y).view(-1), q.gather(1, y).view(-1)
    assert len(r.models["fp32"].logp) == len(ids)              # every word, the first one too
    np.testing.assert_allclose(r.models["fp32"].logp, want_ref.numpy(), atol=TOL_LOGP, rtol=0)
    np.testing.assert_allclose(r.models["qint8"].logp, want_q.numpy(), atol=TOL_LOGP, rtol=0)
    np.testing.assert_allclose(r.dlogp, (want_q - want_ref).numpy(), atol=TOL_LOGP, rtol=0)
    kl = (ref.exp() * (ref - q)).sum(-1)
    np.testing.assert_allclose(r.kl, kl.numpy(), atol=TOL_KL, rtol=0)
    assert r.top1 == pytest.approx(float((ref.argmax(-1) == q.argmax(-1)).double().mean()))
    loss = -float(want_ref.double().mean())
    assert r.models["fp32"].loss == pytest.approx(loss, abs=TOL_LOGP)
    assert r.models["fp32"].ppl == pytest.approx(math.exp(r.models["fp32"].loss))


def test_ort_int8_agrees_with_its_own_session(tiny_checkpoint, tmp_path):
    """The ONNX Runtime variant through the model interface equals a plain session run of its file."""
    ort = pytest.importorskip("onnxruntime")
    ckpt = load_checkpoint(tiny_checkpoint)
    cache = VariantCache(ckpt, tmp_path / "cache")
    text = " ".join(f"w{i % 36}" for i in range(100))
    variant = cache.get("ort-int8").model
    r = score({"fp32": ckpt.model, "ort-int8": variant}, ckpt.dictionary, text)
    ids = ckpt.dictionary.encode(text).ids
    sess = ort.InferenceSession(str(variant.path), providers=["CPUExecutionProvider"])
    cfg = ckpt.model.config
    h = c = np.zeros((cfg.nlayers, 1, cfg.nhid), np.float32)
    x = np.array([ckpt.dictionary.word2idx["<eos>"]] + ids[:-1], np.int64).reshape(-1, 1)
    want = []
    for i in range(0, len(ids), CHUNK):
        logits, h, c = sess.run(None, {"ids": x[i:i + CHUNK], "h0": h, "c0": c})
        want.append(torch.log_softmax(torch.from_numpy(logits).reshape(len(x[i:i + CHUNK]), -1), -1))
    want = torch.cat(want).gather(1, torch.tensor(ids).view(-1, 1)).view(-1)
    np.testing.assert_allclose(r.models["ort-int8"].logp, want.numpy(), atol=TOL_LOGP, rtol=0)


# ---------------------------------------------------------------- properties
def test_a_model_against_itself_has_zero_kl_and_dlogp(tiny_model, tiny_corpus):
    text = "w1 w2 , w3 @-@ w4 . w5 zebra w6 " * 12
    r = score({"a": tiny_model, "b": tiny_model}, tiny_corpus.dictionary, text)
    assert len(r.kl) == len(r.tokens) > CHUNK
    assert max(abs(k) for k in r.kl) < 1e-6
    assert r.dlogp == [0.0] * len(r.tokens)
    assert r.top1 == 1.0
    assert r.models["a"].loss == r.models["b"].loss


def test_unknown_words_are_read_as_unk_and_listed(tiny_model, tiny_corpus):
    r = score({"fp32": tiny_model, "q": quantize(tiny_model)}, tiny_corpus.dictionary, "w1 zebra w2 Okapi")
    assert r.tokens == ["w1", "<unk>", "w2", "<unk>"]
    assert r.words == ["w1", "zebra", "w2", "Okapi"]
    assert r.unknown == ["zebra", "Okapi"]


def test_loss_standard_error_is_wlm_stats_batch_means(tiny_model, tiny_corpus):
    r = score({"fp32": tiny_model, "q": quantize(tiny_model)}, tiny_corpus.dictionary, "w1 w2 w3 , w4 . " * 20)
    for m in r.models.values():
        nll = -np.asarray(m.logp)
        assert m.loss_se == stats.batch_means_se(nll, stats.block_tokens(len(nll))) > 0
        assert m.ppl_se == pytest.approx(m.ppl * m.loss_se)
    one = score({"fp32": tiny_model, "q": tiny_model}, tiny_corpus.dictionary, "w1")
    assert one.models["fp32"].loss_se is None and "±" not in format_report(one)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("text,message", [
    ("", "text is empty"),
    ("  \n\t ", "text is empty"),
    ("w1 " * (MAX_SCORE_CHARS // 3 + 1), "limit is MAX_SCORE_CHARS = 2,000 characters"),
    ("zebra okapi", "nothing the models know to score"),
    (5, "text must be a string, got int"),
    (None, "text must be a string, got NoneType"),
    (["w1", "w2"], "text must be a string, got list"),
])
def test_bad_text_is_a_clear_error(tiny_model, tiny_corpus, text, message):
    with pytest.raises(ValueError, match="^text ") as e:
        score({"fp32": tiny_model, "b": tiny_model}, tiny_corpus.dictionary, text)
    assert message in str(e.value)


def test_the_limit_itself_is_accepted(tiny_model, tiny_corpus):
    text = ("w1 w2 " * MAX_SCORE_CHARS)[:MAX_SCORE_CHARS]
    assert len(score({"fp32": tiny_model, "b": tiny_model}, tiny_corpus.dictionary, text).tokens) == 667


# ---------------------------------------------------------------- output
def test_json_and_report(tiny_model, tiny_corpus):
    qmodel = quantize(tiny_model)
    r = score({"fp32": tiny_model, "qint8": qmodel}, tiny_corpus.dictionary, "w3 w4 , w5 zebra . " * 5)
    out = json.loads(json.dumps(to_json(r)))
    assert set(out) == {"tokens", "models", "per_word", "unknown", "top1", "kl_mean"}
    assert list(out["models"]) == ["fp32", "qint8"]
    for m in out["models"].values():
        assert len(m["logp"]) == len(out["tokens"]) == 30
        assert m["ppl"] == pytest.approx(math.exp(m["loss"])) and m["loss_se"] > 0
        assert m["loss"] == pytest.approx(-np.mean(m["logp"]))
    assert [w["word"] for w in out["per_word"]] == r.words and out["unknown"] == ["zebra"] * 5
    assert out["kl_mean"] == pytest.approx(np.mean([w["kl"] for w in out["per_word"]]))
    report = format_report(r)
    for name, m in r.models.items():
        assert f"{m.ppl:.1f} ± {m.ppl * m.loss_se:.1f}" in report and f"{m.loss:.3f} ± {m.loss_se:.3f}" in report
    assert f"({r.top1:.1%})" in report and f"{r.kl_mean:.4f}" in report
    changed = report.split("changed most:")[1].strip().splitlines()[1:11]
    assert [line.split()[0] for line in changed] == [r.words[i] for i in r.most_changed()]
