"""The "Your recipe" panel (wlm.recipeview) through the app: built, measured, written with, refused."""
import html
import re

import pytest

from wlm.app import AppConfig, QuantDemo
from wlm.checkpoint import save_checkpoint
from wlm.recipes import NAME_PREFIX


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_dir, tiny_corpus):
    import torch
    from tests.conftest import sharpen
    from wlm.model import LSTMModel, ModelConfig
    torch.manual_seed(0)
    model = sharpen(LSTMModel(ModelConfig(len(tiny_corpus.dictionary), ninp=64, nhid=32, nlayers=2)).eval(), 10)
    ck = save_checkpoint(tmp_path_factory.mktemp("ck") / "m.safetensors", model, tiny_corpus.dictionary)
    return QuantDemo(AppConfig(checkpoint=str(ck), data=str(tiny_dir), cache=str(tmp_path_factory.mktemp("cache")),
                               thread_choices=(1, 2)))


def words(pane: str) -> list[str]:
    return re.findall(r'<span class="wlm-word[^"]*"[^>]*>([^<]*)</span>', pane)


def test_a_built_recipe_has_its_real_size_a_quick_quality_and_writes(app):
    values = ("int2-g32", "int2-row", "int2-row", "int2-g32", "rtn")
    status, choices, name = app.recipe.build(*values)
    assert name == NAME_PREFIX + "embedding=int2-g32 lstm=int2-row decoder=int2-g32 rounding=rtn"
    assert choices[-1] == name and choices[:-1] == app.choices
    size = float(re.search(r"\*\*([0-9.]+) MB\*\* packed file", status).group(1))
    assert size == pytest.approx(app.model(name).size.total_mb, abs=0.005)
    assert "KL **" in status and "no speed claimed" in status and "python -m wlm export --recipe" in status
    card = app.measure.scorecard(None, name)
    assert 'data-field="kl"' in card and "no speed claimed" in card and "quick check of your recipe" in card
    *_, last = app.side.generate("w1 w2", 30, 1.0, 3, True, name)
    assert len(words(last[0])) == 30 and "no speed claimed" in last[3]
    assert words(last[0]) != words(last[1])                  # 2 bits: the texts part
    assert "low-bit weights computed in fp32" in app.side.title(name)
    html, summary = app.your_text.run("w1 w2 w3 w4 w5 " * 20, name)          # over one call of 64
    assert "not quantized" in summary                        # weight-only: the calls change nothing
    assert app.recipe.build(*values)[2] == name and app.recipes.builds == 1      # built and measured once


@pytest.mark.parametrize("values, says", [
    (("int2-g32", "int9-row", "fp32", "fp32", "rtn"), "lstm.0 must be fp32, int<bits>-row"),
    (("fp32", "fp32", "fp32", "fp32", "rtn"), "keeps every part in fp32"),
    (("int4-row", "fp32", "fp32", "fp32", "best"), "rounding must be one of rtn, mse, gptq"),
    (("int4-row", "fp32", "fp32", "rtn"), "needs a precision for each of embedding, lstm.0, lstm.1, decoder"),
])
def test_a_bad_recipe_is_refused_naming_the_part(app, values, says):
    with pytest.raises(ValueError) as e:
        app.recipe.build(*values)
    assert says in str(e.value)


def test_a_recipe_name_works_wherever_a_variant_goes_but_measure(app):
    name = app.variant_arg("recipe: decoder=int3-row")
    assert name == NAME_PREFIX + "embedding=fp32 lstm=fp32 decoder=int3-row rounding=rtn"
    with pytest.raises(ValueError, match="variants must be one of"):
        app.names_arg([name])
    with pytest.raises(ValueError, match="variant must be one of"):
        app.inspect.inspect(name, "2,000 tokens")
    assert all(app.spec(n).speed_claimed for n in app.inspect.choices())
    with pytest.raises(ValueError, match="decoder must be fp32"):
        app.variant_arg("recipe: decoder=int1-row")


def test_presets_fill_every_control(app):
    for label in app.recipe.presets():
        values = app.recipe.preset(label)
        assert len(values) == len(app.recipe.parts) + 1 and values[-1] in ("rtn", "mse", "gptq")
    with pytest.raises(ValueError, match="preset must be one of"):
        app.recipe.preset("the best one")


def test_the_command_line_the_notes_give_writes_the_same_text(app, capsys):
    """A recipe's side by side ends with a command line; run, it writes the right pane's words."""
    import json
    import shlex
    from wlm.cli import main
    name = app.variant_arg("recipe: embedding=int3-row lstm=int2-row decoder=int2-row")
    *_, last = app.side.generate("w1 w2", 25, 1.0, 7, True, name)
    command = re.search(r"and with `(--recipe [^`]+)` \(right\)", last[4]).group(1)
    base = re.search(r"`python -m wlm generate ([^`]+)` \(left\)", last[4]).group(1)
    argv = ["generate", *shlex.split(base), *shlex.split(command), "--checkpoint", app.cfg.checkpoint, "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["words"] == [html.unescape(w) for w in words(last[1])]


def test_the_recipe_is_compared_with_qint8_as_the_stored_record_has_it(app, monkeypatch):
    """The status line's qint8 figures are the stored full-split record's, not numbers in the code;
    without such a record it says nothing of qint8."""
    values = ("int4-g32", "int4-row", "int4-row", "int4-g32", "rtn")
    _, _, name = app.recipe.build(*values)
    record = app.quick_quality(name)
    monkeypatch.setattr(app, "full_split_record", lambda: None)
    assert "qint8" not in app.recipe.status(name, record)
    full = {**record, "tokens": 123_456, "rows": [dict(r) for r in record["rows"]]}
    full["rows"][1] = {**full["rows"][1], "model": "qint8",
                       "agreement": {**full["rows"][1]["agreement"], "kl_mean": 0.01234, "top1": 0.8761}}
    monkeypatch.setattr(app, "full_split_record", lambda: full)
    assert ("The tutorial's qint8 has KL 0.0123 and top-1 0.876 on the whole test split (123,456 tokens)."
            in app.recipe.status(name, record))
