import numpy as np
import pytest
import torch

from wlm.generate import MAX_WORDS, GenerationConfig, GumbelSampler, generate, pick


def test_same_seed_same_text_and_other_seed_other_text(tiny_model, tiny_corpus):
    d = tiny_corpus.dictionary
    a = list(generate(tiny_model, d, GenerationConfig(words=40, seed=3)))
    b = list(generate(tiny_model, d, GenerationConfig(words=40, seed=3)))
    c = list(generate(tiny_model, d, GenerationConfig(words=40, seed=4)))
    assert len(a) == 40 and all(w in d.word2idx for w in a)
    assert a == b and a != c


def test_yields_one_word_at_a_time(tiny_model, tiny_corpus):
    it = generate(tiny_model, tiny_corpus.dictionary, GenerationConfig(words=5))
    assert isinstance(next(it), str)
    assert len(list(it)) == 4


def test_greedy_follows_the_argmax(tiny_model, tiny_corpus):
    d = tiny_corpus.dictionary
    words = list(generate(tiny_model, d, GenerationConfig(prompt="w1 w2", words=6, temperature=0)))
    # Recompute greedily by hand over the whole sequence.
    ids = d.encode("w1 w2").ids
    with torch.no_grad():
        for _ in range(6):
            out, _ = tiny_model(torch.tensor(ids).view(-1, 1), tiny_model.init_hidden(1))
            ids.append(int(out[-1, 0].argmax()))
    assert words == d.decode(ids[2:])


def test_prompt_conditions_the_output(tiny_model, tiny_corpus):
    d = tiny_corpus.dictionary
    with torch.no_grad():   # a freshly initialised model is nearly uniform: sharpen it
        tiny_model.encoder.weight.mul_(30)
        tiny_model.decoder.weight.mul_(30)
    # with the same noise the texts differ only where the prompt moved the distribution: over
    # 20 seeds, some must
    a = [list(generate(tiny_model, d, GenerationConfig(prompt="w1 w2 w3", words=40, seed=s))) for s in range(20)]
    b = [list(generate(tiny_model, d, GenerationConfig(prompt="w9 , w8 .", words=40, seed=s))) for s in range(20)]
    assert a != b


def chi_square_critical(df: int, z: float = 3.09) -> float:
    """Upper 0.1% point of the chi-square distribution (Wilson-Hilferty; z = 3.09 is the
    normal 99.9% quantile); within 1% of the exact value for df >= 10."""
    return df * (1 - 2 / (9 * df) + z * (2 / (9 * df)) ** 0.5) ** 3


def draw_counts(logits, temperature, n, seed=0):
    sampler = GumbelSampler(GenerationConfig(temperature=temperature, seed=seed), len(logits))
    ids = [pick(logits, temperature, sampler.uniforms()) for _ in range(n)]
    return torch.bincount(torch.tensor(ids), minlength=len(logits)).double()


def chi_square(counts, probs):
    expected = probs.double() * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def two_level_logits(temperature: float) -> torch.Tensor:
    """Two likely words and 18 unlikely ones more than NEAR * T below them, holding ~2.8% of the
    mass together: the words ``pick`` reaches only through its far-word search."""
    torch.manual_seed(0)
    near = torch.tensor([0.0, 0.5])
    far = -5.2 - 0.5 * torch.rand(18)
    return torch.cat([near, far]) * temperature


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_gumbel_max_draws_follow_the_softmax(temperature):
    """120,000 draws over 20 words: chi-square below its 0.1% critical value (df 19: ~43.8).
    The test has the power to see a 3% error of temperature (the same draws against
    softmax(logits / 1.03 T) fail it) and the words far below the top (dropping pick's far-word
    search loses 2.8% of the mass); that pick draws exactly what scoring every word draws is
    the next test's."""
    logits = two_level_logits(temperature)
    counts = draw_counts(logits, temperature, n=120_000)
    probs = torch.softmax(logits / temperature, -1)
    assert float(probs[2:].sum()) > 0.02
    assert chi_square(counts, probs) < chi_square_critical(19)
    assert chi_square(counts, torch.softmax(logits / (1.03 * temperature), -1)) > chi_square_critical(19)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 3.0])
def test_lazy_pick_is_exactly_full_gumbel_max(temperature):
    """pick scores only the words that can win; it must pick what scoring every word picks."""
    torch.manual_seed(1)
    sampler = GumbelSampler(GenerationConfig(temperature=temperature, seed=2), 5000)
    for i in range(2000):
        logits = torch.randn(5000) * (1 + i % 4)
        u = sampler.uniforms()
        full = int(torch.argmax(logits.double() - temperature * torch.log(-torch.log(torch.from_numpy(u).double()))))
        assert pick(logits, temperature, u) == full


def test_same_seed_same_noise_greedy_uses_none():
    a = GumbelSampler(GenerationConfig(seed=5), 50)
    b = GumbelSampler(GenerationConfig(seed=5), 50)
    c = GumbelSampler(GenerationConfig(seed=6), 50)
    na, nb, nc = a.uniforms().copy(), b.uniforms().copy(), c.uniforms().copy()
    assert np.array_equal(na, nb) and not np.array_equal(na, nc)
    assert not np.array_equal(na, a.uniforms())                # a fresh vector every word
    assert ((na >= 0) & (na < 1)).all()
    assert GumbelSampler(GenerationConfig(temperature=0), 50).uniforms() is None
    logits = torch.randn(50)
    assert pick(logits, 0, None) == int(logits.argmax())


@pytest.mark.parametrize("kw", [dict(words=0), dict(words=MAX_WORDS + 1), dict(words=2.5), dict(temperature=-1),
                                dict(temperature=float("nan")), dict(seed=-1), dict(prompt=None)])
def test_config_validates(kw):
    with pytest.raises(ValueError):
        GenerationConfig(**kw)
