"""python -m wlm eval: loss, perplexity and speed by the tutorial's protocol (bptt 25, batch 1)."""
from __future__ import annotations

import json

from .common import add_model_options, corpus_of, load_model

HELP = "evaluate a checkpoint by the tutorial's protocol (bptt 25, batch 1)"


def add_arguments(c) -> None:
    add_model_options(c, model="evaluate", split=True)


def run(args) -> int:
    from .. import stats
    from ..evaluate import Comparison
    from ..progress import TqdmProgress
    from ..quantize import model_size
    ckpt, model, name = load_model(args)
    corpus = corpus_of(args, ckpt)
    # a quantized model is evaluated in lockstep with fp32, which gives the agreement metrics
    models = {"fp32": ckpt.model, name: model} if model is not ckpt.model else {name: model}
    bar = TqdmProgress(f"eval {' + '.join(models)} {args.split}", unit="tok", disable=args.json)
    c = Comparison(models, corpus.split(args.split), max_tokens=args.max_tokens)
    results = c.run(threads=args.threads, progress=bar)
    r = results[-1]
    size = model_size(model)
    out = {"model": name, "size_mb": round(size.total_mb, 6), **r.to_dict(), "split": args.split,
           "threads": args.threads, "checkpoint": str(args.checkpoint)}
    if len(models) > 1:
        out["loss_change"], out["loss_change_se"] = r.loss - results[0].loss, c.loss_change_se(name)
    if args.json:
        print(json.dumps(out))
        return 0
    pm = stats.fmt_pm
    for n, res in zip(models, results):
        print(f"{n}: {'size ' + f'{size.total_mb:.3f} MB | ' if n == name else ''}{args.split} loss "
              f"{pm(res.loss, res.loss_se, 4, False)} | ppl {pm(res.ppl, res.ppl_se, 2, False)} | {res.tokens} tokens "
              f"in {res.seconds:.1f} s ({res.tokens_per_s:.0f} tokens/s, {args.threads} thread(s))")
    a = r.agreement
    if a:
        change = out["loss_change"]
        print(f"loss change vs fp32 on the same tokens: {pm(change, out['loss_change_se'])}"
              f"{stats.noise_mark(change, out['loss_change_se'])}")
        print(f"vs fp32 on the same tokens: top-1 agreement {pm(a.top1, a.top1_se, 4, False)} | KL(fp32 || {name}) "
              f"mean {pm(a.kl_mean, a.kl_mean_se, 5, False)}, median {a.kl_median:.5f}, p99 {a.kl_p99:.4f} nats | "
              f"overlap (1 - TV) {pm(a.overlap, a.overlap_se, 4, False)}, ~{a.words_before_parting:.1f} identical "
              f"words before coupled samples part | p(true next word) change mean "
              f"{pm(a.dp_mean, a.dp_mean_se, 5)}{stats.noise_mark(a.dp_mean, a.dp_mean_se)}, "
              f"rms {pm(a.dp_rms, a.dp_rms_se, 5, False)}")
    print(f"±: standard error by batch means over blocks of {r.se_block_tokens:,} consecutive tokens (wlm.stats)")
    return 0
