import numpy as np
import pytest
import torch

from tests.conftest import sharpen

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
    sharpen(tiny_model)
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


# ---------------------------------------------------------------- reading the prompt in chunks
@torch.inference_mode()
def generate_as_before(model, dictionary, cfg):
    """generate() as it was before prompts were read in chunks: the whole prompt in one call."""
    from wlm.generate import prompt_ids
    sampler = GumbelSampler(cfg, len(dictionary))
    model.eval()
    ids = prompt_ids(dictionary, cfg, sampler)
    logits, hidden = model(torch.tensor(ids, dtype=torch.long).view(-1, 1), model.init_hidden(1))
    last = logits[-1, 0]
    for i in range(cfg.words):
        word = pick(last, sampler.temperature, sampler.uniforms())
        yield dictionary.idx2word[word]
        if i + 1 < cfg.words:
            logits, hidden = model(torch.tensor([[word]]), hidden)
            last = logits[-1, 0]


def prompt_of(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(f"w{i}" for i in rng.integers(0, 36, n))




@pytest.mark.parametrize("n", [1, 7, 64])
def test_a_prompt_of_up_to_one_chunk_is_read_bit_for_bit_as_before(sharp_pair, tiny_corpus, n):
    """fp32 and int8 (whose activation scales are per call): same logits, same words."""
    from wlm.generate import PROMPT_CHUNK, PromptReader
    assert n <= PROMPT_CHUNK
    d = tiny_corpus.dictionary
    for model in sharp_pair:
        ids = d.encode(prompt_of(n)).ids
        reader = PromptReader(model, ids)
        with torch.inference_mode():
            reader.step()
            full, (h, c) = model(torch.tensor(ids).view(-1, 1), model.init_hidden(1))
        assert reader.done and torch.equal(reader.last, full[-1, 0])
        assert torch.equal(reader.hidden[0], h) and torch.equal(reader.hidden[1], c)
        for t in (1.0, 0.0):
            cfg = GenerationConfig(prompt=prompt_of(n), words=30, temperature=t, seed=5)
            assert list(generate(model, d, cfg)) == list(generate_as_before(model, d, cfg))


def test_a_long_prompt_is_read_in_bounded_chunks_decoded_once(sharp_pair, tiny_corpus):
    """2,000 characters of one-letter words are ~1,000 tokens: never one call over all of them,
    and logits for the last chunk's positions only."""
    from wlm.generate import PROMPT_CHUNK
    d = tiny_corpus.dictionary
    for model in sharp_pair:
        rnn_steps, decoded = [], []
        hooks = [model.rnn.register_forward_hook(lambda m, args, out: rnn_steps.append(args[0].shape[0])),
                 model.decoder.register_forward_hook(lambda m, args, out: decoded.append(args[0].shape[0]))]
        try:
            words = list(generate(model, d, GenerationConfig(prompt=prompt_of(1000), words=3, seed=1)))
        finally:
            for h in hooks:
                h.remove()
        assert len(words) == 3
        assert max(rnn_steps) <= PROMPT_CHUNK and sum(rnn_steps) == 1000 + 2
        assert decoded == [1000 - 15 * PROMPT_CHUNK, 1, 1]          # the last chunk, then a word at a time


def test_the_pair_reads_a_long_prompt_one_chunk_per_step(sharp_pair, tiny_corpus):
    from wlm.pair import PairStep, PromptStep, generate_pair
    d = tiny_corpus.dictionary
    cfg = GenerationConfig(prompt=prompt_of(1000), words=20, temperature=1.0, seed=2)
    steps = list(generate_pair(sharp_pair, d, cfg, prompt_steps=True))
    prompt = [s for s in steps if isinstance(s, PromptStep)]
    assert [s.read for s in prompt] == [64 * k for k in range(1, 16)] and all(s.tokens == 1000 for s in prompt)
    assert steps[:15] == prompt and all(isinstance(s, PairStep) for s in steps[15:])
    plain = list(generate_pair(sharp_pair, d, cfg))                  # the default yields words only
    assert [s.words for s in plain] == [s.words for s in steps[15:]]
    for k, model in enumerate(sharp_pair):                           # each pane is still what its model writes
        assert [s.words[k] for s in plain] == list(generate(model, d, cfg))


def test_the_real_checkpoint_reads_a_short_prompt_as_before():
    from tests.conftest import SHIPPED_CHECKPOINT
    if not SHIPPED_CHECKPOINT.is_file():
        pytest.skip(f"the shipped checkpoint is not at {SHIPPED_CHECKPOINT}")
    from wlm.checkpoint import load_checkpoint
    from wlm.quantize import quantize
    ckpt = load_checkpoint(SHIPPED_CHECKPOINT)
    cfg = GenerationConfig(prompt="The game was released in Japan in 2011 , and", words=12, seed=7)
    for model in (ckpt.model, quantize(ckpt.model)):
        assert list(generate(model, ckpt.dictionary, cfg)) == list(generate_as_before(model, ckpt.dictionary, cfg))
