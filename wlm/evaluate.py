"""Evaluation by the tutorial's protocol, for one model or several on the same tokens.

Protocol: bptt 25, batch 1, hidden state carried over chunks (detached),
loss = sum(len(chunk) * mean chunk loss) / (len(data) - 1).

``Comparison`` is the one loop every measurement uses (``wlm eval``, ``wlm bench``, the app).
The text is cut into blocks of ``block_chunks`` chunks (8 x 25 = 200 tokens). Each model runs
a whole block before the next model starts it, so it runs chunk after chunk with its weights
in the CPU's caches, as it would alone; every model runs every block before the next block
starts, so slow drift of a shared machine still hits all models alike (one block of all
models takes about a second). The reference (the first model) runs each block first, and
its log-probabilities for that block are kept (one block, bounded memory) to compare the
others with. The order of the others alternates from block to block. A model's log-probs are
compared with the reference's after its last chunk of the block, not between its chunks, so
nothing but the model runs from one of its timed chunks to the next. Each model's time counts
only its own calls (forward and loss), after one untimed warm-up call (an ONNX Runtime
session is made at its first call: 41-325 ms that are not the model's speed).

Against the reference it keeps, per predicted token, the agreement metrics that llama.cpp's
``perplexity --kl-divergence`` reports for quantized LLMs, and every model's loss per token,
so that each figure gets a standard error by batch means (``wlm.stats``). ``step()`` runs one
model over one block, so a caller can do other work between steps.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from . import stats
from .data import batchify, get_batch
from .model import detach_hidden
from .progress import Progress
from .threads import num_threads

TRACE_BINS = 100
AGREEMENT_BLOCK_ROWS = 3     # rows of the agreement metrics at a time: 4 arrays x 3 rows x 133 KB stay in a 2 MB L2
DEFAULT_BLOCK_CHUNKS = 8     # chunks a model runs in a row: its first one starts with cold caches, the other 7 warm


NEVER_PARTS = 1e6            # words_before_parting's cap: the two samples never part (o = 1)


def words_before_parting(overlap: float) -> float:
    """Expected identical words before two coupled samples first differ, when each step agrees
    with probability ``overlap``: sum over k >= 1 of o^k = o / (1 - o) (at most ``NEVER_PARTS``)."""
    return min(NEVER_PARTS, overlap / max(1e-12, 1 - overlap))


def fmt_parting(words: float, se: float | None) -> str:
    """``"27.0 ± 0.2"``; ``"never"`` at the cap (identical distributions: the samples never part)."""
    return "never" if words >= NEVER_PARTS else stats.fmt_pm(words, se, 1, False)


@dataclass
class Agreement:
    """How closely a model follows the reference on the same tokens (per predicted token).

    ``*_se``: standard errors by batch means over blocks of ``se_block_tokens`` tokens
    (``wlm.stats``); None in records made before they existed."""
    top1: float                  # share of tokens where both rank the same word first
    kl_mean: float               # KL(reference || model), nats
    kl_median: float
    kl_p99: float
    overlap: float               # mean 1 - TV: how often a maximal coupling picks the same word
    words_before_parting: float  # o / (1 - o): expected identical words before coupled samples part
    dp_mean: float               # change in probability of the true next word (model - reference)
    dp_rms: float
    kl_trace: list[float] = field(default_factory=list)   # mean KL per bin along the text
    trace_bin_tokens: int = 0
    kl_mean_se: float | None = None
    top1_se: float | None = None
    overlap_se: float | None = None
    dp_mean_se: float | None = None
    dp_rms_se: float | None = None
    words_before_parting_se: float | None = None
    se_block_tokens: int | None = None

    def __post_init__(self):
        # derived from the overlap, so a record stored with the old 1 / (1 - o) reads right too
        self.words_before_parting = words_before_parting(self.overlap)


@dataclass
class EvalResult:
    loss: float
    ppl: float
    seconds: float               # this model's own forward and loss calls
    tokens_per_s: float
    tokens: int                  # number of predicted tokens
    agreement: Agreement | None = None
    loss_se: float | None = None          # batch means over blocks of se_block_tokens tokens
    ppl_se: float | None = None           # ppl * loss_se (delta method)
    se_block_tokens: int | None = None

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
        block_chunks: chunks each model runs in a row (see the module's docstring); 1 is the
            old lockstep, chunk by chunk.
        warm: call each model once, untimed, before its first timed chunk.
    Example:
        >>> c = Comparison({"fp32": model, "qint8": qmodel}, corpus.test, max_tokens=5000)
        >>> while c.step(): pass
        >>> fp32, q = c.results()
    """

    def __init__(self, models: dict, ids: torch.Tensor, *, bptt: int = 25, batch_size: int = 1,
                 max_tokens: int | None = None, autocast_dtype=None, time_forward: bool = False,
                 block_chunks: int = DEFAULT_BLOCK_CHUNKS, warm: bool = True):
        if not models:
            raise ValueError("Comparison needs at least one model")
        if max_tokens is not None:
            if max_tokens < 2:
                raise ValueError(f"max_tokens must be at least 2, got {max_tokens}")
            ids = ids[:max_tokens]
        if bptt < 1 or batch_size < 1:
            raise ValueError("bptt and batch_size must be positive")
        if block_chunks < 1:
            raise ValueError(f"block_chunks must be at least 1, got {block_chunks}")
        self.models, self.bptt, self.autocast_dtype = dict(models), bptt, autocast_dtype
        self.names = list(self.models)
        self.reference = self.names[0]
        ref = self.models[self.reference]
        self.device = next(ref.parameters(), torch.empty(0)).device
        self.data = batchify(ids, batch_size).to(self.device)        # (rows, batch_size)
        if self.data.size(0) < 2:
            raise ValueError(f"{len(ids)} tokens are too few for batch size {batch_size}")
        self.rows = self.data.size(0) - 1
        self.row = 0                 # rows done by every model (a block boundary)
        self.block_chunks, self.warm_first, self.time_forward = block_chunks, warm, time_forward
        self.chunks = -(-self.rows // bptt)
        self.blocks = -(-self.chunks // block_chunks)
        self.block = 0               # the block in progress
        self._queue: list[str] = []  # models still to run the block in progress
        self._warm: set[str] = set()
        self.hidden = {n: m.init_hidden(batch_size) for n, m in self.models.items()}
        self.seconds = dict.fromkeys(self.models, 0.0)             # every chunk run so far
        self.forward_seconds = dict.fromkeys(self.models, 0.0)     # the forward alone (time_forward)
        self.warm_seconds = dict.fromkeys(self.models, 0.0)        # the untimed warm-up calls
        self.wall = 0.0              # seconds inside step(): the models' own calls plus everything else
        # Per chunk (seconds, summed loss) and per token (loss): arrays allocated once, filled
        # as the models go; per block: the wall time of all its steps.
        n = self.rows * batch_size
        self.chunk_seconds = {name: np.zeros(self.chunks) for name in self.names}
        self.chunk_nll = {name: np.zeros(self.chunks) for name in self.names}
        self.token_loss = {name: np.empty(n, np.float32) for name in self.names}
        self.block_wall = np.zeros(self.blocks)
        self.block_models = np.zeros(self.blocks)
        # Per predicted token, for every model but the reference (13 bytes a token).
        self.per_token = {name: {"kl": np.empty(n, np.float32), "overlap": np.empty(n, np.float32),
                                 "top1": np.empty(n, np.bool_), "dp": np.empty(n, np.float32)}
                          for name in self.names[1:]}
        # The reference's block, for the others to compare with: log-probs and top word
        self._ref_lp = None          # (block_chunks * bptt * batch_size, ntoken) float32, made at the first block
        self._lp = None              # the same, for the other models' log-probs, one model at a time
        self._ref_top = np.empty(block_chunks * bptt * batch_size, np.int64)
        self._scratch = None         # (2, AGREEMENT_BLOCK_ROWS, ntoken) float32

    @property
    def tokens(self) -> tuple[int, int]:
        """(tokens done by every model, tokens in all), counting one column."""
        return self.row, self.rows

    @property
    def done(self) -> bool:
        return self.row >= self.rows

    @property
    def agreement_nbytes(self) -> int:
        """Memory held for the per-token agreement metrics (fixed when the comparison is made)."""
        return sum(a.nbytes for acc in self.per_token.values() for a in acc.values())

    @property
    def nbytes(self) -> int:
        """All the memory the comparison holds for its figures: agreement, per-token losses,
        per-chunk times and the blocks' log-probs (bounded by ``block_chunks``, not the text)."""
        ref = sum(b.nbytes for b in (self._ref_lp, self._lp) if b is not None)
        return (self.agreement_nbytes + sum(a.nbytes for a in self.token_loss.values())
                + 2 * sum(a.nbytes for a in self.chunk_seconds.values()) + ref)

    def _chunk_range(self, block: int) -> range:
        first = block * self.block_chunks
        return range(first, min(self.chunks, first + self.block_chunks))

    def _order(self, block: int) -> list[str]:
        """The reference first (the others compare with its block), the others forwards on even
        blocks and backwards on odd ones, so no model always runs right after the same one."""
        rest = self.names[1:]
        return [self.reference, *(rest if block % 2 == 0 else rest[::-1])]

    @torch.inference_mode()
    def warm(self, names=None) -> None:
        """Call each model (``names``, default all) not called yet once on the first chunk, with a
        fresh hidden state, untimed: sessions, caches and allocations made on a first call are
        not the model's speed. ``step`` does it by itself; a caller that times the models' parts
        calls it first."""
        x, _ = get_batch(self.data, 0, self.bptt)
        for name in names or self.names:
            if name in self._warm:
                continue
            model = self.models[name]
            t0 = time.perf_counter()
            with self._mode(model):
                model(x, model.init_hidden(self.data.size(1)))
            self.warm_seconds[name] += time.perf_counter() - t0
            self._warm.add(name)

    @contextmanager
    def _mode(self, model):
        """Eval mode and autocast for one model's calls; its training mode restored after."""
        was_training = model.training
        if was_training:
            model.eval()
        amp = torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else nullcontext()
        try:
            with amp:
                yield
        finally:
            if was_training:
                model.train()

    @torch.inference_mode()
    def step(self) -> bool:
        """Run one model over the block in progress (the next model in the block's order); False
        once every model has run every block."""
        if self.done:
            return False
        if not self._queue:
            self._queue = self._order(self.block)
        name, blk = self._queue.pop(0), self.block
        if self.warm_first and name not in self._warm:
            self.warm([name])                     # before t_step: not part of the wall time either
        t_step = time.perf_counter()
        model, bsz = self.models[name], self.data.size(1)
        is_ref = name == self.reference and len(self.names) > 1
        own = 0.0
        later = []      # the block's chunks, compared only after its last one: between two timed chunks
        #                 nothing else runs, so the model keeps the CPU's caches as it would alone
        with self._mode(model):
            for k, chunk in enumerate(self._chunk_range(blk)):
                row = chunk * self.bptt
                x, y = get_batch(self.data, row, self.bptt)
                at = k * self.bptt * bsz
                t0 = time.perf_counter()
                logits, hidden = model(x, self.hidden[name])
                if self.time_forward:
                    self.forward_seconds[name] += time.perf_counter() - t0
                logits = logits.reshape(-1, logits.size(-1)).float()
                # log-probs into the block's buffer (the reference's is kept to compare the others with):
                # the same memory every block, never fresh pages for the allocator to fault in
                buf = self._block_buffer(is_ref, logits.size(-1))
                lp = torch.log_softmax(logits, dim=-1, out=buf[at:at + len(logits)])
                nll_tok = lp.gather(1, y.view(-1, 1))
                nll = -float(nll_tok.sum())
                dt = time.perf_counter() - t0
                self.seconds[name] += dt
                own += dt
                self.hidden[name] = detach_hidden(hidden)
                # the rest is bookkeeping, outside the model's time
                self.chunk_seconds[name][chunk] = dt
                self.chunk_nll[name][chunk] = nll / bsz
                first, tokens = row * bsz, y.numel()
                self.token_loss[name][first:first + tokens] = -nll_tok.view(-1).float().cpu().numpy()
                if is_ref or name in self.per_token:
                    later.append((lp, y, at, first))
            for lp, y, at, first in later:
                if is_ref:
                    self._ref_top[at:at + len(lp)] = lp.argmax(-1).cpu().numpy()
                else:
                    self._agreement(name, lp, y, at, first)
        if not self._queue:                   # every model has run this block
            self.row = min((self._chunk_range(blk)[-1] + 1) * self.bptt, self.rows)
            self.block += 1
        wall = time.perf_counter() - t_step
        self.wall += wall
        self.block_wall[blk] += wall
        self.block_models[blk] += own
        return not self.done

    def _block_buffer(self, reference: bool, ntoken: int) -> torch.Tensor:
        """The (block_chunks * bptt * batch_size, ntoken) float32 buffer a block's log-probs go to:
        the reference's, kept for the block, or the one the other models share in turn."""
        rows = len(self._ref_top)
        if reference:
            if self._ref_lp is None:
                self._ref_lp = torch.empty(rows, ntoken, device=self.device)
                self._scratch = torch.empty(2, AGREEMENT_BLOCK_ROWS, ntoken)
            return self._ref_lp
        if self._lp is None:
            self._lp = torch.empty(rows, ntoken, device=self.device)
        return self._lp

    def _agreement(self, name: str, lq: torch.Tensor, y: torch.Tensor, at: int, first: int) -> None:
        """KL, overlap, top-1 and dp of one chunk's tokens of ``name`` against the reference's
        log-probs for the same tokens (kept at ``at`` in the block buffer).

        Memory traffic is the cost (each (25, 33,278) float32 array is 3.3 MB), so the rows go
        a few at a time (``AGREEMENT_BLOCK_ROWS``) through two scratch buffers, and stay in the
        CPU's L2 cache for all the passes over them; each operation uses whichever of torch
        and numpy is faster here (numpy's argmax and row dot products, torch's exp and sums).
        Nothing is allocated per chunk but a few small arrays.
        """
        lq = lq.detach().float().cpu()                                      # (k, ntoken), no copy on the CPU
        k = lq.size(0)
        ref = self._ref_lp[at:at + k].cpu()
        yi = y.cpu().numpy()
        acc = self.per_token[name]
        for i in range(0, k, AGREEMENT_BLOCK_ROWS):
            j = min(k, i + AGREEMENT_BLOCK_ROWS)
            rows, yb = np.arange(j - i), yi[i:j]
            pr, buf = self._scratch[0, :j - i], self._scratch[1, :j - i]
            prn, bufn = pr.numpy(), buf.numpy()
            out = slice(first + i, first + j)
            lqb = lq[i:j]
            acc["top1"][out] = lqb.numpy().argmax(-1) == self._ref_top[at + i:at + j]
            torch.exp(ref[i:j], out=pr)                                    # p_ref
            torch.sub(ref[i:j], lqb, out=buf)                              # log p_ref - log p
            acc["kl"][out] = np.vecdot(prn, bufn)
            torch.exp(lqb, out=buf)                                        # p
            acc["dp"][out] = bufn[rows, yb] - prn[rows, yb]
            acc["overlap"][out] = torch.minimum(pr, buf, out=buf).sum(-1).numpy()

    def run(self, *, threads: int | None = 1, progress: Progress = None) -> list[EvalResult]:
        """Step through all remaining blocks; ``progress(tokens_done, tokens_total)``."""
        with num_threads(threads):
            while self.step():
                if progress:
                    progress(*self.tokens)
        if progress:
            progress(*self.tokens)
        return self.results()

    # ------------------------------------------------------------------ figures
    @property
    def _done_chunks(self) -> int:
        return -(-self.row // self.bptt)

    @property
    def se_block_tokens(self) -> int:
        """The batch-means block length for the tokens done (``wlm.stats.block_tokens``)."""
        return stats.block_tokens(max(1, self.row * self.data.size(1)))

    def _tokens_of(self, name: str, key: str | None = None) -> np.ndarray:
        n = self.row * self.data.size(1)
        return self.token_loss[name][:n] if key is None else self.per_token[name][key][:n]

    def loss_change_se(self, name: str, ref: str | None = None) -> float | None:
        """Standard error of ``name``'s loss minus ``ref``'s (default the reference) on the same
        tokens: batch means of the per-token difference (0 for a model against itself)."""
        return stats.paired_se(self._tokens_of(name), self._tokens_of(ref or self.reference), self.se_block_tokens)

    def metric_cov(self, names: list[str], key: str = "kl") -> np.ndarray | None:
        """Covariance of the means of a per-token agreement metric (``kl``, ``overlap``, ``top1``,
        ``dp``) of ``names`` (not the reference), by batch means: the standard error of any sum
        or difference of them is sqrt(w' C w). None with fewer than 2 blocks."""
        b = self.se_block_tokens
        means = np.stack([stats.batch_means(self._tokens_of(n, key), b) for n in names])   # (models, blocks)
        if means.shape[1] < 2:
            return None
        return np.atleast_2d(np.cov(means, ddof=1)) / means.shape[1]

    def speedup_ci(self, name: str, z: float = stats.Z95) -> list[float] | None:
        """[low, high] of the reference's seconds / ``name``'s seconds over the chunks done, from
        the spread over blocks of about ``se_block_tokens`` tokens (paired: the same chunks, run
        within a second of each other)."""
        per = max(1, self.se_block_tokens // self.bptt)
        c = self._done_chunks
        r = stats.ratio_ci(stats.block_sums(self.chunk_seconds[self.reference][:c], per),
                           stats.block_sums(self.chunk_seconds[name][:c], per), z)
        return [r[1], r[2]] if r else None

    def cost_ci(self, z: float = stats.Z95) -> tuple[float, float, float] | None:
        """The cost of measuring, wall time / the models' own time, with a ~95% interval from
        the spread over blocks: (ratio, low, high)."""
        per = max(1, self.se_block_tokens // (self.bptt * self.block_chunks))
        if self.block < 1:                    # blocks every model has run
            return None
        return stats.ratio_ci(stats.block_sums(self.block_wall[:self.block], per),
                              stats.block_sums(self.block_models[:self.block], per), z)

    def results(self) -> list[EvalResult]:
        """One result per model, in order, over the tokens every model has done so far."""
        tokens = self.row * self.data.size(1)
        chunks = self._done_chunks
        block = self.se_block_tokens
        out = []
        for name in self.names:
            s = float(self.chunk_seconds[name][:chunks].sum())
            if not self.row:
                out.append(EvalResult(float("nan"), float("nan"), s, float("inf"), 0))
                continue
            loss = float(self.chunk_nll[name][:chunks].sum()) / self.row
            se = stats.batch_means_se(self._tokens_of(name), block)
            ppl = math.exp(loss)
            out.append(EvalResult(loss=loss, ppl=ppl, seconds=s,
                                  tokens_per_s=tokens / s if s > 0 else float("inf"), tokens=tokens,
                                  agreement=self._summary(name) if name in self.per_token else None,
                                  loss_se=se, ppl_se=ppl * se if se is not None else None, se_block_tokens=block))
        return out

    def _summary(self, name: str) -> Agreement:
        acc = {k: self._tokens_of(name, k) for k in self.per_token[name]}
        kl = torch.from_numpy(acc["kl"]).double().clamp_min(0)
        overlap = float(acc["overlap"].astype(np.float64).mean())
        bins = min(TRACE_BINS, len(kl))
        per_bin = -(-len(kl) // bins)
        trace = [float(c.mean()) for c in kl.split(per_bin)]
        dp = acc["dp"].astype(np.float64)
        b = self.se_block_tokens
        overlap_se = stats.batch_means_se(acc["overlap"], b)
        return Agreement(top1=float(acc["top1"].mean()), kl_mean=kl.mean().item(),
                         kl_median=kl.median().item(), kl_p99=torch.quantile(kl.float(), 0.99).item(),
                         overlap=overlap, words_before_parting=words_before_parting(overlap),
                         dp_mean=float(dp.mean()), dp_rms=math.sqrt(float(np.mean(dp * dp))),
                         kl_trace=trace, trace_bin_tokens=per_bin,
                         kl_mean_se=stats.batch_means_se(kl.numpy(), b),
                         top1_se=stats.batch_means_se(acc["top1"], b), overlap_se=overlap_se,
                         dp_mean_se=stats.batch_means_se(dp, b), dp_rms_se=stats.rms_se(dp, b),
                         # d/do o / (1 - o) = 1 / (1 - o)^2 (delta method)
                         words_before_parting_se=(min(NEVER_PARTS, overlap_se / max(1e-12, 1 - overlap) ** 2)
                                                  if overlap_se is not None else None),
                         se_block_tokens=b)


def evaluate(model, ids: torch.Tensor, *, bptt: int = 25, batch_size: int = 1,
             max_tokens: int | None = None, threads: int | None = 1,
             progress: Progress = None, autocast_dtype=None) -> EvalResult:
    """Cross-entropy of one ``model`` over the 1-D id tensor ``ids`` (see ``Comparison``).

    ``progress`` is called as ``progress(rows_done, rows_total)``.
    """
    c = Comparison({"model": model}, ids, bptt=bptt, batch_size=batch_size, max_tokens=max_tokens,
                   autocast_dtype=autocast_dtype)
    return c.run(threads=threads, progress=progress)[0]
