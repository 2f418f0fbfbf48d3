"""Read your own text: fp32 and a variant score a text word by word, and where int8 changes its mind.

The text is read as a prompt is (``Dictionary.tokenize`` / ``encode``: WikiText-2 style,
words outside the vocabulary read as ``<unk>`` and listed). Both models start from a zero
state and first read ``<eos>`` (a new line, as every line of the corpus begins), so every
word of the text gets a probability:

    input   <eos>  w1  w2 ... w(n-1)
    target   w1    w2  w3 ...  wn        per word: log p, KL(fp32 || variant), Δ log p

The text goes through the models in chunks of ``CHUNK`` tokens, the hidden state carried
over (memory stays at a chunk's logits). Dynamic int8 picks its activation scales per call,
so a variant's numbers depend on the chunking: the command line and the app use the same.
``Scorer.step()`` reads one chunk, so a caller can share the CPU between chunks (``wlm.turns``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import EOS, UNK, Dictionary
from .stats import batch_means_se, block_tokens, fmt_pm
from .text import format_p

MAX_SCORE_CHARS = 2_000
CHUNK = 64              # tokens per forward call (and per CPU turn in the app)
TOP_CHANGED = 10        # words listed in the report


@dataclass
class ModelScore:
    """One model on the text: log p of each word (nats), their mean NLL and its standard error
    (batch means, ``wlm.stats``; None for a one-word text)."""
    logp: list[float]
    loss: float
    ppl: float
    loss_se: float | None

    @property
    def ppl_se(self) -> float | None:
        """The perplexity's standard error, by the delta method: ppl * loss_se."""
        return None if self.loss_se is None else self.ppl * self.loss_se


@dataclass
class ScoreResult:
    """Both models on one text. ``tokens``: the words as the models read them (``<unk>`` for a
    word outside the vocabulary); ``words``: the same words as written (after WikiText-2
    splitting). Per word: ``kl`` = KL(reference || variant) of the distributions that predict
    it, ``dlogp`` = log p(variant) - log p(reference); ``top1_same``: both rank the same word
    first there; ``top1`` and ``kl_mean`` over all positions."""
    tokens: list[str]
    words: list[str]
    models: dict[str, ModelScore]          # reference first
    kl: list[float]
    dlogp: list[float]
    top1_same: list[bool]
    top1: float
    kl_mean: float
    unknown: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)        # the ids the models read, one per word

    @property
    def names(self) -> tuple[str, str]:
        ref, var = self.models
        return ref, var

    def most_changed(self, k: int = TOP_CHANGED) -> list[int]:
        """Positions of the ``k`` words whose log-probability the variant changed most (|Δ log p|)."""
        return sorted(range(len(self.dlogp)), key=lambda i: -abs(self.dlogp[i]))[:k]


