"""Two models writing side by side from one random stream, with what each step tells.

Both panes draw with the same Gumbel noise (``wlm.generate``), so they write the same words
as long as the two models pick the same word in the same context, and each pane's words are
exactly what ``generate`` writes alone from the same seed. Every word carries both models'
probabilities for it *in that pane's context*: once the texts part, each pane also runs the
other model over its text (a shadow run, not timed), so the comparison stays like for like.

    pane 0: reference model (fp32) writes;  the other model shadows it, word by word
    pane 1: the other model (int8) writes;  the reference shadows it, 8 words per call
    until the panes part, both share one context and each model runs once per word.

(The int8 shadow stays word by word: dynamic int8 picks its activation scales per call, so a
call over several words would give it other numbers than the pane's own run.)

The prompt is read as ``generate`` reads it (``wlm.generate.PromptReader``, 64 tokens per call,
the decoder on the last chunk only); with ``prompt_steps`` each chunk is a step of its own
(a ``PromptStep``), so no ``next()`` does more than a chunk's work.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import torch

from .data import Dictionary
from .threads import pinned
from .generate import GenerationConfig, GumbelSampler, PromptReader, pick, probabilities, prompt_ids

TOP_K = 5
SHADOW_BATCH = 8      # words the reference reads at once as pane 1's shadow (see _Shadow)


@dataclass
class WordInfo:
    """One generated word of one pane."""
    word: str
    p: tuple[float, float]     # probability (reference, other) gave this word, in this pane's context
    tv: float                  # total variation between the two distributions at this step
    same: bool                 # the other model, with the same noise, would have picked this word too


@dataclass
class PairStep:
    index: int
    words: tuple[str, str]
    seconds: tuple[float, float]            # each model's own step (forward + pick) in its own pane
    info: tuple[WordInfo, WordInfo]
    top: list[tuple[str, float, float]] | None = None   # at the step where the texts part: each
    # model's top 5 words and the two drawn, with (reference p, other p), by the reference's p


@dataclass
class PromptStep:
    """A chunk of the prompt read by both models (``generate_pair(..., prompt_steps=True)``)."""
    read: int                  # prompt tokens read so far
    tokens: int                # prompt tokens in all


class _Context:
    """One text as both models have read it: each model's last logits and hidden state."""

    def __init__(self, logits, hidden):
        self.logits, self.hidden = list(logits), list(hidden)
        self._stats = None

    def stats(self, T: float):
        """Both models' distributions here and their total variation (computed once)."""
        if self._stats is None:
            pa, pb = probabilities(self.logits[0], T), probabilities(self.logits[1], T)
            self._stats = pa, pb, 0.5 * float((pa - pb).abs().sum())
        return self._stats

    def feed(self, models, word: int, timed: tuple[int, ...], seconds: list[float],
             only: tuple[int, ...] = (0, 1)) -> "_Context":
        """The models in ``only`` read ``word`` (the others' entries become None); the forwards of
        the models in ``timed`` count in their time."""
        x = torch.tensor([[word]])
        logits, hidden = [], []
        for k, m in enumerate(models):
            if k not in only:
                logits.append(None)
                hidden.append(None)
                continue
            t0 = time.perf_counter()
            out, h = m(x, self.hidden[k])
            if k in timed:
                seconds[k] += time.perf_counter() - t0
            logits.append(out[-1, 0])
            hidden.append(h)
        return _Context(logits, hidden)


def _info(dictionary: Dictionary, ctx: _Context, word: int, same: bool, T: float) -> WordInfo:
    pa, pb, tv = ctx.stats(T)
    return WordInfo(dictionary.idx2word[word], (float(pa[word]), float(pb[word])), tv, same)


def _top(dictionary: Dictionary, ctx: _Context, T: float, drawn: list[int]) -> list[tuple[str, float, float]]:
    pa, pb, _ = ctx.stats(T)
    ids = set(pa.topk(TOP_K).indices.tolist()) | set(pb.topk(TOP_K).indices.tolist()) | set(drawn)
    rows = [(dictionary.idx2word[j], float(pa[j]), float(pb[j])) for j in ids]
    return sorted(rows, key=lambda r: (-r[1], -r[2]))


