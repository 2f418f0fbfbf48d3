"""The panel's summary (wlm.inspectview.summary) on small hand-made reports whose answer is known."""
from wlm.inspectview import summary


def report(plan):
    sens = [{"part": "lstm.0", "option": "int8", "dloss": 0.0, "kl": 0.0001, "top1": 0.99},
            {"part": "decoder", "option": "int8", "dloss": 0.003, "kl": 0.004, "top1": 0.95},
            {"part": "decoder", "option": "int8-per-channel", "dloss": 0.0004, "kl": 0.0004, "top1": 0.99}]
    time = {"total": 10.0, "parts": {"embedding": 0.1, "lstm": 4.0, "decoder": 5.0}}
    fast = {"total": 5.0, "parts": {"embedding": 0.1, "lstm": 3.0, "decoder": 1.5}}
    return {"variant": "v", "tokens": 2000, "plan": plan, "sensitivity": sens,
            "end_to_end": {"dloss": 0.001, "kl": 0.0005, "top1": 0.99}, "time": {"fp32": time, "v": fast}}


def test_the_summary_names_the_variants_own_costliest_choice_when_it_is_not_the_worst():
    text = summary(report({"lstm.0": "int8", "decoder": "int8-per-channel"}))
    assert "The part that costs most, quantized alone, is **decoder (int8)**" in text
    assert "Of v's own choices it is decoder (int8-per-channel): KL 0.00040." in text
    assert "add up to 0.00050" in text and "the decoder saves the most (3.50 s)" in text


def test_no_second_sentence_when_the_worst_part_is_the_variants_own():
    text = summary(report({"lstm.0": "int8", "decoder": "int8"}))
    assert "own choices" not in text and "add up to 0.00410" in text


def test_the_summary_says_which_effects_are_beyond_noise():
    from wlm.inspection import kl_ranking
    r = report({"lstm.0": "int8", "decoder": "int8"})
    for s, se in zip(r["sensitivity"], (0.0002, 0.0005, 0.0001)):
        s["kl_se"], s["dloss_se"] = se, 0.0005
    # decoder int8 (0.004) is far above per channel (0.0004); that one is within noise of lstm.0 (0.0001)
    cov = [[0.0002 ** 2, 0, 0], [0, 0.0005 ** 2, 0], [0, 0, 0.0001 ** 2]]
    r["kl_ranking"] = kl_ranking(r["sensitivity"], cov)
    r["end_to_end"].update(dloss_se=0.0008, kl_se=0.00005)
    text = summary(r)
    assert "loss +0.0010 ± 0.0008 (within noise)" in text and "mean KL 0.00050 ± 0.00005" in text
    assert "Alone, by KL: decoder (int8) > decoder (per channel) ≈ lstm.0 (int8)" in text
    assert "Loss change within noise of zero: decoder (per channel), lstm.0 (int8)." in text
    assert "beyond noise" not in summary(report({"lstm.0": "int8"}))        # an analysis without errors


def test_the_page_says_what_the_recipe_is_and_whether_it_beats_the_runner_up(tmp_path):
    import json

    from wlm import recipe
    sens = [{"part": "a", "option": "int8", "kl": 0.001, "dloss": 0.0, "top1": 1.0},
            {"part": "b", "option": "int8", "kl": 0.002, "dloss": 0.0, "top1": 1.0}]
    r = recipe.derive({"tokens": 1000, "part_sizes_mb": {"a": {"fp32": 4.0, "int8": 1.0},
                                                         "b": {"fp32": 4.0, "int8": 1.0}},
                       "sensitivity": sens, "sensitivity_kl_cov": [[1e-8, 0], [0, 1e-8]]}, budget_mb=5.5)
    path = recipe.save(r, tmp_path / "r.json")
    note = recipe.page_note(path)
    assert "a: int8" in note and "b: fp32" in note             # b costs more quantized: it stays fp32
    assert "Predicted KL 0.001000" in note and "the choice is better beyond noise (95%)" in note
    older = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("runner_up", "margin_kl")}
    path.write_text(json.dumps(older))
    assert "next best" not in recipe.page_note(path) and recipe.page_note(tmp_path / "none.json") == ""
