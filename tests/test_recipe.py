"""The recipe the analysis chooses (wlm.recipe): the rule on fixtures whose answer is known."""
import json

import pytest

from wlm import recipe

# A made-up model of three parts whose ranking is known: "big" costs a lot when int8 per tensor
# and little per channel, "touchy" costs much in int8 and saves little, "easy" costs nothing.
KL = {("big", "int8"): 0.004, ("big", "int8-per-channel"): 0.0003, ("touchy", "int8"): 0.0005,
      ("easy", "8bit-rows"): 0.000001}
SIZES = {"big": {"fp32": 34.0, "int8": 8.6, "int8-per-channel": 9.1},
         "touchy": {"fp32": 2.1, "int8": 0.5},
         "easy": {"fp32": 68.0, "8bit-rows": 17.2}}


def test_the_rule_takes_the_least_kl_that_fits():
    plan, kl, mb = recipe.choose(KL, SIZES, budget_mb=31)
    assert plan == {"big": "int8-per-channel", "touchy": "fp32", "easy": "8bit-rows"}   # 28.4 MB, KL 0.000301
    assert kl == pytest.approx(0.000301) and mb == pytest.approx(28.4)


def test_a_tighter_budget_gives_up_the_least_useful_fp32_first():
    plan, kl, mb = recipe.choose(KL, SIZES, budget_mb=27)
    assert plan == {"big": "int8-per-channel", "touchy": "int8", "easy": "8bit-rows"} and mb == pytest.approx(26.8)
    plan, _, _ = recipe.choose(KL, SIZES, budget_mb=26.4)          # per channel no longer fits: per tensor
    assert plan["big"] == "int8"


def test_a_larger_budget_keeps_more_in_fp32_and_the_overhead_counts():
    assert recipe.choose(KL, SIZES, budget_mb=200)[0] == {"big": "fp32", "touchy": "fp32", "easy": "fp32"}
    plan, _, mb = recipe.choose(KL, SIZES, budget_mb=31, overhead_mb=3.0)           # 31.4 > 31: touchy int8
    assert plan["touchy"] == "int8" and mb == pytest.approx(29.8)


def test_ties_go_to_the_smaller_plan_and_no_fit_is_a_clear_error():
    kl = {("a", "int8"): 0.0, ("b", "int8"): 0.0}
    sizes = {"a": {"fp32": 4.0, "int8": 1.0}, "b": {"fp32": 4.0, "int8": 1.0}}
    assert recipe.choose(kl, sizes, budget_mb=10)[0] == {"a": "int8", "b": "int8"}
    with pytest.raises(ValueError, match="budget must be at least 26.30 MB"):
        recipe.choose(KL, SIZES, budget_mb=20)


def test_derive_save_and_load_a_recipe_from_a_report(tmp_path):
    report = {"tokens": 1000, "part_sizes_mb": SIZES,
              "sensitivity": [{"part": p, "option": o, "kl": v, "dloss": 0.0, "top1": 1.0} for (p, o), v in KL.items()]}
    r = recipe.derive(report, budget_mb=31)
    assert r["plan"] == {"big": "int8-per-channel", "touchy": "fp32", "easy": "8bit-rows"}
    path = recipe.save(r, tmp_path / "r.json")
    assert recipe.load_plan(path) == r["plan"] and json.loads(path.read_text())["format"] == recipe.FORMAT
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a wlm recipe"):
        recipe.load_plan(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="derive one"):
        recipe.load_plan(tmp_path / "missing.json")
