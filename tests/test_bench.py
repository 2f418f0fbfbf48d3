import pytest

from wlm.bench import compare, format_table, generation_rate, machine_info
from wlm.quantize import quantize


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