# ---------------------------------------------------------------- input
def check_text(text) -> str:
    """``text`` if it is a string the models can score, else ValueError naming the field."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty: paste or type some words to score")
    if len(text) > MAX_SCORE_CHARS:
        raise ValueError(f"text is {len(text):,} characters long; the limit is "
                         f"MAX_SCORE_CHARS = {MAX_SCORE_CHARS:,} characters")
    return text


def read_text(dictionary: Dictionary, text) -> tuple[list[str], list[int], list[str]]:
    """(words as written, ids, unknown words) of a checked ``text``; ValueError if no word is known."""
    check_text(text)
    words = dictionary.tokenize(text)
    enc = dictionary.encode(text)
    if UNK in dictionary.word2idx and all(i == dictionary.word2idx[UNK] for i in enc.ids):
        raise ValueError(f"text has no word in the models' vocabulary (all {len(enc.ids)} read as {UNK}): "
                         f"nothing the models know to score")
    return words, enc.ids, enc.unknown


# ---------------------------------------------------------------- scoring
class Scorer:
    """Two models (name -> model; the first is the reference) over ``ids``, a chunk per ``step()``.

    Example:
        >>> s = Scorer({"fp32": model, "qint8": qmodel}, dictionary, ids)
        >>> while s.step(): pass
        >>> s.result(words, unknown)
    """

    def __init__(self, models: dict, dictionary: Dictionary, ids: list[int], chunk: int = CHUNK):
        if len(models) != 2:
            raise ValueError(f"Scorer needs two models (reference, variant), got {len(models)}")
        if not ids:
            raise ValueError("Scorer needs at least one word id")
        self.models, self.dictionary, self.chunk = dict(models), dictionary, chunk
        self.ids = list(ids)
        self.inputs = torch.tensor([dictionary.word2idx[EOS]] + self.ids[:-1], dtype=torch.long)   # (n,)
        self.targets = torch.tensor(self.ids, dtype=torch.long)                                    # (n,)
        self.hidden = {n: m.init_hidden(1) for n, m in self.models.items()}
        self.logp = {n: [] for n in self.models}
        self.kl: list[float] = []
        self.top1_same: list[bool] = []
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.ids)

    @torch.inference_mode()
    def step(self) -> bool:
        """Both models read the next chunk; False once the text is read."""
        if self.done:
            return False
        x = self.inputs[self.pos:self.pos + self.chunk]
        y = self.targets[self.pos:self.pos + self.chunk]
        lp = {}
        for name, model in self.models.items():
            logits, self.hidden[name] = model(x.view(-1, 1), self.hidden[name])    # (T, 1, V) or (T, V)
            lp[name] = torch.log_softmax(logits.reshape(len(x), -1).float(), dim=-1)   # (T, V)
            self.logp[name].extend(lp[name].gather(1, y.view(-1, 1)).view(-1).tolist())
        ref, var = lp.values()
        self.kl.extend((ref.exp() * (ref - var)).sum(-1).clamp_min(0).tolist())   # KL(ref || var) per position
        self.top1_same.extend((ref.numpy().argmax(-1) == var.numpy().argmax(-1)).tolist())   # numpy's: 10x torch's here
        self.pos += len(x)
        return not self.done

    def result(self, words: list[str], unknown: list[str]) -> ScoreResult:
        """The scores of a fully read text (``words``, ``unknown``: from ``read_text``)."""
        if not self.done:
            raise RuntimeError(f"the text is read up to word {self.pos} of {len(self.ids)}")
        models = {}
        for name, logp in self.logp.items():
            nll = -np.asarray(logp, np.float64)
            loss = float(nll.mean())
            models[name] = ModelScore(logp, loss, math.exp(loss), batch_means_se(nll))
        ref, var = self.logp.values()
        return ScoreResult(tokens=self.dictionary.decode(self.ids), words=list(words), models=models, kl=self.kl,
                           dlogp=[b - a for a, b in zip(ref, var)], top1_same=self.top1_same,
                           top1=float(np.mean(self.top1_same)), kl_mean=float(np.mean(self.kl)),
                           unknown=list(unknown), ids=list(self.ids))


def score(models: dict, dictionary: Dictionary, text: str, chunk: int = CHUNK) -> ScoreResult:
    """Score ``text`` with two models (name -> model, reference first), from a zero state.

    Raises ValueError (naming ``text``) for a text that is not a string, is empty, is longer
    than ``MAX_SCORE_CHARS``, or has no word in the vocabulary."""
    words, ids, unknown = read_text(dictionary, text)
    s = Scorer(models, dictionary, ids, chunk)
    while s.step():
        pass
    return s.result(words, unknown)


# ---------------------------------------------------------------- output
def se_note(n: int) -> str:
    """How the ± of a text of ``n`` words was found."""
    if n < 2:
        return "no standard error from a single word"
    b = block_tokens(n)
    return (f"± one standard error by batch means over blocks of {b} word{'s' if b != 1 else ''} (wlm.stats; "
            f"perplexity's by the delta method), a lower bound on a text this short")


def to_json(result: ScoreResult) -> dict:
    """The result as plain JSON data."""
    return {"tokens": result.tokens,
            "models": {n: {"logp": m.logp, "loss": m.loss, "ppl": m.ppl, "loss_se": m.loss_se}
                       for n, m in result.models.items()},
            "per_word": [{"word": w, "kl": k, "dlogp": d} for w, k, d in zip(result.words, result.kl, result.dlogp)],
            "unknown": result.unknown, "top1": result.top1, "kl_mean": result.kl_mean}


def format_report(result: ScoreResult) -> str:
    """A short plain-text report: each model's perplexity, the agreement, the words the
    variant changed most with both probabilities."""
    ref, var = result.names
    n = len(result.tokens)
    lines = [f"{n} words scored, each from the words before it (the first after a new line)"]
    if result.unknown:
        lines[0] += f"; {len(result.unknown)} not in the vocabulary, read as {UNK}: {', '.join(result.unknown)}"
    lines += ["", f"{'model':<22} {'perplexity':>18} {'loss (nats)':>18}"]
    for name, m in result.models.items():
        lines.append(f"{name:<22} {fmt_pm(m.ppl, m.ppl_se, 1, sign=False):>18} "
                     f"{fmt_pm(m.loss, m.loss_se, 3, sign=False):>18}")
    lines += ["", f"agreement of {var} with {ref}: top-1 the same at {sum(result.top1_same)} of {n} positions "
                  f"({result.top1:.1%}), mean KL({ref} || {var}) {result.kl_mean:.4f} nats",
              "", f"words whose probability {var} changed most:",
              f"{'word':<20} {'p(' + ref + ')':>10} {'p(' + var + ')':>10} {'Δ log p':>8} {'KL':>8}"]
    a, b = (result.models[k].logp for k in result.names)
    for i in result.most_changed():
        lines.append(f"{result.words[i][:20]:<20} {format_p(math.exp(a[i])):>10} {format_p(math.exp(b[i])):>10} "
                     f"{result.dlogp[i]:>+8.3f} {result.kl[i]:>8.4f}")
    lines += ["", se_note(n) + "; KL per word between the two distributions that predict it."]
    return "\n".join(lines)
