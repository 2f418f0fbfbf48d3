"""Side-by-side measurement of fp32 and quantized models: size, eval time, loss, agreement, words/s.

All models run in one process, on the same chunks (``wlm.evaluate.Comparison``: blocks of
chunks per model, every model through each block before the next) and with the same thread
count, so the ratio between them is meaningful on a noisy machine. Every figure carries its
uncertainty (``wlm.stats``): losses, loss changes and agreement metrics a standard error by
batch means over blocks of tokens, speed-ups and the cost of measuring a ~95% interval from
the spread of their per-block times.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass

import torch

from .data import Dictionary
from . import stats
from .evaluate import Agreement, Comparison, fmt_parting, num_threads
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
    # Uncertainty (None in records made before it was measured; see wlm.stats):
    loss_se: float | None = None          # standard error of loss, batch means over se_block_tokens
    ppl_se: float | None = None           # ppl * loss_se
    loss_change_se: float | None = None   # paired: batch means of the per-token difference to fp32
    speedup_ci: list[float] | None = None   # [low, high], ~95%, from the spread of per-block times
    se_block_tokens: int | None = None    # the batch-means block length these errors used

    def to_dict(self) -> dict:
        return asdict(self)


def measurements(models: dict, comparison: Comparison, sizes: dict | None = None) -> list[Measurement]:
    """The table rows of a (finished or partial) comparison: size, loss, speed, agreement.
    ``sizes`` (name -> SizeReport) for models ``model_size`` cannot weigh (other engines)."""
    out: list[Measurement] = []
    for (name, model), r in zip(models.items(), comparison.results()):
        size = (sizes or {}).get(name) or model_size(model)
        m = Measurement(name, size.total_mb, size.modules_mb, r.loss, r.ppl, r.seconds, r.tokens_per_s, r.tokens,
                        agreement=r.agreement, loss_se=r.loss_se, ppl_se=r.ppl_se, se_block_tokens=r.se_block_tokens)
        if out:
            m.speedup = out[0].seconds / r.seconds if r.seconds > 0 else float("nan")
            m.loss_change = r.loss - out[0].loss
            if r.tokens:
                m.loss_change_se = comparison.loss_change_se(name)
                m.speedup_ci = comparison.speedup_ci(name)
        elif r.tokens:
            m.loss_change_se, m.speedup_ci = 0.0, [1.0, 1.0]       # the reference against itself
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
                 repeats: int = 3, steps: int = 200, sizes: dict | None = None, alone: tuple[str, ...] = (),
                 block_chunks: int | None = None,
                 progress: Progress = None) -> tuple[list[Measurement], dict, dict]:
    """Loss, agreement and speed of every model (name -> model; the first is the reference).

    After a warm-up pass over 100 tokens: ``repeats`` passes over the slice with every model
    (W1, evaluation tokens/s; ``wlm.evaluate.Comparison``: each model runs a block of chunks,
    every model each block before the next), then ``steps`` one-token steps with the hidden
    state carried (W2, ms per step), model after model for each token. The models named in
    ``alone`` are also measured by themselves (no other model, no agreement metrics), one such
    pass next to each pass in company, the order alternating, so that the two see the same
    machine. Returns the rows of the first pass (with standard errors and speed-up intervals),
    per model the median, min and max of W1 (and ``alone_tokens_per_s``) and W2, and what each
    pass cost: its wall time inside the loop next to the sum of the models' own times (the
    rest is the agreement metrics and the loop), with the first pass's ~95% interval. The torch
    models' speed also gets ``calls``: ms per token and the decoder's share at 1 and 25 tokens
    per call (``call_profile``).
    """
    if repeats < 1 or steps < 1:
        raise ValueError("repeats and steps must be at least 1")
    unknown = [n for n in alone if n not in models]
    if unknown:
        raise ValueError(f"alone: {', '.join(unknown)} not among the models measured ({', '.join(models)})")
    kw = {"block_chunks": block_chunks} if block_chunks else {}
    w1 = {n: [] for n in models}
    w1_alone = {n: [] for n in alone}
    w2 = {n: [] for n in models}
    walls, own = [], []
    rows = cost = None
    passes = repeats * (1 + len(alone))
    with num_threads(threads):
        Comparison(models, ids, max_tokens=101, **kw).run(threads=None)              # warm-up
        done = 0
        for r in range(repeats):
            def company(r=r):
                c = Comparison(models, ids, max_tokens=max_tokens, **kw)
                step = (lambda d, t: progress(done * t + d, passes * t)) if progress else None
                c.run(threads=None, progress=step)
                nonlocal rows, cost
                if rows is None:
                    rows, cost = measurements(models, c, sizes), c.cost_ci()
                walls.append(c.wall)
                own.append(sum(c.seconds.values()))
                for n, res in zip(models, c.results()):
                    w1[n].append(res.tokens_per_s)

            def by_itself(n):
                c = Comparison({n: models[n]}, ids, max_tokens=max_tokens, **kw)
                w1_alone[n].append(c.run(threads=None)[0].tokens_per_s)
            runs = [company] + [lambda n=n: by_itself(n) for n in alone]
            for run in (runs if r % 2 == 0 else runs[::-1]):
                run()
                done += 1
        hidden = {n: m.init_hidden(1) for n, m in models.items()}
        with torch.inference_mode():
            for t in ids[:steps].tolist():
                x = torch.tensor([[t]])
                for n, m in models.items():
                    t0 = time.perf_counter()
                    _, hidden[n] = m(x, hidden[n])
                    w2[n].append(1000 * (time.perf_counter() - t0))
        calls = call_profile(models, ids)
    timing = {"wall_s": walls, "models_s": own, "ratio": _spread([w / o for w, o in zip(walls, own)]),
              "ratio_ci": [cost[1], cost[2]] if cost else None}
    speed = {n: {"w1_tokens_per_s": _spread(w1[n]), "w2_ms": _spread(w2[n]),
                 **({"calls": calls[n]} if n in calls else {})} for n in models}
    for n in alone:
        speed[n]["alone_tokens_per_s"] = _spread(w1_alone[n])
    return rows, speed, timing


CALL_TOKENS = (1, 25)      # tokens per call: one word of generation, one chunk of evaluation


@torch.inference_mode()
def call_profile(models: dict, ids: torch.Tensor, *, tokens=CALL_TOKENS, seconds: float = 1.0) -> dict:
    """Why generating gains more from int8 than evaluating: per torch model (one with encoder,
    rnn and decoder; other engines are skipped), the ms per token of a forward call over 1 and
    over 25 tokens, and the share of that call the decoder (hidden size -> vocabulary) takes,
    timed on its own on the same LSTM output. The models take turns call by call, about
    ``seconds`` each per size. Run it under the thread count to be measured."""
    out: dict = {}
    parts = {}
    for n, m in models.items():             # models whose forward is decoder(rnn(encoder(x)))
        try:
            m.rnn(m.encoder(ids[:1].view(1, 1)), m.init_hidden(1))
            parts[n] = m
        except (AttributeError, NotImplementedError, TypeError):   # other engines, a split model's layer list
            continue
    for T in tokens:
        x = ids[:T].view(T, 1)
        runs = {}
        for n, m in parts.items():
            h = m.init_hidden(1)
            hid = m.rnn(m.encoder(x), h)[0]
            m(x, h)                                              # warm-up
            t0 = time.perf_counter()
            m(x, h)
            runs[n] = (h, hid, max(1, int(seconds / max(time.perf_counter() - t0, 1e-5) / 2)))
        full, dec = {n: 0.0 for n in parts}, {n: 0.0 for n in parts}
        for k in range(max(r[2] for r in runs.values())):
            for n, m in parts.items():
                h, hid, reps = runs[n]
                if k >= reps:
                    continue
                t0 = time.perf_counter()
                m(x, h)
                t1 = time.perf_counter()
                m.decoder(hid)
                t2 = time.perf_counter()
                full[n] += t1 - t0
                dec[n] += t2 - t1
        for n in parts:
            reps = runs[n][2]
            out.setdefault(n, {})[str(T)] = {"ms_per_token": 1000 * full[n] / reps / T,
                                             "decoder_share": dec[n] / full[n], "calls": reps}
    return out


def call_lines(calls: dict) -> list[str]:
    """The profile of ``call_profile``, a line per model."""
    return [f"{n}: " + "; ".join(f"{T} token{'s' if T != '1' else ''} per call {c['ms_per_token']:.3f} ms/token, "
                                 f"decoder {c['decoder_share']:.0%}" for T, c in by.items())
            for n, by in calls.items()]


def alone_lines(speed: dict) -> list[str]:
    """One line per model measured alone too: its tokens/s alone and in company, and the ratio."""
    out = []
    for n, s in speed.items():
        if "alone_tokens_per_s" not in s:
            continue
        a, c = s["alone_tokens_per_s"], s["w1_tokens_per_s"]
        out.append(f"{n}: {c['median']:,.0f} [{c['min']:,.0f}-{c['max']:,.0f}] tokens/s in company, "
                   f"{a['median']:,.0f} [{a['min']:,.0f}-{a['max']:,.0f}] alone; in company / alone "
                   f"{c['median'] / a['median']:.3f} (median of {c['n']} interleaved passes each)")
    return out


def speed_markdown(rows: list[Measurement], speed: dict, engines: dict | None = None,
                   gen: dict | None = None) -> str:
    """One Markdown table: size, loss change, agreement, W1 and W2 (median [min-max]), ratios to
    the first row, and generation words/s where measured. Loss change, top-1 and KL carry their
    standard error (``±``; ``~``: the loss change's interval holds zero), the first pass's
    speed-up its ~95% interval."""
    ref = speed[rows[0].model]
    lines = ["| variant | engine | size MB | loss change | top-1 | KL mean | W1 tokens/s | W1 vs ref | "
             "speed-up (first pass) | W2 ms/step | W2 vs ref | generate words/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in rows:
        s1, s2 = speed[m.model]["w1_tokens_per_s"], speed[m.model]["w2_ms"]
        a = m.agreement
        g = (gen or {}).get(m.model)
        words = f"{g['words_per_s']:,.0f}" if g else ""
        change = stats.fmt_pm(m.loss_change, m.loss_change_se) + (
            " ~" if stats.within_noise(m.loss_change, m.loss_change_se) else "")
        lines.append(
            f"| {m.model} | {(engines or {}).get(m.model, '')} | {m.size_mb:.2f} | {change} | "
            f"{stats.fmt_pm(a.top1, a.top1_se, 4, False) if a else ''} | "
            f"{stats.fmt_pm(a.kl_mean, a.kl_mean_se, 5, False) if a else ''} | "
            f"{s1['median']:,.0f} [{s1['min']:,.0f}-{s1['max']:,.0f}] | {s1['median'] / ref['w1_tokens_per_s']['median']:.2f}x | "
            f"{stats.fmt_ci(m.speedup, m.speedup_ci)} | "
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
    """The rows as text: each figure with its standard error (``±``) or ~95% interval where the
    measurement has one (older stored records: the bare figures), and a mark on the loss
    changes whose interval holds zero."""
    w = max(8, *(len(m.model) for m in rows))
    head = (f"{'model':<{w}} {'size MB':>9} {'loss':>16} {'ppl':>15} {'seconds':>8} {'tokens/s':>9} "
            f"{'speed-up [95%]':>19} {'loss change':>18}")
    lines = [head, "-" * len(head)]
    noise = False
    for m in rows:
        mark = stats.within_noise(m.loss_change, m.loss_change_se) and m is not rows[0]
        noise |= mark
        lines.append(f"{m.model:<{w}} {m.size_mb:9.3f} {stats.fmt_pm(m.loss, m.loss_se, 4, False):>16} "
                     f"{stats.fmt_pm(m.ppl, m.ppl_se, 2, False):>15} {m.seconds:8.2f} {m.tokens_per_s:9.0f} "
                     f"{stats.fmt_ci(m.speedup, m.speedup_ci):>19} "
                     f"{stats.fmt_pm(m.loss_change, m.loss_change_se):>18}{' ~' if mark else ''}")
    agreeing = [m for m in rows if m.agreement]
    if agreeing:
        head = (f"{'vs ' + rows[0].model:<{w}} {'top-1':>17} {'KL mean':>19} {'KL med':>9} {'KL p99':>8} "
                f"{'overlap':>17} {'words':>6} {'dp mean':>21} {'dp rms':>19}")
        lines += ["", head, "-" * len(head)]
        for m in agreeing:
            a = m.agreement
            dp_mark = " ~" if stats.within_noise(a.dp_mean, a.dp_mean_se) else ""
            lines.append(f"{m.model:<{w}} {stats.fmt_pm(a.top1, a.top1_se, 4, False):>17} "
                         f"{stats.fmt_pm(a.kl_mean, a.kl_mean_se, 5, False):>19} {a.kl_median:9.5f} {a.kl_p99:8.4f} "
                         f"{stats.fmt_pm(a.overlap, a.overlap_se, 4, False):>17} {fmt_parting(a.words_before_parting, None):>6} "
                         f"{stats.fmt_pm(a.dp_mean, a.dp_mean_se, 5) + dp_mark:>21} "
                         f"{stats.fmt_pm(a.dp_rms, a.dp_rms_se, 5, False):>19}")
        lines.append("top-1: same most likely word; KL(fp32 || model) in nats; overlap: 1 - total variation, the "
                     "share of words a coupled sample keeps; words: o / (1 - o), the identical words expected before "
                     "two coupled samples part; dp: change in p(true next word)")
    block = next((m.se_block_tokens for m in rows if m.se_block_tokens), None)
    if block:
        lines.append(f"±: standard error by batch means over blocks of {block:,} consecutive tokens (wlm.stats); "
                     f"speed-up: ~95% interval from the per-block times"
                     + ("; ~: the interval (±1.96 se) holds zero, within noise" if noise else ""))
    return "\n".join(lines)


def call_sentence(record: dict, variant: str) -> str:
    """The bench's per-call profile of fp32 and ``variant`` as one sentence for the side by side."""
    fp, q = (record["speed"][n]["calls"] for n in ("fp32", variant))
    one, many = (fp["1"]["ms_per_token"], q["1"]["ms_per_token"]), (fp["25"]["ms_per_token"], q["25"]["ms_per_token"])
    shares = [c[T]["decoder_share"] for c in (fp, q) for T in ("1", "25")]
    threads = record.get("threads", 1)
    return (f"Why the panes' speeds differ by more than Measure's speed-up: a word is one forward call over one "
            f"token, which reads every weight for that token alone, and int8 weights are a quarter of the bytes: fp32 "
            f"{one[0]:.1f} ms per word against {variant} {one[1]:.1f} ms ({one[0] / one[1]:.1f}x). Measure's "
            f"evaluation calls run 25 tokens and use each weight 25 times: {many[0]:.2f} against {many[1]:.2f} ms per "
            f"token ({many[0] / many[1]:.1f}x). The decoder (33,278 words x 256) takes {min(shares):.0%}-"
            f"{max(shares):.0%} of every call, in both models. (`python -m wlm bench` on {record.get('cpu', '?')}, "
            f"{threads} thread{'s' if threads != 1 else ''}, {str(record.get('when', ''))[:10]}.)")
