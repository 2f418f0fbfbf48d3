import pytest

from wlm.bench import compare, format_table, generation_rate, machine_info
from wlm.quantize import quantize

from tests.conftest import signed


def test_compare_measures_both_models_on_the_same_tokens(tiny_model, tiny_corpus):
    calls = []
    rows = compare({"fp32": tiny_model, "qint8": quantize(tiny_model)}, tiny_corpus.test, max_tokens=120,
                   progress=lambda d, t: calls.append((d, t)))
    fp, q = rows
    assert (fp.model, q.model) == ("fp32", "qint8")
    assert fp.tokens == q.tokens == 119
    assert q.size_mb < fp.size_mb and set(q.modules_mb) == {"encoder", "rnn", "decoder"}
    assert fp.speedup == 1.0 and q.speedup == pytest.approx(fp.seconds / q.seconds)
    assert q.loss_change == pytest.approx(q.loss - fp.loss)
    assert calls[-1] == (119, 119) and all(d <= t for d, t in calls)      # test tokens, both models in lockstep
    assert fp.agreement is None and 0.5 < q.agreement.top1 <= 1
    table = format_table(rows)
    assert "qint8" in table and "top-1" in table and f"{q.agreement.overlap:8.4f}" in table


def test_generation_rate_and_machine_info(tiny_model, tiny_corpus):
    g = generation_rate(tiny_model, tiny_corpus.dictionary, words=20)
    assert g["words"] == 19 and g["words_per_s"] > 0
    assert g["ms_per_word"] == pytest.approx(1000 / g["words_per_s"])
    info = machine_info(1)
    assert info["threads"] == 1 and info["torch"].startswith("2.13")


def test_rows_carry_their_errors_and_intervals(tiny_model, tiny_corpus):
    """Every row: loss_se, loss_change_se (0 for fp32 against itself), speedup_ci holding the
    speed-up; the agreement's standard errors; all in to_dict (what a stored record keeps), and
    a record without them (stored before) still loads, shown without intervals."""
    from dataclasses import asdict

    from wlm.results import rows_of
    ids = tiny_corpus.test.repeat(8)
    fp, q = compare({"fp32": tiny_model, "qint8": quantize(tiny_model)}, ids, max_tokens=2001)
    assert fp.loss_change_se == 0.0 and fp.speedup_ci == [1.0, 1.0] and fp.loss_se > 0
    assert q.loss_change_se > 0 and q.speedup_ci[0] <= q.speedup <= q.speedup_ci[1]
    assert q.se_block_tokens == 100 and fp.ppl_se == pytest.approx(fp.ppl * fp.loss_se)
    d = q.to_dict()
    assert {"loss_se", "loss_change_se", "speedup_ci"} <= set(d)
    assert {"kl_mean_se", "top1_se", "overlap_se", "dp_rms_se"} <= set(d["agreement"])
    assert all(d["agreement"][k] > 0 for k in ("kl_mean_se", "overlap_se", "dp_rms_se"))
    table = format_table([fp, q])
    assert f"{signed(q.loss_change)} ± {q.loss_change_se:.4f}" in table and "batch means over blocks of 100" in table
    old = {"rows": []}
    for m in (fp, q):
        r = asdict(m)
        for k in ("loss_se", "ppl_se", "loss_change_se", "speedup_ci", "se_block_tokens"):
            r.pop(k)
        if r["agreement"]:
            r["agreement"] = {k: v for k, v in r["agreement"].items() if not k.endswith("_se") and k != "se_block_tokens"}
        old["rows"].append(r)
    loaded = rows_of(old)
    assert loaded[1].loss_change_se is None and loaded[1].agreement.kl_mean_se is None
    text = format_table(loaded)
    assert "±" not in text and signed(q.loss_change) in text


def test_bench_measures_a_model_alone_and_in_company(tiny_model, tiny_corpus):
    from wlm.bench import alone_lines, bench_models
    models = {"fp32": tiny_model, "qint8": quantize(tiny_model)}
    rows, speed, timing = bench_models(models, tiny_corpus.test, max_tokens=200, repeats=2, steps=5,
                                       alone=("qint8",))
    s = speed["qint8"]
    assert s["alone_tokens_per_s"]["n"] == s["w1_tokens_per_s"]["n"] == 2 and "alone_tokens_per_s" not in speed["fp32"]
    assert len(timing["wall_s"]) == 2 and timing["ratio_ci"] is None or len(timing["ratio_ci"]) == 2
    assert alone_lines(speed)[0].startswith("qint8: ") and "alone; in company / alone" in alone_lines(speed)[0]
    with pytest.raises(ValueError, match="alone: qint9 not among the models measured"):
        bench_models(models, tiny_corpus.test, max_tokens=200, repeats=1, alone=("qint9",))


def test_the_per_call_profile_times_one_and_25_tokens_and_the_decoders_share(tiny_model, tiny_corpus):
    from wlm.bench import call_lines, call_profile
    from wlm.layerwise import quantize_plan
    from wlm.quantize import quantize
    split = quantize_plan(tiny_model, {"embedding": "fp32", "lstm.0": "int8", "lstm.1": "fp32", "decoder": "int8"})
    calls = call_profile({"fp32": tiny_model, "qint8": quantize(tiny_model), "split": split}, tiny_corpus.test,
                         seconds=0.02)
    assert set(calls) == {"fp32", "qint8"}                        # a model split into layers is not profiled
    for by in calls.values():
        assert set(by) == {"1", "25"}
        assert all(c["ms_per_token"] > 0 and 0 < c["decoder_share"] < 1 and c["calls"] >= 1 for c in by.values())
    assert call_lines(calls)[0].startswith("fp32: 1 token per call ")
