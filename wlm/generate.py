"""Word-by-word generation, as the tutorial's generate.py, with explicit randomness.

Sampling is Gumbel-max: with one vector g of independent standard Gumbel noise per word,
``argmax(logits / T + g)`` is an exact draw from ``softmax(logits / T)`` (T = 0: the most
likely word). The noise depends only on the seed and the step, never on the model, so two
models run from the same seed share it and pick the same word whenever their distributions
allow: the shared-noise coupling of Daliri et al., "Coupling without Communication and
Drafter-Invariant Speculative Decoding" (arXiv 2408.07978), which agrees with probability at
least (1 - TV) / (1 + TV). ``python -m wlm generate --seed S`` therefore writes exactly what the
demo's pane of that model writes from seed S.

A prompt is read ``PROMPT_CHUNK`` tokens per call (``PromptReader``), and only its last
chunk goes through the decoder (the only logits that matter are the last position's): a
prompt of 1,000 tokens costs a few bounded steps, not one call that computes 1,000 x 33,278
logits. A prompt of at most ``PROMPT_CHUNK`` tokens is read in one call, exactly as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import math

import numpy as np
import torch

from .data import Dictionary
from .model import LSTMModel

MAX_WORDS = 1000
PROMPT_CHUNK = 64     # prompt tokens per call: ~8.5 MB of logits at most, a few ms of work
NEAR = 5.0        # pick: words within NEAR * T of the top logit are always scored


@dataclass(frozen=True)
class GenerationConfig:
    """Args:
        prompt: text whose words are fed first ("" = one random start word, as the tutorial).
        words: number of words to generate (1..MAX_WORDS).
        temperature: > 0 samples from softmax(logits / T); 0 picks the most likely word.
        seed: seed of the random generator (start word and sampling noise).
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


class GumbelSampler:
    """The random stream of one generation: a start word, then one uniform per vocabulary word
    per generated word (the Gumbel noise is ``-log(-log(u))``; see ``pick``).

    Two samplers built from the same config yield the same numbers, whatever model uses them.
    Uniforms come from numpy's SFC64 generator: 33,278 float32 draws cost about half of
    torch's CPU generator (Mersenne Twister) here, and sampling runs once per word.
    """

    def __init__(self, cfg: GenerationConfig, ntoken: int):
        self.temperature = float(cfg.temperature)
        self.rng = np.random.Generator(np.random.SFC64(cfg.seed))
        self._u = np.empty(ntoken, dtype=np.float32)    # reused: no allocation per word

    def start_word(self, ntoken: int) -> int:
        return int(self.rng.integers(ntoken))

    def uniforms(self) -> np.ndarray | None:
        """This step's (ntoken,) uniforms in [0, 1); None when greedy. Overwritten at the next call."""
        if self.temperature == 0:
            return None
        return self.rng.random(dtype=np.float32, out=self._u)


def _gumbel(u: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):               # u = 0 (p = 2**-24): -inf, that word cannot win
        return -np.log(-np.log(u.astype(np.float64)))


def pick(logits: torch.Tensor, temperature: float, u: np.ndarray | None) -> int:
    """The word id argmax_i(logits_i + T * g_i) with g_i = -log(-log(u_i)): Gumbel-max, an exact
    draw from softmax(logits / T); the most likely word when T = 0 or ``u`` is None.

    Exact but lazy, since the noise of most words cannot matter. Score the words within
    ``NEAR * T`` of the top logit M; with S the best of those scores, any other word i has
    logits_i < M - NEAR * T and can only beat S if T * g_i > S - M + NEAR * T, i.e. if
    u_i >= exp(-exp(-(S - M) / T - NEAR)): only those (a few hundred here) are scored too.
    """
    if u is None or temperature == 0:
        return int(logits.argmax())
    T = float(temperature)
    l = logits.detach().float().numpy()
    m = float(l.max())
    near = np.flatnonzero(l >= m - NEAR * T)          # never empty: holds the top word
    scores = l[near] + T * _gumbel(u[near])
    best = float(scores.max())
    with np.errstate(over="ignore"):
        bound = math.exp(-math.exp(min(700.0, -(best - m) / T - NEAR)))
    far = np.flatnonzero(u >= bound - 1e-6)           # a margin against rounding: more, never fewer
    if far.size:
        far_scores = l[far] + T * _gumbel(u[far])
        k = int(np.argmax(far_scores))
        if far_scores[k] > best:
            return int(far[k])
    return int(near[np.argmax(scores)])


def probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The distribution a word is drawn from at this temperature (T = 0: shown at T = 1)."""
    return torch.softmax(logits.float() / (temperature or 1.0), dim=-1)


def prompt_ids(dictionary: Dictionary, cfg: GenerationConfig, sampler: GumbelSampler) -> list[int]:
    """The prompt's ids, or one random start word (the tutorial's start) when it is empty."""
    ids = dictionary.encode(cfg.prompt).ids
    return ids or [sampler.start_word(len(dictionary))]


def hidden_after(model, ids: torch.Tensor, hidden):
    """The model's hidden state after reading ``ids`` (T, 1), skipping the decoder where the model
    lets us: its own ``forward_hidden(ids, hidden)`` if it has one, the embedding and LSTM of an
    ``LSTMModel`` (fp32 or a torch.ao quantized copy: the same calls its forward makes), else a
    full forward whose logits are dropped (bounded by the chunk)."""
    own = getattr(model, "forward_hidden", None)
    if callable(own):
        return own(ids, hidden)
    if isinstance(model, LSTMModel):
        _, hidden = model.rnn(model.drop(model.encoder(ids)), hidden)
        return hidden
    return model(ids, hidden)[1]


class PromptReader:
    """A prompt read into a model at most ``chunk`` tokens per ``step()``: the chunks before the
    last only advance the hidden state (``hidden_after``), the last one is a full forward whose
    last row is ``last``, the logits that predict the first new word.

    A prompt of at most ``chunk`` tokens is one forward call over all of it, exactly the call a
    reader of the whole prompt makes (same numbers, dynamic int8's per-call scales included)."""

    def __init__(self, model, ids: list[int], chunk: int = PROMPT_CHUNK):
        if not ids:
            raise ValueError("the prompt must have at least one token")
        if not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self.model, self.ids, self.chunk = model, list(ids), chunk
        self.hidden = model.init_hidden(1)
        self.read = 0                      # tokens read so far
        self.last: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return self.read == len(self.ids)

    def step(self) -> None:
        """Read the next chunk (a no-op when done)."""
        if self.done:
            return
        end = min(self.read + self.chunk, len(self.ids))
        x = torch.tensor(self.ids[self.read:end], dtype=torch.long).view(-1, 1)   # (T, 1)
        if end < len(self.ids):
            self.hidden = hidden_after(self.model, x, self.hidden)
        else:
            logits, self.hidden = self.model(x, self.hidden)                     # (T, 1, ntoken)
            self.last = logits[-1, 0]
        self.read = end


@torch.inference_mode()
def generate(model, dictionary: Dictionary, cfg: GenerationConfig) -> Iterator[str]:
    """Yield ``cfg.words`` generated words, one at a time (the prompt is not repeated)."""
    sampler = GumbelSampler(cfg, len(dictionary))
    model.eval()
    reader = PromptReader(model, prompt_ids(dictionary, cfg, sampler))
    while not reader.done:                 # the last output predicts the first new word
        reader.step()
    last, hidden = reader.last, reader.hidden
    for i in range(cfg.words):
        word = pick(last, sampler.temperature, sampler.uniforms())
        yield dictionary.idx2word[word]
        if i + 1 < cfg.words:
            logits, hidden = model(torch.tensor([[word]]), hidden)
            last = logits[-1, 0]
