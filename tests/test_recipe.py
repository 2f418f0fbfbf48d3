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


def _report(cov=None):
    return {"tokens": 1000, "part_sizes_mb": SIZES, "sensitivity_kl_cov": cov,
            "sensitivity": [{"part": p, "option": o, "kl": v, "dloss": 0.0, "top1": 1.0} for (p, o), v in KL.items()]}


def test_the_choice_says_whether_it_beats_the_runner_up_beyond_noise():
    """Budget 31: the choice keeps touchy in fp32 (KL 0.000301), the runner-up quantizes it too
    (0.000801): a margin of 0.0005 (touchy int8's KL), beyond noise when that KL's error is 1e-4,
    within noise when it is 4e-4. The margin's error is that of touchy's mean alone: the parts
    both plans share cancel, whatever their covariance."""
    n = len(KL)
    touchy = list(KL).index(("touchy", "int8"))
    for se, beyond in ((1e-4, True), (4e-4, False)):
        cov = [[(se ** 2 if i == j == touchy else 1e-8 if i == j else 5e-9) for j in range(n)] for i in range(n)]
        r = recipe.derive(_report(cov), budget_mb=31)
        assert r["plan"]["touchy"] == "fp32" and r["runner_up"]["plan"]["touchy"] == "int8"
        assert r["margin_kl"] == pytest.approx(0.0005) and r["margin_kl_se"] == pytest.approx(se)
        assert r["beats_runner_up_beyond_noise"] is beyond
        assert ("beyond noise" if beyond else "within noise") in recipe.verdict(r)
    old = recipe.derive(_report(None), budget_mb=31)              # an analysis stored without errors
    assert old["beats_runner_up_beyond_noise"] is None and "no standard error" in recipe.verdict(old)


def test_a_plan_is_keyed_by_its_sha256_and_a_derived_one_goes_to_a_new_file(tmp_path):
    plan = {"big": "int8-per-channel", "touchy": "fp32", "easy": "8bit-rows"}
    same = dict(reversed(list(plan.items())))
    assert recipe.plan_sha256(plan) == recipe.plan_sha256(same) and len(recipe.plan_sha256(plan)) == 64
    assert recipe.plan_sha256({**plan, "touchy": "int8"}) != recipe.plan_sha256(plan)
    r = recipe.derive(_report(), budget_mb=31)
    path = recipe.save(r, tmp_path / "r.json")
    assert recipe.plan_sha256(path) == recipe.plan_sha256(r) == recipe.plan_sha256(plan) == r["plan_sha256"]
    p = recipe.derived_path(plan)
    assert p.parent == recipe.RECIPE_FILE.parent and p != recipe.RECIPE_FILE
    assert p.name == f"qint8-mixed-{recipe.plan_sha256(plan)[:12]}.json"


def test_a_plan_derived_on_another_checkpoint_is_refused(tmp_path):
    r = {**recipe.derive(_report(), budget_mb=31), "checkpoint_sha256": "a" * 64}
    path = recipe.save(r, tmp_path / "r.json")
    assert recipe.load_plan(path, checkpoint_sha256="a" * 64) == r["plan"]
    assert recipe.load_plan(path) == r["plan"]                          # no checkpoint to check against
    with pytest.raises(ValueError, match=r"derived on checkpoint sha256 aaaaaaaaaaaa\.\.\., not on this one "
                                         r"\(bbbbbbbbbbbb\.\.\.\)"):
        recipe.load_plan(path, checkpoint_sha256="b" * 64)
    shipped = json.loads(recipe.RECIPE_FILE.read_text())
    assert recipe.load_plan(recipe.RECIPE_FILE, checkpoint_sha256=shipped["checkpoint_sha256"]) == shipped["plan"]
