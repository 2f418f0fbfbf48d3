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
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .data import batchify, get_batch
from .model import detach_hidden
from .progress import Progress
from .threads import num_threads

TRACE_BINS = 100
AGREEMENT_BLOCK_ROWS = 3     # rows of the agreement metrics at a time: 4 arrays x 3 rows x 133 KB stay in a 2 MB L2


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


class Comparison:
    """Models (name -> model; the first is the reference) over the same chunks of ``ids``.

    Args:
        ids: a split of the corpus, e.g. ``corpus.test``.
        bptt, batch_size: chunk length and number of columns (tutorial: 25 and 1).
        max_tokens: use only the first N ids of ``ids`` (None: all).
        autocast_dtype: run the forwards under ``torch.autocast`` (training's validation).
        time_forward: also time each model's forward alone (``forward_seconds``), apart from
            its log-softmax and loss.
    Example:
        >>> c = Comparison({"fp32": model, "qint8": qmodel}, corpus.test, max_tokens=5000)
        >>> while c.step(): pass
        >>> fp32, q = c.results()
    """

    def __init__(self, models: dict, ids: torch.Tensor, *, bptt: int = 25, batch_size: int = 1,
                 max_tokens: int | None = None, autocast_dtype=None, time_forward: bool = False):
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
        self.forward_seconds = dict.fromkeys(self.models, 0.0)     # the forward alone (time_forward)
        self.time_forward = time_forward
        self.loss_sum = dict.fromkeys(self.models, 0.0)
        self.wall = 0.0              # seconds inside step(): the models' own calls plus everything else
        # Per predicted token, for every model but the reference: flat arrays allocated once
        # (13 bytes a token), filled chunk by chunk.
        n = self.rows * batch_size
        self.per_token = {name: {"kl": np.empty(n, np.float32), "overlap": np.empty(n, np.float32),
                                 "top1": np.empty(n, np.bool_), "dp": np.empty(n, np.float32)}
                          for name in list(self.models)[1:]}
        self._filled = 0
        self._scratch = None         # (2, AGREEMENT_BLOCK_ROWS, ntoken) float32, made at the first chunk

    @property
    def tokens(self) -> tuple[int, int]:
        """(tokens done, tokens in all), counting one column."""
        return self.row, self.rows

    @property
    def done(self) -> bool:
        return self.row >= self.rows

    @property
    def agreement_nbytes(self) -> int:
        """Memory held for the per-token agreement metrics (fixed when the comparison is made)."""
        return sum(a.nbytes for acc in self.per_token.values() for a in acc.values())

    @torch.inference_mode()
    def step(self) -> bool:
        """Run every model on the next chunk; False once all chunks are done."""
        if self.done:
            return False
        t_step = time.perf_counter()
        x, y = get_batch(self.data, self.row, self.bptt)
        logp = {}
        for name, model in self.models.items():
            was_training = model.training
            if was_training:
                model.eval()
            amp = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
                   else nullcontext())
            t0 = time.perf_counter()
            with amp:
                logits, hidden = model(x, self.hidden[name])
            if self.time_forward:
                self.forward_seconds[name] += time.perf_counter() - t0
            lp = torch.log_softmax(logits.reshape(-1, logits.size(-1)).float(), dim=-1)   # (T*B, ntoken)
            nll = -float(lp.gather(1, y.view(-1, 1)).sum())
            self.seconds[name] += time.perf_counter() - t0
            if was_training:
                model.train()
            self.hidden[name] = detach_hidden(hidden)
            self.loss_sum[name] += nll / x.size(1)
            logp[name] = lp
        if self.per_token:
            self._agreement(logp, y.view(-1))
        self.row = min(self.row + self.bptt, self.rows)
        self.wall += time.perf_counter() - t_step
        return not self.done

    def _agreement(self, logp: dict, y: torch.Tensor) -> None:
        """KL, overlap, top-1 and dp of this chunk's tokens against the reference.

        Memory traffic is the cost (each (25, 33,278) float32 array is 3.3 MB), so the rows go
        a few at a time (``AGREEMENT_BLOCK_ROWS``) through two scratch buffers, and stay in the
        CPU's L2 cache for all the passes over them; each operation uses whichever of torch
        and numpy is faster here (numpy's argmax and row dot products, torch's exp and sums).
        Nothing is allocated per chunk but a few small arrays.
        """
        k = y.numel()
        lp = {n: v.detach().float().cpu() for n, v in logp.items()}          # (k, ntoken), no copy on the CPU
        ref = lp[next(iter(self.models))]
        if self._scratch is None:
            self._scratch = torch.empty(2, AGREEMENT_BLOCK_ROWS, ref.size(1))
        yi = y.cpu().numpy()
        for i in range(0, k, AGREEMENT_BLOCK_ROWS):
            j = min(k, i + AGREEMENT_BLOCK_ROWS)
            rows, yb = np.arange(j - i), yi[i:j]
            pr, buf = self._scratch[0, :j - i], self._scratch[1, :j - i]
            prn, bufn = pr.numpy(), buf.numpy()
            torch.exp(ref[i:j], out=pr)                                    # p_ref
            pr_y, top_r = prn[rows, yb], ref[i:j].numpy().argmax(-1)
            out = slice(self._filled + i, self._filled + j)
            for name, acc in self.per_token.items():
                lq = lp[name][i:j]
                acc["top1"][out] = lq.numpy().argmax(-1) == top_r
                torch.sub(ref[i:j], lq, out=buf)                           # log p_ref - log p
                acc["kl"][out] = np.vecdot(prn, bufn)
                torch.exp(lq, out=buf)                                     # p
                acc["dp"][out] = bufn[rows, yb] - pr_y
                acc["overlap"][out] = torch.minimum(pr, buf, out=buf).sum(-1).numpy()
        self._filled += k

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
        acc = {k: torch.from_numpy(v[:self._filled]) for k, v in self.per_token[name].items()}
        kl = acc["kl"].double().clamp_min(0)
        overlap = acc["overlap"].double().mean().item()
        bins = min(TRACE_BINS, len(kl))
        per_bin = -(-len(kl) // bins)
        trace = [float(c.mean()) for c in kl.split(per_bin)]
        dp = acc["dp"].double()
        return Agreement(top1=acc["top1"].double().mean().item(), kl_mean=kl.mean().item(),
                         kl_median=kl.median().item(), kl_p99=torch.quantile(kl.float(), 0.99).item(),
                         overlap=overlap, words_before_parting=min(1e6, 1 / max(1e-12, 1 - overlap)),
                         dp_mean=dp.mean().item(), dp_rms=dp.square().mean().sqrt().item(),
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
