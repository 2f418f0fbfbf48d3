import math
import time

import numpy as np
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
    assert calls[-1] == (100, 100) and all(d <= t == 100 for d, t in calls)
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
    assert a.words_before_parting == pytest.approx(a.overlap / (1 - a.overlap))
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


def test_step_runs_one_model_over_one_block(tiny_model, tiny_corpus):
    from wlm.evaluate import Comparison
    c = Comparison({"m": tiny_model}, tiny_corpus.test, max_tokens=101, block_chunks=1)
    seen = []
    while c.step():
        seen.append(c.tokens)
    assert seen == [(25, 100), (50, 100), (75, 100)] and c.done and c.tokens == (100, 100)
    assert not c.step()
    assert c.results()[0].loss == pytest.approx(reference_loss(tiny_model, tiny_corpus.test[:101], 25), rel=1e-6)
    # two models, blocks of 2 chunks (50 tokens): a block is done once both have run it
    two = Comparison({"a": tiny_model, "b": tiny_model}, tiny_corpus.test, max_tokens=101, block_chunks=2)
    seen = []
    while two.step():
        seen.append(two.tokens)
    assert seen == [(0, 100), (50, 100), (50, 100)] and two.tokens == (100, 100)


def test_blocks_change_the_order_of_the_calls_not_the_figures(tiny_model, tiny_corpus):
    """Each model runs blocks of chunks, the reference's block kept for the agreement metrics: the
    losses, per-token losses and agreement are exactly those of chunk-by-chunk lockstep."""
    from wlm.evaluate import Comparison
    from wlm.quantize import quantize
    with torch.no_grad():
        tiny_model.decoder.weight.mul_(30)
    models = {"fp32": tiny_model, "q": quantize(tiny_model), "again": tiny_model}
    ids = tiny_corpus.test.repeat(3)
    runs = [Comparison(models, ids, max_tokens=700, block_chunks=b) for b in (1, 3, 8)]
    res = [c.run() for c in runs]
    for c, r in zip(runs[1:], res[1:]):
        for k in range(3):
            assert r[k].loss == res[0][k].loss and r[k].tokens == res[0][k].tokens == 699
            assert np.array_equal(c.token_loss[c.names[k]], runs[0].token_loss[c.names[k]])
        for name in ("q", "again"):
            for key in ("kl", "overlap", "top1", "dp"):
                assert np.array_equal(c.per_token[name][key], runs[0].per_token[name][key]), (name, key)
    assert res[0][1].agreement.kl_mean > 1e-6


class SlowFirstCall(torch.nn.Module):
    """A model whose first call takes 0.3 s (as an ONNX Runtime session is made at its first
    call); counts its calls."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def init_hidden(self, bsz):
        return self.model.init_hidden(bsz)

    def forward(self, x, hidden):
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.3)
        return self.model(x, hidden)


def test_each_model_is_warmed_untimed_before_its_first_timed_chunk(tiny_model, tiny_corpus):
    """A live Measure (the app steps a Comparison) times no first-call start-up: one untimed
    call per model, then the timed chunks; without the warm-up the 0.3 s land in the model's time."""
    from wlm.evaluate import Comparison
    slow = SlowFirstCall(tiny_model)
    c = Comparison({"fp32": tiny_model, "slow": slow}, tiny_corpus.test, max_tokens=101)
    while not c.done:
        c.step()                                  # as wlm.app does, one step per CPU turn
    assert slow.calls == 1 + 4                    # the warm-up and the four timed chunks
    assert c.seconds["slow"] < 0.1 and c.warm_seconds["slow"] >= 0.3 and c.wall < 0.25
    fp, r = c.results()
    assert r.loss == fp.loss                      # the warm-up call changed no hidden state
    cold = SlowFirstCall(tiny_model)              # the control: no warm-up
    c = Comparison({"fp32": tiny_model, "slow": cold}, tiny_corpus.test, max_tokens=101, warm=False)
    c.run()
    assert cold.calls == 4 and c.seconds["slow"] >= 0.3


