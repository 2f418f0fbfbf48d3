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


def measurements(models: dict, comparison: Comparison, sizes: dict | None = None) -> list[Measurement]:
    """The table rows of a (finished or partial) comparison: size, loss, speed, agreement.
    ``sizes`` (name -> SizeReport) for models ``model_size`` cannot weigh (other engines)."""
    out: list[Measurement] = []
    for (name, model), r in zip(models.items(), comparison.results()):
        size = (sizes or {}).get(name) or model_size(model)
        m = Measurement(name, size.total_mb, size.modules_mb, r.loss, r.ppl, r.seconds, r.tokens_per_s, r.tokens,
                        agreement=r.agreement)
        if out:
            m.speedup = out[0].seconds / r.seconds if r.seconds > 0 else float("nan")
            m.loss_change = r.loss - out[0].loss
        out.append(m)
    return out


def compare(models: dict, ids: torch.Tensor, *, max_tokens: int | None = None, threads: int = 1,
            progress: Progress = None, sizes: dict | None = None) -> list[Measurement]:
    """Evaluate each model (name -> model; the first is the reference) on the same tokens, in
    lockstep. ``progress(done, total)`` counts test tokens."""
    c = Comparison(models, ids, max_tokens=max_tokens)
    c.run(threads=threads, progress=progress)
    return measurements(models, c, sizes)


def _spread(values: list[float]) -> dict:
    v = sorted(values)
    return {"median": v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2,
            "min": v[0], "max": v[-1], "n": len(v)}


def bench_models(models: dict, ids: torch.Tensor, *, max_tokens: int | None = None, threads: int = 1,
                 repeats: int = 3, steps: int = 200, sizes: dict | None = None,
                 progress: Progress = None) -> tuple[list[Measurement], dict, dict]:
    """Loss, agreement and speed of every model (name -> model; the first is the reference).

    After a warm-up pass over 100 tokens: ``repeats`` lockstep passes over the slice (W1,
    evaluation tokens/s: every model runs each chunk before the next, so the models are
    interleaved chunk by chunk), then ``steps`` one-token steps with the hidden state carried
    (W2, ms per step), model after model for each token. Returns the rows of the first pass,
    per model the median, min and max of W1 and W2, and what each pass cost: its wall time
    inside the loop next to the sum of the models' own times (the rest is the agreement
    metrics and the loop).
    """
    if repeats < 1 or steps < 1:
        raise ValueError("repeats and steps must be at least 1")
    w1 = {n: [] for n in models}
    w2 = {n: [] for n in models}
    walls, own = [], []
    rows = None
    with num_threads(threads):
        Comparison(models, ids, max_tokens=101).run(threads=None)              # warm-up
        for r in range(repeats):
            c = Comparison(models, ids, max_tokens=max_tokens)
            step = (lambda d, t, r=r: progress(r * t + d, repeats * t)) if progress else None
            c.run(threads=None, progress=step)
            rows = rows or measurements(models, c, sizes)
            walls.append(c.wall)
            own.append(sum(c.seconds.values()))
            for n, res in zip(models, c.results()):
                w1[n].append(res.tokens_per_s)
        hidden = {n: m.init_hidden(1) for n, m in models.items()}
        with torch.inference_mode():
            for t in ids[:steps].tolist():
                x = torch.tensor([[t]])
                for n, m in models.items():
                    t0 = time.perf_counter()
                    _, hidden[n] = m(x, hidden[n])
                    w2[n].append(1000 * (time.perf_counter() - t0))
    timing = {"wall_s": walls, "models_s": own, "ratio": _spread([w / o for w, o in zip(walls, own)])}
    return rows, {n: {"w1_tokens_per_s": _spread(w1[n]), "w2_ms": _spread(w2[n])} for n in models}, timing


def speed_markdown(rows: list[Measurement], speed: dict, engines: dict | None = None,
                   gen: dict | None = None) -> str:
    """One Markdown table: size, loss change, agreement, W1 and W2 (median [min-max]), ratios to
    the first row, and generation words/s where measured."""
    ref = speed[rows[0].model]
    lines = ["| variant | engine | size MB | loss change | top-1 | KL mean | W1 tokens/s | W1 vs ref | "
             "W2 ms/step | W2 vs ref | generate words/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in rows:
        s1, s2 = speed[m.model]["w1_tokens_per_s"], speed[m.model]["w2_ms"]
        a = m.agreement
        g = (gen or {}).get(m.model)
        words = f"{g['words_per_s']:,.0f}" if g else ""
        lines.append(
            f"| {m.model} | {(engines or {}).get(m.model, '')} | {m.size_mb:.2f} | {m.loss_change:+.4f} | "
            f"{f'{a.top1:.4f}' if a else ''} | {f'{a.kl_mean:.5f}' if a else ''} | "
            f"{s1['median']:,.0f} [{s1['min']:,.0f}-{s1['max']:,.0f}] | {s1['median'] / ref['w1_tokens_per_s']['median']:.2f}x | "
            f"{s2['median']:.3f} [{s2['min']:.3f}-{s2['max']:.3f}] | {s2['median'] / ref['w2_ms']['median']:.2f}x | "
            f"{words} |")
    return "\n".join(lines)


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
    w = max(8, *(len(m.model) for m in rows))
    head = f"{'model':<{w}} {'size MB':>9} {'loss':>7} {'ppl':>8} {'seconds':>8} {'tokens/s':>9} {'speed-up':>9} {'loss chg':>9}"
    lines = [head, "-" * len(head)]
    for m in rows:
        lines.append(f"{m.model:<{w}} {m.size_mb:9.3f} {m.loss:7.4f} {m.ppl:8.2f} {m.seconds:8.2f} {m.tokens_per_s:9.0f} "
                     f"{m.speedup:8.2f}x {m.loss_change:+9.4f}")
    agreeing = [m for m in rows if m.agreement]
    if agreeing:
        head = (f"{'vs ' + rows[0].model:<{w}} {'top-1':>7} {'KL mean':>9} {'KL med':>9} {'KL p99':>8} {'overlap':>8} "
                f"{'words':>6} {'dp mean':>9} {'dp rms':>8}")
        lines += ["", head, "-" * len(head)]
        for m in agreeing:
            a = m.agreement
            lines.append(f"{m.model:<{w}} {a.top1:7.4f} {a.kl_mean:9.5f} {a.kl_median:9.5f} {a.kl_p99:8.4f} "
                         f"{a.overlap:8.4f} {a.words_before_parting:6.0f} {a.dp_mean:+9.5f} {a.dp_rms:8.5f}")
        lines.append("top-1: same most likely word; KL(fp32 || model) in nats; overlap: 1 - total variation, the "
                     "share of words a coupled sample keeps; words: 1 / (1 - overlap); dp: change in p(true next word)")
    return "\n".join(lines)
