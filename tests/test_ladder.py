"""wlm.ladder and the low-bit recipe it chooses (wlm.recipe): each rung against the tutorial's
protocol run independently, the front against every plan, and the command line."""
import itertools
import json

import pytest

from wlm import recipe as rc
from wlm.evaluate import Comparison
from wlm.gptq import Calibration
from wlm.ladder import Ladder, Rung, format_ladder, rung_table, rungs
from wlm.lowbit import quantize_model
from wlm.results import make_ladder_record


@pytest.fixture
def ladder_record(small_model, tiny_corpus):
    """A small ladder of every part of the small model at 4 and 2 bits, per row, rtn and gptq."""
    cal = Calibration.collect(small_model, tiny_corpus.train, max_tokens=2000)
    todo = rungs(small_model.config, bits=(4, 2), groups=(None,), roundings=("rtn", "gptq"))
    lad = Ladder(small_model, tiny_corpus.test, todo, cal.hessians, max_tokens=300, call_tokens=70,
                 vocab=tiny_corpus.dictionary.idx2word, in_flight=3)
    while lad.step():
        pass
    return make_ladder_record(split="test", slice_label="300 tokens", ladder=lad, machine={"cpu": "test"},
                              checkpoint_sha256="00" * 32, data_sha256="11" * 32, calibration={"sha256": "22"},
                              source="test", threads=1), lad, cal


def test_the_rungs_are_every_part_each_width_and_rounding_but_no_gptq_embedding(small_model):
    rs = rungs(small_model.config, bits=(4, 2), groups=(None, 32))
    parts = {r.part for r in rs}
    assert parts == {"embedding", "lstm.0", "lstm.1", "decoder", "all"}
    assert not any(r.part == "embedding" and r.rounding == "gptq" for r in rs)
    assert len(rs) == 2 * 2 * (2 + 3 * 4)              # bits x groups x (embedding 2 roundings + 4 parts x 3)
    with pytest.raises(ValueError, match="parts must be among"):
        rungs(small_model.config, parts=["lstm.7"])


def test_each_rung_is_what_the_tutorials_protocol_gives_its_model(ladder_record, small_model, tiny_corpus):
    """Every rung's KL, top-1 and loss change equal a Comparison (bptt 25, batch 1) of fp32 and that
    rung's dequantized model on the same tokens (fp32 arithmetic: only float rounding differs)."""
    record, lad, cal = ladder_record
    assert len(record["rungs"]) == 2 * (2 + 4 * 2) and record["tokens"] == min(300, len(tiny_corpus.test)) - 1
    for r in record["rungs"][::3]:
        rung = Rung(r["part"], r["bits"], r["group"], r["rounding"])
        model, quantized = quantize_model(small_model, rung.recipe(2), cal.hessians)
        c = Comparison({"fp32": small_model, "q": model}, tiny_corpus.test, max_tokens=300)
        fp, q = c.run(threads=1)
        assert r["kl"] == pytest.approx(q.agreement.kl_mean, rel=1e-3, abs=1e-6), rung
        assert r["top1"] == pytest.approx(q.agreement.top1, abs=1 / record["tokens"] + 1e-9), rung
        assert r["dloss"] == pytest.approx(q.loss - fp.loss, rel=1e-3, abs=1e-5), rung
        assert r["kl_se"] is not None and r["kl_se"] > 0
    table = rung_table(record, "rtn", None)
    assert table["decoder"][2]["kl"] > table["decoder"][4]["kl"] > 0          # fewer bits, more KL
    assert table["all"][2]["file_mb"] < table["decoder"][2]["file_mb"] < record["fp32"]["file_mb"]
    text = format_ladder(record)
    assert "gptq, one scale per row: KL(fp32 || model), nats" in text and "decoder" in text


def test_the_front_holds_the_best_plan_of_every_size(ladder_record):
    """Against every plan of the ladder's options: no plan is smaller and better than the front's."""
    record, *_ = ladder_record
    options = rc.part_options(record, "rtn")
    front = rc.front(options, record["fp32"]["file_mb"])
    every = [(record["fp32"]["file_mb"] + sum(o[2] for o in combo), sum(o[1] for o in combo))
             for combo in itertools.product(*options.values())]
    assert len(every) == 3 ** 4
    for mb, kl in every:
        assert any(f_mb <= mb + 1e-9 and f_kl <= kl + 1e-12 for f_mb, f_kl, _ in front)
    for (mb1, kl1, _), (mb2, kl2, _) in zip(front, front[1:]):
        assert mb1 <= mb2 and kl1 > kl2
    budget = (front[0][0] + front[-1][0]) / 2
    d = rc.derive_lowbit(record, budget)
    best = min(kl for mb, kl in every if mb <= budget)
    assert d["predicted_kl"] <= best + 1e-12 and d["predicted_mb"] <= budget
    assert d["recipe"].startswith("embedding=") and d["nlayers"] == 2 and set(d["fronts"]) == {"rtn", "gptq"}
    with pytest.raises(ValueError, match="budget must be at least"):
        rc.derive_lowbit(record, 0.001)


def test_bits_on_the_command_line(small_model, tiny_corpus, tiny_dir, tmp_path, capsys):
    from wlm.checkpoint import save_checkpoint
    from wlm.cli import main
    ck = save_checkpoint(tmp_path / "m.safetensors", small_model, tiny_corpus.dictionary)
    args = ["bits", "--checkpoint", str(ck), "--data", str(tiny_dir), "--max-tokens", "200", "--parts",
            "decoder,all", "--bits", "4,2", "--groups", "row", "--roundings", "rtn,mse"]
    assert main(args + ["--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {(r["part"], r["bits"], r["rounding"]) for r in record["rungs"]} == {
        (p, b, r) for p in ("decoder", "all") for b in (4, 2) for r in ("rtn", "mse")}
    assert main(args + ["--save-to", str(tmp_path / "res")]) == 0
    assert "rtn, one scale per row: KL(fp32 || model), nats" in capsys.readouterr().out
    assert len(list((tmp_path / "res").glob("ladder-*.json"))) == 1
    for bad, says in ((["--bits", "9"], "--bits must be widths from 2 to 8"),
                      (["--roundings", "best"], "--roundings must be among rtn, mse, gptq"),
                      (["--groups", "48"], "--groups must be row or one of 32, 64, 128")):
        assert main(args[:-8] + bad) == 2
        assert says in capsys.readouterr().err
    for i, text in enumerate(("[1, 2]", '{"format": "wlm-measurement/2", "rows": []}')):     # JSON, not a ladder
        bad = tmp_path / f"not-a-ladder-{i}.json"
        bad.write_text(text)
        assert main(["bits", "--ladder", str(bad), "--derive-recipe", "--recipe-out", str(tmp_path / "r.json")]) == 2
        assert "not a stored ladder" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_a_thinned_front_keeps_its_smallest_plan_and_one_per_half_percent():
    plans = [(10.0 + 0.01 * k, 1.0 / (k + 1), {"k": k}) for k in range(300)]      # 10.00 .. 12.99 MB
    thin = rc.thin(plans)
    assert thin[0] is plans[0] and thin[-1][0] <= plans[-1][0]
    assert all(b[0] > a[0] * 1.005 - 1e-9 for a, b in zip(thin[1:-1], thin[2:-1]))     # the last bucket may be short
    assert 30 < len(thin) < 60
    assert rc.lowbit_choice({"target_kl": 0.003, "budget_mb": None}) == \
        "the smallest packed file predicted at KL 0.003 or less"
    assert rc.lowbit_choice({"target_kl": None, "budget_mb": 18.0}) == "the least KL predicted within 18 MB"
