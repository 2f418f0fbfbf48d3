"""Evaluation by the tutorial's protocol: bptt 25, batch 1, hidden state carried over
chunks (detached), loss = sum(len(chunk) * mean chunk loss) / (len(data) - 1)."""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .data import batchify, get_batch
from .model import detach_hidden
from .progress import Progress


@dataclass
class EvalResult:
    loss: float
    ppl: float
    seconds: float
    tokens_per_s: float
    tokens: int           # number of predicted tokens

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


def evaluate(model, ids: torch.Tensor, *, bptt: int = 25, batch_size: int = 1,
             max_tokens: int | None = None, threads: int | None = 1,
             progress: Progress = None, autocast_dtype=None) -> EvalResult:
    """Cross-entropy of ``model`` over the 1-D id tensor ``ids``.

    Args:
        ids: a split of the corpus, e.g. ``corpus.test``.
        bptt, batch_size: chunk length and number of columns (tutorial: 25 and 1).
        max_tokens: use only the first N ids of ``ids`` (None: all).
        threads: torch threads during the run (tutorial: 1); None leaves them as they are.
        progress: called as ``progress(rows_done, rows_total)``.
    """
    if max_tokens is not None:
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2, got {max_tokens}")
        ids = ids[:max_tokens]
    if bptt < 1 or batch_size < 1:
        raise ValueError("bptt and batch_size must be positive")
    data = batchify(ids, batch_size)          # (rows, batch_size)
    if data.size(0) < 2:
        raise ValueError(f"{len(ids)} tokens are too few for batch size {batch_size}")
    device = next(model.parameters(), torch.empty(0)).device
    data = data.to(device)
    was_training = model.training
    model.eval()
    total = 0.0
    with num_threads(threads), torch.inference_mode():
        start = time.perf_counter()
        hidden = model.init_hidden(batch_size)
        rows = data.size(0) - 1
        for i in range(0, rows, bptt):
            x, y = get_batch(data, i, bptt)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits, hidden = model(x, hidden)
            total += len(x) * F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y).item()
            hidden = detach_hidden(hidden)
            if progress:
                progress(min(i + bptt, rows), rows)
        seconds = time.perf_counter() - start
    model.train(was_training)
    loss = total / rows
    tokens = rows * batch_size
    return EvalResult(loss=loss, ppl=math.exp(loss), seconds=seconds,
                      tokens_per_s=tokens / seconds if seconds > 0 else float("inf"), tokens=tokens)
