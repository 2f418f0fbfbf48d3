"""Evaluation by the tutorial's protocol, for one model or several in lockstep.

Protocol: bptt 25, batch 1, hidden state carried over chunks (detached),
loss = sum(len(chunk) * mean chunk loss) / (len(data) - 1).

``Comparison`` is the one loop every measurement uses (``wlm eval``, ``wlm bench``, the app):
each test chunk goes through every model before the next chunk, each model's time counts only
its own calls (forward and loss), so slow drift of a shared machine hits all models alike.
Against the first model (the reference) it accumulates, per predicted token, the agreement
metrics that llama.cpp's ``perplexity --kl-divergence`` reports for quantized LLMs.
``step()`` runs one chunk, so a caller can do other work between chunks.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field

import torch

from .data import batchify, get_batch
from .model import detach_hidden
from .progress import Progress

TRACE_BINS = 100


@dataclass
class Agreement:
    """How closely a model follows the reference on the same tokens (per predicted token)."""
    top1: float                  # share of tokens where both rank the same word first
    kl_mean: float               # KL(reference || model), nats
    kl_median: float
    kl_p99: float
    overlap: float               # mean 1 - TV: how often a maximal coupling picks the same word
    words_before_parting: float  # 1 / (1 - overlap), at most 1e6: expected identical words when coupled
    dp_mean: float               # change in probability of the true next word (model - reference)
    dp_rms: float
    kl_trace: list[float] = field(default_factory=list)   # mean KL per bin along the text
    trace_bin_tokens: int = 0


@dataclass
class EvalResult:
    loss: float
    ppl: float
    seconds: float               # this model's own forward and loss calls
    tokens_per_s: float
    tokens: int                  # number of predicted tokens
    agreement: Agreement | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def num_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)``, restoring the old value after."""
    if n is None:
        yield
        return
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Comparison:
    """Models (name -> model; the first is the reference) over the same chunks of ``ids``.

    Args:
        ids: a split of the corpus, e.g. ``corpus.test``.
        bptt, batch_size: chunk length and number of columns (tutorial: 25 and 1).
        max_tokens: use only the first N ids of ``ids`` (None: all).
        autocast_dtype: run the forwards under ``torch.autocast`` (training's validation).
    Example:
        >>> c = Comparison({"fp32": model, "qint8": qmodel}, corpus.test, max_tokens=5000)
        >>> while c.step(): pass
        >>> fp32, q = c.results()
    """

    def __init__(self, models: dict, ids: torch.Tensor, *, bptt: int = 25, batch_size: int = 1,
                 max_tokens: int | None = None, autocast_dtype=None):
        if not models:
            raise ValueError("Comparison needs at least one model")
        if max_tokens is not None:
            if max_tokens < 2:
                raise ValueError(f"max_tokens must be at least 2, got {max_tokens}")
            ids = ids[:max_tokens]
        if bptt < 1 or batch_size < 1:
            raise ValueError("bptt and batch_size must be positive")
        self.models, self.bptt, self.autocast_dtype = dict(models), bptt, autocast_dtype
        ref = next(iter(self.models.values()))
        self.device = next(ref.parameters(), torch.empty(0)).device
        self.data = batchify(ids, batch_size).to(self.device)        # (rows, batch_size)
        if self.data.size(0) < 2:
            raise ValueError(f"{len(ids)} tokens are too few for batch size {batch_size}")
        self.rows = self.data.size(0) - 1
        self.row = 0
        self.hidden = {n: m.init_hidden(batch_size) for n, m in self.models.items()}
        self.seconds = dict.fromkeys(self.models, 0.0)
        self.loss_sum = dict.fromkeys(self.models, 0.0)
        # per predicted token, for every model but the reference
        self.per_token = {n: {"kl": [], "overlap": [], "top1": [], "dp": []} for n in list(self.models)[1:]}

    @property
    def tokens(self) -> tuple[int, int]:
        """(tokens done, tokens in all), counting one column."""
        return self.row, self.rows

    @property
    def done(self) -> bool:
        return self.row >= self.rows

    @torch.inference_mode()
    def step(self) -> bool:
        """Run every model on the next chunk; False once all chunks are done."""
        if self.done:
            return False
        x, y = get_batch(self.data, self.row, self.bptt)
        logp = {}
        for name, model in self.models.items():
            was_training = model.training
            model.eval()
            amp = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
                   else nullcontext())
            t0 = time.perf_counter()
            with amp:
                logits, hidden = model(x, self.hidden[name])
            lp = torch.log_softmax(logits.reshape(-1, logits.size(-1)).float(), dim=-1)   # (T*B, ntoken)
            nll = -float(lp.gather(1, y.view(-1, 1)).sum())
            self.seconds[name] += time.perf_counter() - t0
            model.train(was_training)
            self.hidden[name] = detach_hidden(hidden)
            self.loss_sum[name] += nll / x.size(1)
            logp[name] = lp
        if self.per_token:
            self._agreement(logp, y.view(-1))
        self.row = min(self.row + self.bptt, self.rows)
        return not self.done

    def _agreement(self, logp: dict, y: torch.Tensor) -> None:
        ref_name = next(iter(self.models))
        lr = logp[ref_name]
        pr = lr.exp()
        top_r = lr.argmax(-1)
        pr_y = pr.gather(1, y.view(-1, 1)).squeeze(1)
        for name, acc in self.per_token.items():
            lq = logp[name]
            pq = lq.exp()
            acc["kl"].append((pr * (lr - lq)).sum(-1))
            acc["overlap"].append(torch.minimum(pr, pq).sum(-1))
            acc["top1"].append(lq.argmax(-1) == top_r)
            acc["dp"].append(pq.gather(1, y.view(-1, 1)).squeeze(1) - pr_y)

    def run(self, *, threads: int | None = 1, progress: Progress = None) -> list[EvalResult]:
        """Step through all remaining chunks; ``progress(tokens_done, tokens_total)``."""
        with num_threads(threads):
            while self.step():
                if progress:
                    progress(*self.tokens)
        if progress:
            progress(*self.tokens)
        return self.results()

    def results(self) -> list[EvalResult]:
        """One result per model, in order, over the chunks done so far."""
        tokens = self.row * self.data.size(1)
        out = []
        for name in self.models:
            s = self.seconds[name]
            loss = self.loss_sum[name] / self.row if self.row else float("nan")
            out.append(EvalResult(loss=loss, ppl=math.exp(loss) if self.row else float("nan"), seconds=s,
                                  tokens_per_s=tokens / s if s > 0 else float("inf"), tokens=tokens,
                                  agreement=self._summary(name) if name in self.per_token and self.row else None))
        return out

    def _summary(self, name: str) -> Agreement:
        acc = {k: torch.cat(v).double() for k, v in self.per_token[name].items()}
        kl, overlap = acc["kl"].clamp_min(0), acc["overlap"].mean().item()
        bins = min(TRACE_BINS, len(kl))
        per_bin = -(-len(kl) // bins)
        trace = [float(c.mean()) for c in kl.split(per_bin)]
        return Agreement(top1=acc["top1"].mean().item(), kl_mean=kl.mean().item(),
                         kl_median=kl.median().item(), kl_p99=torch.quantile(kl.float(), 0.99).item(),
                         overlap=overlap, words_before_parting=min(1e6, 1 / max(1e-12, 1 - overlap)),
                         dp_mean=acc["dp"].mean().item(), dp_rms=acc["dp"].square().mean().sqrt().item(),
                         kl_trace=trace, trace_bin_tokens=per_bin)


def evaluate(model, ids: torch.Tensor, *, bptt: int = 25, batch_size: int = 1,
             max_tokens: int | None = None, threads: int | None = 1,
             progress: Progress = None, autocast_dtype=None) -> EvalResult:
    """Cross-entropy of one ``model`` over the 1-D id tensor ``ids`` (see ``Comparison``).

    ``progress`` is called as ``progress(rows_done, rows_total)``.
    """
    c = Comparison({"model": model}, ids, bptt=bptt, batch_size=batch_size, max_tokens=max_tokens,
                   autocast_dtype=autocast_dtype)
    return c.run(threads=threads, progress=progress)[0]
