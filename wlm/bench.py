"""Side-by-side measurement of fp32 and quantized models: size, eval time, loss, agreement, words/s.

All models run in one process, in lockstep on the same chunks (``wlm.evaluate.Comparison``)
and with the same thread count, so the ratio between them is meaningful on a noisy machine.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass

import torch

from .data import Dictionary
from .evaluate import Agreement, Comparison, num_threads
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
    agreement: Agreement | None = None    # against fp32 on the same tokens (None for fp32)

    def to_dict(self) -> dict:
        return asdict(self)


def measurements(models: dict, comparison: Comparison) -> list[Measurement]:
    """The table rows of a (finished or partial) comparison: size, loss, speed, agreement."""
    out: list[Measurement] = []
    for (name, model), r in zip(models.items(), comparison.results()):
        size = model_size(model)
        m = Measurement(name, size.total_mb, size.modules_mb, r.loss, r.ppl, r.seconds, r.tokens_per_s, r.tokens,
                        agreement=r.agreement)
        if out:
            m.speedup = out[0].seconds / r.seconds if r.seconds > 0 else float("nan")
            m.loss_change = r.loss - out[0].loss
        out.append(m)
    return out


def compare(models: dict, ids: torch.Tensor, *, max_tokens: int | None = None, threads: int = 1,
            progress: Progress = None) -> list[Measurement]:
    """Evaluate each model (name -> model; the first is the reference) on the same tokens, in
    lockstep. ``progress(done, total)`` counts test tokens."""
    c = Comparison(models, ids, max_tokens=max_tokens)
    c.run(threads=threads, progress=progress)
    return measurements(models, c)


def generation_rate(model, dictionary: Dictionary, words: int = 200, threads: int = 1, seed: int = 0) -> dict:
    """Words per second and ms per word of plain generation (no UI), temperature 1."""
    with num_threads(threads):
        it = generate(model, dictionary, GenerationConfig(words=words, seed=seed))
        next(it)                                  # prompt/start word and first step: warm-up
        t0 = time.perf_counter()
        n = sum(1 for _ in it)
        dt = time.perf_counter() - t0
    return {"words_per_s": n / dt, "ms_per_word": 1000 * dt / n, "words": n}


def coupled_parting(models, dictionary: Dictionary, *, prompt: str = "", seeds: int = 50, words: int = 100,
                    temperature: float = 1.0, threads: int = 1) -> dict:
    """Side-by-side runs (``wlm.pair``) over seeds 0..seeds-1: the mean number of identical words
    before the two texts part (``words`` when they never do) and the mean step-by-step agreement."""
    from .pair import generate_pair
    before, agree = [], []
    for seed in range(seeds):
        cfg = GenerationConfig(prompt=prompt, words=words, temperature=temperature, seed=seed)
        steps = list(generate_pair(models, dictionary, cfg, threads=threads))
        before.append(next((s.index for s in steps if s.top is not None), words))
        agree.append(sum(s.info[0].same + s.info[1].same for s in steps) / (2 * words))
    return {"seeds": seeds, "words": words, "prompt": prompt, "temperature": temperature,
            "mean_identical_words": sum(before) / seeds, "never_parted": sum(b == words for b in before),
            "step_agreement": sum(agree) / seeds}


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
    agreeing = [m for m in rows if m.agreement]
    if agreeing:
        head = (f"{'vs ' + rows[0].model:<8} {'top-1':>7} {'KL mean':>9} {'KL med':>9} {'KL p99':>8} {'overlap':>8} "
                f"{'words':>6} {'dp mean':>9} {'dp rms':>8}")
        lines += ["", head, "-" * len(head)]
        for m in agreeing:
            a = m.agreement
            lines.append(f"{m.model:<8} {a.top1:7.4f} {a.kl_mean:9.5f} {a.kl_median:9.5f} {a.kl_p99:8.4f} "
                         f"{a.overlap:8.4f} {a.words_before_parting:6.1f} {a.dp_mean:+9.5f} {a.dp_rms:8.5f}")
        lines.append("top-1: same most likely word; KL(fp32 || model) in nats; overlap: 1 - total variation, the "
                     "share of words a coupled sample keeps; words: 1 / (1 - overlap); dp: change in p(true next word)")
    return "\n".join(lines)
