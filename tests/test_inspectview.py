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
