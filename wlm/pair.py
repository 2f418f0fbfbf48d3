"""Two models writing side by side from one random stream, with what each step tells.

Both panes draw with the same Gumbel noise (``wlm.generate``), so they write the same words
as long as the two models pick the same word in the same context, and each pane's words are
exactly what ``generate`` writes alone from the same seed. Every word carries both models'
probabilities for it *in that pane's context*: once the texts part, each pane also runs the
other model over its text (a shadow run, not timed), so the comparison stays like for like.

    pane 0: reference model (fp32) writes;  the other model shadows it
    pane 1: the other model (int8) writes;  the reference shadows it
    until the panes part, both share one context and each model runs once per word.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import torch

from .data import Dictionary
from .evaluate import num_threads
from .generate import GenerationConfig, GumbelSampler, pick, probabilities, prompt_ids

TOP_K = 5


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

    def feed(self, models, word: int, timed: tuple[int, ...], seconds: list[float]) -> "_Context":
        """Both models read ``word``; the forwards of the models in ``timed`` count in their time."""
        x = torch.tensor([[word]])
        logits, hidden = [], []
        for k, m in enumerate(models):
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


@torch.inference_mode()
def generate_pair(models, dictionary: Dictionary, cfg: GenerationConfig,
                  threads: int | None = 1) -> Iterator[PairStep]:
    """Run (reference, other) side by side from one seed; yield one ``PairStep`` per word.

    Timings are each model's own forward and pick in its own pane; shadow runs and the
    statistics are not counted.
    """
    models = list(models)
    if len(models) != 2:
        raise ValueError(f"generate_pair takes two models, got {len(models)}")
    for m in models:
        m.eval()
    sampler = GumbelSampler(cfg, len(dictionary))
    T = sampler.temperature
    with num_threads(threads):
        ids = torch.tensor(prompt_ids(dictionary, cfg, sampler), dtype=torch.long).view(-1, 1)
        seconds = [0.0, 0.0]
        logits, hidden = [], []
        for k, m in enumerate(models):
            t0 = time.perf_counter()
            out, h = m(ids, m.init_hidden(1))
            seconds[k] += time.perf_counter() - t0
            logits.append(out[-1, 0])
            hidden.append(h)
        panes = [_Context(logits, hidden)] * 2     # one shared context until the texts part
        for i in range(cfg.words):
            noise = sampler.uniforms()
            words = []
            for k in (0, 1):
                t0 = time.perf_counter()
                words.append(pick(panes[k].logits[k], T, noise))
                seconds[k] += time.perf_counter() - t0
            shared = panes[0] is panes[1]
            # would the other model, in this pane's context and with the same noise, pick this word?
            same = ([words[0] == words[1]] * 2 if shared else
                    [pick(panes[k].logits[1 - k], T, noise) == words[k] for k in (0, 1)])
            info = tuple(_info(dictionary, panes[k], words[k], same[k], T) for k in (0, 1))
            top = None
            if shared and words[0] != words[1]:
                top = _top(dictionary, panes[0], T, words)
            yield PairStep(i, (info[0].word, info[1].word), tuple(seconds), info, top)
            seconds = [0.0, 0.0]
            if i + 1 == cfg.words:
                break
            if shared and words[0] == words[1]:
                panes = [panes[0].feed(models, words[0], timed=(0, 1), seconds=seconds)] * 2
            else:
                panes = [panes[k].feed(models, words[k], timed=(k,), seconds=seconds) for k in (0, 1)]
