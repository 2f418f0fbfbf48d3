"""Where int8 loses (wlm.inspection) on the tiny model, and time per part on the shipped one."""
import math

import pytest
import torch

from tests.conftest import SHIPPED_CHECKPOINT, sharpen
from wlm.inspection import Inspection, alone_parts
from wlm.variants import VariantCache


@pytest.fixture
def ckpt(tmp_path, tiny_corpus):
    from wlm.checkpoint import load_checkpoint, save_checkpoint
    from wlm.model import LSTMModel, ModelConfig
    torch.manual_seed(0)
    m = LSTMModel(ModelConfig(len(tiny_corpus.dictionary), ninp=16, nhid=12, nlayers=2))
    sharpen(m)
    return load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", m, tiny_corpus.dictionary))


def run(ckpt, variant, ids, tokens=300):
    ins = Inspection(ckpt.model, VariantCache(ckpt, ckpt.path.parent).get(variant), ids, max_tokens=tokens)
    seen = []
    while ins.step():
        seen.append(ins.tokens)
    assert seen == sorted(seen) and ins.done
    return ins.report()


def test_the_report_has_every_part_and_the_documented_keys(ckpt, tiny_corpus):
    r = run(ckpt, "qint8", tiny_corpus.test)
    assert [m["module"] for m in r["modules"]] == ["embedding", "lstm.0", "lstm.1", "decoder"]
    keys = {"module", "weight_sqnr_db", "shadow_sqnr_db", "running_sqnr_db", "alone_dloss", "alone_kl", "alone_top1"}
    assert all(keys <= set(m) for m in r["modules"])
    emb, l0, l1, dec = r["modules"]
    assert emb["option"] == "fp32" and emb["weight_sqnr_db"] is None and emb["running_sqnr_db"] is None  # exact
    assert all(10 < m[k] < 80 for m in (l0, l1, dec) for k in ("weight_sqnr_db", "shadow_sqnr_db", "running_sqnr_db"))
    assert {(s["part"], s["option"]) for s in r["sensitivity"]} == set(alone_parts(ckpt.model.config))
    assert set(r["time"]) == {"fp32", "qint8"} and r["tokens"] == min(300, len(tiny_corpus.test)) - 1
    assert set(r["time"]["fp32"]["parts"]) == {"embedding", "lstm", "decoder", "log-softmax and loss",
                                                "rest of the forward"}
    assert r["part_sizes_mb"]["decoder"]["int8"] < r["part_sizes_mb"]["decoder"]["fp32"]


def test_quantizing_nothing_gives_zero_sensitivity_and_infinite_sqnr(ckpt, tiny_corpus):
    """The fp32 variant taken apart: every part is exact, and the end-to-end change is nothing."""
    from wlm.evaluate import Comparison
    from wlm.layerwise import quantize_plan
    nothing = quantize_plan(ckpt.model, {})
    ref, same = Comparison({"fp32": ckpt.model, "nothing": nothing}, tiny_corpus.test, max_tokens=300).run()
    assert same.loss == ref.loss and same.agreement.kl_mean == 0 and same.agreement.top1 == 1
    r = run(ckpt, "qint8-per-channel", tiny_corpus.test)            # and a part left alone is exact too
    emb = r["modules"][0]
    assert emb["option"] == "fp32" and emb["shadow_sqnr_db"] is None and emb["weight_sqnr_db"] is None


def test_an_onnx_runtime_variant_gets_time_from_its_profiler_and_says_why_no_errors(ckpt, tiny_corpus):
    r = run(ckpt, "ort-int8", tiny_corpus.test, tokens=200)
    assert r["plan"] is None and "ONNX Runtime quantizes its own graph" in r["note"]
    assert all(m["weight_sqnr_db"] is None and m["alone_kl"] >= 0 for m in r["modules"])
    parts = r["time"]["ort-int8"]["parts"]
    assert parts["lstm"] > 0 and parts["decoder"] > 0 and parts["embedding"] > 0       # the profiler's nodes


def test_the_mixed_variant_is_taken_apart_by_its_own_plan(ckpt, tiny_corpus, tmp_path, monkeypatch):
    import json

    from wlm import variants
    plan = {"embedding": "8bit-rows", "lstm.0": "int8", "lstm.1": "fp32", "decoder": "int8-per-channel"}
    f = tmp_path / "recipe.json"
    f.write_text(json.dumps({"format": "wlm-recipe/1", "plan": plan}))
    monkeypatch.setitem(variants.VARIANTS, "qint8-mixed",
                        variants.VariantSpec("qint8-mixed", "torch", "test", variants.PlanFile(f)))
    r = run(ckpt, "qint8-mixed", tiny_corpus.test, tokens=200)
    assert r["plan"] == plan and r["modules"][2]["weight_sqnr_db"] is None and r["modules"][1]["weight_sqnr_db"] > 10
    assert all(r["time"]["qint8-mixed"]["parts"][p] > 0 for p in ("embedding", "lstm", "decoder"))   # split LSTM timed


@pytest.mark.wikitext
@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped checkpoint")
def test_the_time_per_part_adds_up_to_the_models_time(wikitext):
    """The shipped checkpoint on its first 500 test tokens: embedding + LSTM + decoder + log-softmax
    and loss, each timed on its own, are within 10% of each torch model's measured time. ONNX
    Runtime's profiler times its kernels only; the rest of its forward is named as such."""
    from wlm.checkpoint import load_checkpoint
    from wlm.data import load_split
    ck = load_checkpoint(SHIPPED_CHECKPOINT)
    ids = load_split(wikitext, "test", ck.dictionary)
    for variant in ("qint8", "ort-int8"):
        r = Inspection(ck.model, VariantCache(ck, None).get(variant), ids, max_tokens=500)
        while r.step():
            pass
        for name, t in r.report()["time"].items():
            assert math.isclose(sum(t["parts"].values()), t["total"], rel_tol=1e-9)
            if name.startswith("ort-"):
                assert t["parts"]["session and copies"] >= 0 and t["parts"]["decoder"] > 0
                continue
            named = sum(v for k, v in t["parts"].items() if k != "rest of the forward")
            assert abs(named - t["total"]) <= 0.10 * t["total"], (variant, name, t)