def test_every_figure_has_a_standard_error_by_batch_means(tiny_model, tiny_corpus):
    """Per-token losses sum to the loss; the errors are wlm.stats' batch means over the per-token
    arrays; a model against itself has a paired loss change error of exactly 0."""
    from wlm import stats
    from wlm.evaluate import Comparison
    from wlm.quantize import quantize
    ids = tiny_corpus.test.repeat(11)[:3001]
    c = Comparison({"fp32": tiny_model, "q": quantize(tiny_model), "same": tiny_model}, ids)
    fp, q, same = c.run()
    b = stats.block_tokens(3000)
    assert fp.se_block_tokens == b == 150 and q.agreement.se_block_tokens == b
    assert c.token_loss["fp32"].astype(np.float64).mean() == pytest.approx(fp.loss, rel=1e-6)
    assert fp.loss_se == pytest.approx(stats.batch_means_se(c.token_loss["fp32"], b)) and fp.loss_se > 0
    assert fp.ppl_se == pytest.approx(fp.ppl * fp.loss_se)
    assert c.loss_change_se("same") == 0.0 and c.loss_change_se("q") > 0
    a = q.agreement
    assert a.kl_mean_se == pytest.approx(stats.batch_means_se(c.per_token["q"]["kl"].clip(0), b), rel=1e-6)
    assert all(v is not None and v >= 0 for v in (a.top1_se, a.overlap_se, a.dp_mean_se, a.dp_rms_se))
    lo, hi = c.speedup_ci("q")
    assert lo <= fp.seconds / q.seconds <= hi
    ratio, lo, hi = c.cost_ci()
    assert lo <= c.wall / sum(c.seconds.values()) * 1.001 and ratio >= 1 and lo <= ratio <= hi
    cov = c.metric_cov(["q", "same"])
    assert cov.shape == (2, 2) and cov[0, 0] == pytest.approx(a.kl_mean_se ** 2, rel=1e-3) and cov[1, 1] == 0


def test_words_before_parting_counts_the_identical_words_not_the_first_difference():
    """Coupled samples that agree at each step with probability o: the identical words before the
    first difference are geometric with mean o / (1 - o) (simulated here); 1 / (1 - o) counts the
    differing word too, one too many. A record stored with the old figure reads the new one."""
    from wlm.evaluate import Agreement, words_before_parting
    rng = np.random.default_rng(0)
    for o in (0.5, 0.9, 0.9643):
        identical = rng.geometric(1 - o, 200_000) - 1         # failures before the first "part"
        assert words_before_parting(o) == pytest.approx(identical.mean(), rel=0.02)
        assert abs(1 / (1 - o) - identical.mean()) > 0.9
    old = Agreement(top1=0.95, kl_mean=0.004, kl_median=0.004, kl_p99=0.01, overlap=0.75,
                    words_before_parting=4.0, dp_mean=0.0, dp_rms=0.01)
    assert old.words_before_parting == 3.0 and old.kl_mean_se is None


def test_agreement_memory_is_allocated_once_and_bounded(tiny_model, tiny_corpus):
    """On a long slice (the full test split's length, 245,569 tokens, of the tiny vocabulary)
    with two variants, stepping allocates nothing that grows with the text: Python's heap stays
    within 64 KB over 600 steps (40,000 tokens), the per-token arrays hold 13 bytes a token a variant and 4
    (the loss) a model, and the reference's log-probs are kept for one block only."""
    import gc
    import tracemalloc

    from wlm.evaluate import Comparison
    from wlm.quantize import quantize
    ids = tiny_corpus.test.repeat(245_569 // len(tiny_corpus.test) + 1)[:245_569]
    c = Comparison({"fp32": tiny_model, "a": quantize(tiny_model), "b": tiny_model}, ids)
    for _ in range(12):                              # first blocks: scratch buffers, caches
        c.step()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(600):                         # 200 blocks of 8 chunks, each model
            c.step()
        gc.collect()                                 # what torch's modules leave in cycles is not ours
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64_000, grown
    assert c.agreement_nbytes == 2 * 13 * 245_568
    block = 8 * 25 * len(tiny_corpus.dictionary) * 4               # a block of log-probs: the reference's,
    per_chunk = 2 * 8 * 3 * (245_568 // 25 + 1)                    # and the others' in turn; seconds and
    assert c.nbytes == 2 * 13 * 245_568 + 3 * 4 * 245_568 + per_chunk + 2 * block   # loss per chunk and model
    r = c.results()[1]                                             # 612 steps of one model's block: 204 blocks
    assert r.tokens == 204 * 8 * 25 and 0 < r.agreement.top1 <= 1


def test_each_model_runs_its_block_of_chunks_in_a_row(tiny_model, tiny_corpus):
    """The call order that keeps a model's caches warm: the reference's block first, then each
    other model's whole block, the others' order reversed every other block."""
    from wlm.evaluate import Comparison
    order = []

    class Named(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def init_hidden(self, bsz):
            return tiny_model.init_hidden(bsz)

        def forward(self, x, hidden):
            order.append(self.name)
            return tiny_model(x, hidden)
    c = Comparison({n: Named(n) for n in ("ref", "a", "b")}, tiny_corpus.test, max_tokens=201, block_chunks=4,
                   warm=False)
    c.run()
    assert order == ["ref"] * 4 + ["a"] * 4 + ["b"] * 4 + ["ref"] * 4 + ["b"] * 4 + ["a"] * 4


def test_identical_models_never_part_and_the_tables_say_so():
    """A model against an exact copy of itself has overlap 1: its samples never part. The tables
    say "never", not the cap's number."""
    from wlm.evaluate import NEVER_PARTS, fmt_parting, words_before_parting
    assert words_before_parting(1.0) == NEVER_PARTS
    assert fmt_parting(words_before_parting(1.0), NEVER_PARTS) == "never"
    assert fmt_parting(words_before_parting(0.9643), 0.2) == "27.0 ± 0.2"
