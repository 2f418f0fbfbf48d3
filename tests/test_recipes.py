"""wlm.recipes: a visitor's recipes, named by their text, built one at a time, a bounded few kept."""
import threading
import time

import pytest
import torch

from wlm.checkpoint import load_checkpoint, save_checkpoint
from wlm.recipes import NAME_PREFIX, RecipeBook


@pytest.fixture
def book(small_model, tiny_corpus, tmp_path):
    ck = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", small_model, tiny_corpus.dictionary))
    return RecipeBook(ck, max_built=2)


def test_a_recipe_is_named_by_its_canonical_text(book):
    assert book.name("decoder=INT4-row, lstm=int6-row") == \
        NAME_PREFIX + "embedding=fp32 lstm=int6-row decoder=int4-row rounding=rtn"
    assert book.name(book.name("decoder=int4-row")) == book.name("decoder=int4-row")
    with pytest.raises(ValueError, match="decoder must be fp32, int<bits>-row"):
        book.name("decoder=int1-row")
    with pytest.raises(ValueError, match="keeps every part in fp32"):
        book.name("embedding=fp32")
    with pytest.raises(ValueError, match="at most 400"):
        book.name("decoder=int4-row " * 40)
    with pytest.raises(ValueError, match="must be text"):
        book.name(4)


def test_at_most_max_built_recipes_are_kept_the_least_recently_used_goes(book):
    a, b, c = (book.name(t) for t in ("decoder=int4-row", "decoder=int3-row", "decoder=int2-row"))
    va = book.get(a)
    book.get(b)
    assert book.get(a) is va                               # kept, used again: now the most recent
    book.get(c)                                            # over the bound: b (least recently used) goes
    assert book.is_built(a) and book.is_built(c) and not book.is_built(b) and book.builds == 3
    assert book.get(b) is not None and book.builds == 4     # built again when asked for
    w = va.model.decoder.weight
    assert len(torch.unique(w)) <= 2 ** 4 * w.size(0)       # 4-bit codes x one scale per row


def test_one_build_at_a_time_however_many_ask(book, monkeypatch):
    import wlm.recipes as recipes
    inside, most = [0], [0]
    real = recipes.build_lowbit

    def slow(*a, **k):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        try:
            return real(*a, **k)
        finally:
            inside[0] -= 1
    monkeypatch.setattr(recipes, "build_lowbit", slow)
    names = [book.name(f"decoder=int{b}-row") for b in (2, 3, 4, 5)]
    threads = [threading.Thread(target=book.get, args=(n,)) for n in names * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert most[0] == 1 and book.builds >= 4


def test_the_quick_measurement_is_made_once_per_recipe(book):
    calls = []
    name = book.name("decoder=int3-row")
    first = book.quick(name, lambda v: calls.append(v) or {"rows": []})
    assert book.quick(name, lambda v: calls.append(v) or {"rows": [1]}) is first and len(calls) == 1
    assert book.quick_record(name) is first and book.quick_record(book.name("decoder=int2-row")) is None
