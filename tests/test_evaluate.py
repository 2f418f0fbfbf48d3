import math

import pytest
import torch
import torch.nn.functional as F

from wlm.evaluate import evaluate


def reference_loss(model, ids, bptt):
    """The tutorial's loop written out: batch 1, hidden carried, loss weighted by chunk length."""
    data = ids.view(-1, 1)
    hidden = model.init_hidden(1)
    total = 0.0
    with torch.no_grad():
        for i in range(0, data.size(0) - 1, bptt):
            n = min(bptt, len(data) - 1 - i)
            out, hidden = model(data[i:i + n], hidden)
            total += n * F.cross_entropy(out.view(-1, out.size(-1)), data[i + 1:i + 1 + n].view(-1)).item()
    return total / (len(data) - 1)


def test_matches_the_tutorial_protocol(tiny_model, tiny_corpus):
    r = evaluate(tiny_model, tiny_corpus.test, bptt=25)
    assert r.loss == pytest.approx(reference_loss(tiny_model, tiny_corpus.test, 25), rel=1e-6)
    assert r.ppl == pytest.approx(math.exp(r.loss))
    assert r.tokens == len(tiny_corpus.test) - 1
    assert r.seconds > 0 and r.tokens_per_s == pytest.approx(r.tokens / r.seconds)


def test_carrying_hidden_state_matters(tiny_model, tiny_corpus):
    # Different chunking gives (slightly) different losses only if state is carried and detached right;
    # with state carried, bptt 1 and bptt 25 see the same history: losses agree.
    a = evaluate(tiny_model, tiny_corpus.test, bptt=1).loss
    b = evaluate(tiny_model, tiny_corpus.test, bptt=25).loss
    assert a == pytest.approx(b, rel=1e-5)


def test_max_tokens_threads_and_progress(tiny_model, tiny_corpus):
    calls = []
    before = torch.get_num_threads()
    r = evaluate(tiny_model, tiny_corpus.test, max_tokens=101, threads=1, progress=lambda d, t: calls.append((d, t)))
    assert r.tokens == 100
    assert r.loss == pytest.approx(reference_loss(tiny_model, tiny_corpus.test[:101], 25), rel=1e-6)
    assert calls[-1] == (100, 100) and len(calls) == 4
    assert torch.get_num_threads() == before


def test_leaves_training_mode_as_it_was(tiny_model, tiny_corpus):
    tiny_model.train()
    evaluate(tiny_model, tiny_corpus.test, max_tokens=50)
    assert tiny_model.training


@pytest.mark.parametrize("kw", [dict(max_tokens=1), dict(threads=0), dict(bptt=0)])
def test_bad_arguments(tiny_model, tiny_corpus, kw):
    with pytest.raises(ValueError):
        evaluate(tiny_model, tiny_corpus.test, **kw)


def test_lockstep_losses_match_each_model_alone(tiny_model, tiny_corpus):
    from wlm.evaluate import Comparison
    from wlm.quantize import quantize
    q = quantize(tiny_model)
    fp, qr = Comparison({"fp32": tiny_model, "qint8": q}, tiny_corpus.test).run()
    assert fp.loss == pytest.approx(evaluate(tiny_model, tiny_corpus.test).loss, rel=1e-6)
    assert qr.loss == pytest.approx(evaluate(q, tiny_corpus.test).loss, rel=1e-6)
    assert fp.agreement is None and qr.agreement is not None
    a = qr.agreement
    assert 0 < a.top1 <= 1 and 0 <= a.kl_median <= a.kl_p99 and 0 < a.overlap <= 1
    assert a.words_before_parting == pytest.approx(1 / (1 - a.overlap))
    n = len(a.kl_trace)
    assert 90 <= n <= 100 and n * a.trace_bin_tokens >= fp.tokens > (n - 1) * a.trace_bin_tokens


def test_a_model_agrees_perfectly_with_itself(tiny_model, tiny_corpus):
    from wlm.evaluate import Comparison
    _, same = Comparison({"a": tiny_model, "b": tiny_model}, tiny_corpus.test, max_tokens=300).run()
    a = same.agreement
    assert a.top1 == 1.0 and a.kl_mean == pytest.approx(0, abs=1e-6) and a.overlap == pytest.approx(1, abs=1e-5)
    assert a.dp_mean == 0 and a.dp_rms == 0


def test_agreement_metrics_match_their_definitions(tiny_model, tiny_corpus):
    """KL, overlap, top-1 and dp recomputed by hand from both models' logits over the same text."""
    from wlm.evaluate import Comparison
    from wlm.quantize import quantize
    with torch.no_grad():                           # sharpen the nearly uniform fresh model
        tiny_model.encoder.weight.mul_(30)
        tiny_model.decoder.weight.mul_(30)
    q = quantize(tiny_model)
    ids = tiny_corpus.test[:26]                     # one chunk of 25: one call per model, as the loop
    a = Comparison({"fp32": tiny_model, "q": q}, ids).run()[1].agreement
    x, y = ids[:-1].view(-1, 1), ids[1:]
    with torch.inference_mode():
        lp = torch.log_softmax(tiny_model(x, tiny_model.init_hidden(1))[0][:, 0], -1)
        lq = torch.log_softmax(q(x, q.init_hidden(1))[0][:, 0], -1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    assert float(kl.mean()) > 1e-5 and a.kl_mean == pytest.approx(float(kl.mean()), rel=1e-3)
    assert a.overlap == pytest.approx(float(1 - 0.5 * (lp.exp() - lq.exp()).abs().sum(-1).mean()), rel=1e-5)
    assert a.top1 == pytest.approx(float((lp.argmax(-1) == lq.argmax(-1)).double().mean()))
    dp = lq.exp()[range(25), y] - lp.exp()[range(25), y]
    assert a.dp_mean == pytest.approx(float(dp.mean()), abs=1e-7)


def test_step_runs_one_chunk_at_a_time(tiny_model, tiny_corpus):
    from wlm.evaluate import Comparison
    c = Comparison({"m": tiny_model}, tiny_corpus.test, max_tokens=101)
    seen = []
    while c.step():
        seen.append(c.tokens)
    assert seen == [(25, 100), (50, 100), (75, 100)] and c.done and c.tokens == (100, 100)
    assert not c.step()
    assert c.results()[0].loss == pytest.approx(reference_loss(tiny_model, tiny_corpus.test[:101], 25), rel=1e-6)


def test_agreement_memory_is_allocated_once_and_bounded(tiny_model, tiny_corpus):
    """On a long slice (the full test split's length, 245,569 tokens, of the tiny vocabulary)
    with two variants, stepping allocates nothing that grows with the text: Python's heap stays
    within 64 KB over 2,000 chunks, and the per-token arrays hold 13 bytes a token a variant."""
    import gc
    import tracemalloc

    from wlm.evaluate import Comparison
    from wlm.quantize import quantize
    ids = tiny_corpus.test.repeat(245_569 // len(tiny_corpus.test) + 1)[:245_569]
    c = Comparison({"fp32": tiny_model, "a": quantize(tiny_model), "b": tiny_model}, ids)
    for _ in range(10):                              # first chunks: scratch buffers, caches
        c.step()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            c.step()
        gc.collect()                                 # what torch's modules leave in cycles is not ours
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64_000, grown
    assert c.agreement_nbytes == 2 * 13 * 245_568
    r = c.results()[1]
    assert r.tokens == 2010 * 25 and 0 < r.agreement.top1 <= 1
