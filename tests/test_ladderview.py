"""The "How low can it go" panel (wlm.ladderview): the stored ladder and budget curve on the page."""
import json

import pytest

from wlm import ladderview
from wlm.app import AppConfig, QuantDemo
from wlm.checkpoint import save_checkpoint
from wlm.gptq import Calibration
from wlm.ladder import Ladder, rungs
from wlm.recipe import derive_lowbit
from wlm.results import make_ladder_record


@pytest.fixture
def app(small_model, tiny_corpus, tiny_dir, tmp_path):
    ck = save_checkpoint(tmp_path / "m.safetensors", small_model, tiny_corpus.dictionary)
    return QuantDemo(AppConfig(checkpoint=str(ck), data=str(tiny_dir), cache=str(tmp_path / "cache"),
                               thread_choices=(1, 2)))


def stored_ladder(app, small_model, tiny_corpus):
    cal = Calibration.collect(small_model, tiny_corpus.train, max_tokens=1000)
    lad = Ladder(small_model, tiny_corpus.test, rungs(small_model.config, bits=(8, 4, 3, 2), groups=(None, 32)),
                 cal.hessians, max_tokens=200, vocab=tiny_corpus.dictionary.idx2word, in_flight=8)
    while lad.step():
        pass
    record = make_ladder_record(split="test", slice_label="200 tokens", ladder=lad, machine={"cpu": "test"},
                                checkpoint_sha256=app.ckpt.sha256, data_sha256="11" * 32,
                                calibration={"sha256": "22"}, source="test", threads=1)
    app.keep(app.ladders, record)
    return record


def test_without_a_stored_ladder_the_panel_says_how_to_make_one(app):
    out = dict(zip(ladderview.OUTPUTS, app.ladder.initial()))
    assert "python -m wlm bits" in out["summary"] and "no ladder stored" in out["cliff"]
    assert "No low-bit recipe" in out["budget_note"]


def test_the_cliff_the_table_and_the_budget_curve(app, small_model, tiny_corpus, tmp_path, monkeypatch):
    record = stored_ladder(app, small_model, tiny_corpus)
    recipe = derive_lowbit(record, record["fp32"]["file_mb"] * 0.5)
    path = tmp_path / "lowbit.json"
    path.write_text(json.dumps(recipe))
    monkeypatch.setattr(ladderview, "LOWBIT_FILE", path)
    out = dict(zip(ladderview.OUTPUTS, app.ladder.view("GPTQ: each rounding error compensated (gptq)",
                                                       "one scale per row")))
    for part in ("embedding", "lstm.0", "lstm.1", "decoder", "all parts"):
        assert f"<title>{part}</title>" in out["cliff"]
    assert out["cliff"].count('class="mark"') == 5 * 4            # every part at every width, with its error
    assert ">8</text>" in out["cliff"] and ">2</text>" in out["cliff"]          # the widths, 8 down to 2
    table = out["table"]
    assert set(table["part"]) == {"embedding", "lstm.0", "lstm.1", "decoder", "all"} and len(table) == 5 * 4
    assert all(" ± " in v for v in table["KL (nats)"])
    assert "breaks first" in out["summary"] and "no speed claimed" in out["summary"]
    assert "best plan, gptq" in out["budget"] and "best plan, rtn" in out["budget"]
    assert "validation" in out["budget_note"] and recipe["recipe"] in out["budget_note"]
    with pytest.raises(ValueError, match="rounding must be one of"):
        app.ladder.view("the best", "one scale per row")
