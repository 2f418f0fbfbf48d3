"""Word-by-word generation, as the tutorial's generate.py, with explicit randomness.

Sampling draws from softmax(logits / T) by inverse CDF with one uniform number per word
(same distribution as ``torch.multinomial``, ~10x cheaper here), so two models fed the
same generator seed consume the same random numbers and can be compared word for word.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import torch

from .data import Dictionary
from .evaluate import num_threads

MAX_WORDS = 1000


@dataclass(frozen=True)
class GenerationConfig:
    """Args:
        prompt: text whose words are fed first ("" = one random start word, as the tutorial).
        words: number of words to generate (1..MAX_WORDS).
        temperature: > 0 samples from softmax(logits / T); 0 picks the most likely word.
        seed: seed of the random generator (start word and sampling).
    """
    prompt: str = ""
    words: int = 100
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.prompt, str):
            raise ValueError(f"prompt must be text, got {type(self.prompt).__name__}")
        if not isinstance(self.words, int) or not 1 <= self.words <= MAX_WORDS:
            raise ValueError(f"words must be an integer from 1 to {MAX_WORDS}, got {self.words!r}")
        t = self.temperature
        if not isinstance(t, (int, float)) or not 0 <= t <= 100:
            raise ValueError(f"temperature must be a number from 0 to 100, got {t!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 63:
            raise ValueError(f"seed must be an integer from 0 to 2**63-1, got {self.seed!r}")


def _pick(logits: torch.Tensor, temperature: float, u: torch.Tensor) -> int:
    """One word id from (ntoken,) logits, given one uniform number u in [0, 1)."""
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    cdf = probs.cumsum(0)
    return int(torch.searchsorted(cdf, u * cdf[-1]).clamp_(max=len(cdf) - 1))


@torch.inference_mode()
def generate(model, dictionary: Dictionary, cfg: GenerationConfig) -> Iterator[str]:
    """Yield ``cfg.words`` generated words, one at a time (the prompt is not repeated)."""
    g = torch.Generator().manual_seed(cfg.seed)
    model.eval()
    hidden = model.init_hidden(1)
    ids = dictionary.encode(cfg.prompt).ids
    if not ids:
        ids = [int(torch.randint(len(dictionary), (1,), generator=g))]
    # Feed the prompt (seq, 1) in one call; the last output predicts the first new word.
    logits, hidden = model(torch.tensor(ids, dtype=torch.long).view(-1, 1), hidden)
    last = logits[-1, 0]
    for _ in range(cfg.words):
        u = torch.rand((), generator=g)
        word = _pick(last, cfg.temperature, u)
        yield dictionary.idx2word[word]
        logits, hidden = model(torch.tensor([[word]]), hidden)
        last = logits[-1, 0]


@dataclass
class PairStep:
    """One step of a side-by-side run: each model's new word and its time for it."""
    index: int
    words: tuple[str, str]
    seconds: tuple[float, float]


def generate_pair(models, dictionary: Dictionary, cfg: GenerationConfig,
                  threads: int | None = 1) -> Iterator[PairStep]:
    """Run two models in lockstep from the same seed, timing each model's step alone."""
    streams = [generate(m, dictionary, cfg) for m in models]
    with num_threads(threads):
        for i in range(cfg.words):
            words, secs = [], []
            for s in streams:
                t0 = time.perf_counter()
                words.append(next(s))
                secs.append(time.perf_counter() - t0)
            yield PairStep(i, tuple(words), tuple(secs))