def generate_pair(models, dictionary: Dictionary, cfg: GenerationConfig,
                  threads: int | None = 1, prompt_steps: bool = False) -> Iterator[PairStep | PromptStep]:
    """Run (reference, other) side by side from one seed; yield one ``PairStep`` per word.

    Every step runs at ``threads`` threads on whichever OS thread asks for it (None: at the
    caller's count). Timings are each model's own forward and pick in its own pane; shadow
    runs and the statistics are not counted (the prompt's reading counts in the first word's).
    With ``prompt_steps``, a prompt longer than one chunk first yields a ``PromptStep`` after
    each chunk but the last, so a caller that bounds its turns by time (``wlm.turns``) can give
    the CPU back in between; without, the first ``next()`` reads the whole prompt.
    """
    models = list(models)
    if len(models) != 2:
        raise ValueError(f"generate_pair takes two models, got {len(models)}")
    return pinned(_steps(models, dictionary, cfg, prompt_steps), threads)


@torch.inference_mode()
def _steps(models, dictionary: Dictionary, cfg: GenerationConfig,
           prompt_steps: bool = False) -> Iterator[PairStep | PromptStep]:
    for m in models:
        m.eval()
    sampler = GumbelSampler(cfg, len(dictionary))
    T = sampler.temperature
    ids = prompt_ids(dictionary, cfg, sampler)
    seconds = [0.0, 0.0]
    readers = [PromptReader(m, ids) for m in models]
    while True:
        for k, r in enumerate(readers):
            t0 = time.perf_counter()
            r.step()
            seconds[k] += time.perf_counter() - t0
        if readers[0].done:
            break
        if prompt_steps:
            yield PromptStep(readers[0].read, len(ids))
    panes = [_Context([r.last for r in readers], [r.hidden for r in readers])] * 2   # shared until the texts part
    shadow = None                              # after they part: the reference's read of pane 1
    for i in range(cfg.words):
        noise = sampler.uniforms()
        words = []
        for k in (0, 1):
            t0 = time.perf_counter()
            words.append(pick(panes[k].logits[k], T, noise))
            seconds[k] += time.perf_counter() - t0
        if shadow is None:
            shared = panes[0] is panes[1]
            same = ([words[0] == words[1]] * 2 if shared else
                    [pick(panes[k].logits[1 - k], T, noise) == words[k] for k in (0, 1)])
            info = tuple(_info(dictionary, panes[k], words[k], same[k], T) for k in (0, 1))
            top = _top(dictionary, panes[0], T, words) if shared and words[0] != words[1] else None
            yield PairStep(i, (info[0].word, info[1].word), tuple(seconds), info, top)
        else:
            # pane 1's step waits for the reference's shadow logits (read in batches, below)
            info0 = _info(dictionary, panes[0], words[0], pick(panes[0].logits[1], T, noise) == words[0], T)
            shadow.wait(i, words, tuple(seconds), info0, panes[1].logits[1], None if noise is None else noise.copy())
            if len(shadow.steps) == SHADOW_BATCH or i + 1 == cfg.words:
                yield from shadow.flush(models[0], dictionary, T)
        seconds = [0.0, 0.0]
        if i + 1 == cfg.words:
            break
        if panes[0] is panes[1] and words[0] == words[1]:
            panes = [panes[0].feed(models, words[0], timed=(0, 1), seconds=seconds)] * 2
            continue
        if shadow is None:                     # they part here: the reference reads pane 1 from now on in batches
            shadow = _Shadow(panes[1].hidden[0])
        shadow.words.append(words[1])
        panes = [panes[0].feed(models, words[0], timed=(0,), seconds=seconds),
                 panes[1].feed(models, words[1], timed=(1,), seconds=seconds, only=(1,))]


class _Shadow:
    """The reference reading pane 1's text once the panes have parted. Its logits at a step only
    tell that step's probabilities and whether it would have picked the same word, never what
    pane 1 writes next, so it reads the words ``SHADOW_BATCH`` at a time in one call (the fp32
    reference's numbers are the same up to rounding; its decoder then reads its 34 MB of weights
    once per batch instead of once per word)."""

    def __init__(self, hidden):
        self.hidden, self.words, self.steps = hidden, [], []

    def wait(self, index, words, seconds, info0, other_logits, noise):
        self.steps.append((index, words, seconds, info0, other_logits, noise))

    def flush(self, model, dictionary: Dictionary, T: float) -> Iterator[PairStep]:
        out, self.hidden = model(torch.tensor(self.words).view(-1, 1), self.hidden)
        for (index, words, seconds, info0, other_logits, noise), ref_logits in zip(self.steps, out[:, 0]):
            ctx = _Context([ref_logits, other_logits], [None, None])
            info1 = _info(dictionary, ctx, words[1], pick(ref_logits, T, noise) == words[1], T)
            yield PairStep(index, (info0.word, info1.word), seconds, (info0, info1), None)
        self.words, self.steps = [], []