def test_the_recipe_derived_from_a_tiny_model_follows_its_known_ranking(tmp_path, tiny_corpus):
    """A tiny model whose decoder has one row 100x larger than the rest (per tensor, its scale
    leaves the other rows a few levels; per channel, each row keeps its own scale): under a
    budget that forces the decoder into int8, the rule picks per channel; with room, fp32."""
    from wlm.checkpoint import load_checkpoint, save_checkpoint
    from wlm.model import LSTMModel, ModelConfig
    from wlm.recipe import derive
    torch.manual_seed(0)
    m = LSTMModel(ModelConfig(len(tiny_corpus.dictionary), ninp=16, nhid=64, nlayers=2))
    sharpen(m)
    with torch.no_grad():
        m.decoder.weight[0].mul_(100)
    ck = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", m, tiny_corpus.dictionary))
    r = run(ck, "qint8", tiny_corpus.test)
    kl = {(s["part"], s["option"]): s["kl"] for s in r["sensitivity"]}
    assert kl[("decoder", "int8")] > 3 * kl[("decoder", "int8-per-channel")]        # the known ranking
    sizes = r["part_sizes_mb"]
    fp32_decoder = r["size_overhead_mb"] + sum(min(v.values()) for p, v in sizes.items() if p != "decoder") \
        + sizes["decoder"]["fp32"]
    tight = derive(r, budget_mb=fp32_decoder - 0.001, overhead_mb=r["size_overhead_mb"])
    assert tight["plan"]["decoder"] == "int8-per-channel"
    roomy = derive(r, budget_mb=1e6, overhead_mb=r["size_overhead_mb"])
    assert set(roomy["plan"].values()) == {"fp32"} and roomy["predicted_kl"] == 0


def test_every_single_part_effect_has_its_error_and_the_ranking_says_what_is_distinguishable(ckpt, tiny_corpus):
    from wlm.inspection import noise_text
    r = run(ckpt, "qint8", tiny_corpus.test.repeat(4), tokens=1000)
    for m in r["modules"]:
        s = next(s for s in r["sensitivity"] if (s["part"], s["option"]) == (m["module"], m["alone_option"]))
        assert m["alone_dloss_se"] == s["dloss_se"] > 0 and m["alone_kl_se"] == s["kl_se"] > 0
    assert r["se_block_tokens"] == 49 and r["end_to_end"]["dloss_se"] > 0
    cov = r["sensitivity_kl_cov"]
    assert len(cov) == len(r["sensitivity"]) and all(cov[k][k] == pytest.approx(s["kl_se"] ** 2, rel=1e-3)
                                                     for k, s in enumerate(r["sensitivity"]))
    ranking = r["kl_ranking"]
    assert [e["kl"] for e in ranking] == sorted((s["kl"] for s in r["sensitivity"]), reverse=True)
    assert ranking[-1]["above_next"] is None and all(e["distinct_from_next"] in (True, False) for e in ranking[:-1])
    assert "largest first" in noise_text(r) and "± " in noise_text(r)
    assert "stored before" in noise_text({"modules": []})


def test_the_analysis_times_no_first_call(ckpt, tiny_corpus):
    """Each model is called once, untimed, before its timed chunks, and the part timers skip that
    call: a decoder whose first call takes 0.3 s shows none of it."""
    import time as _time
    import types
    decoder, calls = ckpt.model.decoder, []

    def slow_first(self, x):                      # bound, so the analysis' copies of the part stay fast
        if self is decoder:
            calls.append(1)
            if len(calls) == 1:
                _time.sleep(0.3)
        return torch.nn.Linear.forward(self, x)
    decoder.forward = types.MethodType(slow_first, decoder)
    ins = Inspection(ckpt.model, VariantCache(ckpt, ckpt.path.parent).get("qint8"), tiny_corpus.test, max_tokens=200)
    timers = ins.timers["fp32"]
    while ins.step():
        pass
    assert len(calls) == 1 + 8 and ins.comparison.warm_seconds["fp32"] >= 0.3
    assert timers.seconds["decoder"] < 0.1 and ins.report()["time"]["fp32"]["total"] < 0.1


def test_the_onnx_runtime_profile_leaves_out_the_warm_up_run(tmp_path):
    import json

    from wlm.inspection import ort_part_seconds
    node = (lambda ts, dur, part: {"cat": "Node", "name": f"/{part}/MatMul_kernel_time", "ts": ts, "dur": dur})  # noqa: E731
    events = [{"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 90_000},
              {"cat": "Session", "name": "model_run", "ts": 100_000, "dur": 50_000},
              node(100_010, 40_000, "decoder"), node(140_020, 5_000, "rnn"),               # the warm-up: slow
              {"cat": "Session", "name": "model_run", "ts": 200_000, "dur": 3_000},
              node(200_010, 2_000, "decoder"), node(202_020, 900, "rnn")]
    f = tmp_path / "profile.json"
    f.write_text(json.dumps(events))
    assert ort_part_seconds(str(f), skip_runs=1) == pytest.approx(
        {"embedding": 0.0, "lstm": 0.0009, "decoder": 0.002, "other nodes": 0.0})
    assert ort_part_seconds(str(f))["decoder"] == pytest.approx(0.042)
