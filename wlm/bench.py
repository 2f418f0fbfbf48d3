"""Side-by-side measurement of fp32 and quantized models: size, eval time and loss, words/s.

Both models run in one process, one after the other, on the same tokens and thread count,
so the ratio between them is meaningful even on a noisy machine.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass

import torch

from .data import Dictionary
from .evaluate import evaluate, num_threads
from .generate import GenerationConfig, generate
from .progress import Progress
from .quantize import model_size


@dataclass
class Measurement:
    model: str
    size_mb: float
    modules_mb: dict
    loss: float
    ppl: float
    seconds: float
    tokens_per_s: float
    tokens: int
    speedup: float = 1.0          # fp32 seconds / this model's seconds
    loss_change: float = 0.0      # this model's loss - fp32 loss

    def to_dict(self) -> dict:
        return asdict(self)


def compare(models: dict, ids: torch.Tensor, *, max_tokens: int | None = None, threads: int = 1,
            progress: Progress = None) -> list[Measurement]:
    """Evaluate each model (name -> model; the first is the reference) on the same tokens.

    ``progress(done, total)`` counts tokens over all models together.
    """
    n = len(ids) if max_tokens is None else min(max_tokens, len(ids))
    out: list[Measurement] = []
    for k, (name, model) in enumerate(models.items()):
        size = model_size(model)
        step = (lambda d, t, k=k: progress(k * t + d, len(models) * t)) if progress else None
        r = evaluate(model, ids, max_tokens=n, threads=threads, progress=step)
        m = Measurement(name, size.total_mb, size.modules_mb, r.loss, r.ppl, r.seconds, r.tokens_per_s, r.tokens)
        if out:
            m.speedup = out[0].seconds / r.seconds
            m.loss_change = r.loss - out[0].loss
        out.append(m)
    return out


def generation_rate(model, dictionary: Dictionary, words: int = 200, threads: int = 1, seed: int = 0) -> dict:
    """Words per second and ms per word of plain generation (no UI), temperature 1."""
    with num_threads(threads):
        it = generate(model, dictionary, GenerationConfig(words=words, seed=seed))
        next(it)                                  # prompt/start word and first step: warm-up
        t0 = time.perf_counter()
        n = sum(1 for _ in it)
        dt = time.perf_counter() - t0
    return {"words_per_s": n / dt, "ms_per_word": 1000 * dt / n, "words": n}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info(threads: int | None = None) -> dict:
    """The facts eval timing depends on."""
    flags = _cpu_flags()
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "avx512_vnni": "avx512_vnni" in flags,
        "avx2": "avx2" in flags,
        "torch": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "threads": threads if threads is not None else torch.get_num_threads(),
    }


def format_table(rows: list[Measurement]) -> str:
    head = f"{'model':<8} {'size MB':>9} {'loss':>7} {'ppl':>8} {'seconds':>8} {'tokens/s':>9} {'speed-up':>9} {'loss chg':>9}"
    lines = [head, "-" * len(head)]
    for m in rows:
        lines.append(f"{m.model:<8} {m.size_mb:9.3f} {m.loss:7.4f} {m.ppl:8.2f} {m.seconds:8.2f} {m.tokens_per_s:9.0f} "
                     f"{m.speedup:8.2f}x {m.loss_change:+9.4f}")
    return "\n".join(lines)
