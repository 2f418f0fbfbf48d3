"""python -m wlm bench: fp32 and the variants in one run: size, loss, agreement, speed, words/s."""
from __future__ import annotations

import json
from pathlib import Path

from .common import CLIError, add_model_options, command_line, corpus_of, positive_int, stderr_log

HELP = "measure fp32 vs variants in one run: size, loss, agreement, speed, words/s"


def add_arguments(b) -> None:
    add_model_options(b, split=True, cache=True)
    b.add_argument("--variants", default="qint8",
                   help="comma-separated variants compared with fp32 (see wlm.variants.VARIANTS)")
    b.add_argument("--repeats", type=positive_int, default=1, help="lockstep passes over the slice for W1")
    b.add_argument("--save", action="store_true",
                   help="store the result (test split) where the app shows it to visitors (see `wlm results`)")
    b.add_argument("--save-to", metavar="DIR",
                   help="store the result in DIR instead (data/results: the results shipped with the app)")
    b.add_argument("--words", type=int, default=200, help="words generated per model for words/s (0: skip)")
    b.add_argument("--pair-seeds", type=int, default=0,
                   help="side-by-side runs of 100 words (seeds 0..N-1): identical words before the texts part")
    b.add_argument("--pair-prompt", default="The game was released in", help="prompt of those runs")
    b.add_argument("--alone", default="", metavar="NAMES",
                   help="comma-separated models also measured by themselves, each pass next to a pass in company: "
                        "their tokens/s alone and in company (e.g. --alone ort-int8)")
    b.add_argument("--block-chunks", type=positive_int, default=None,
                   help="chunks each model runs in a row (default: wlm.evaluate.DEFAULT_BLOCK_CHUNKS; 1: the old "
                        "chunk-by-chunk lockstep)")


def run(args) -> int:
    from ..bench import (alone_lines, bench_models, call_lines, coupled_parting, format_table, generation_rate,
                         machine_info, speed_markdown)
    from ..checkpoint import load_checkpoint
    from ..progress import TqdmProgress
    from ..variants import REFERENCE, VARIANTS, VariantCache
    asked = [n for n in args.variants.split(",") if n and n != REFERENCE]
    unknown = [n for n in asked if n not in VARIANTS]
    if unknown:
        raise CLIError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    names = [REFERENCE] + [n for n in VARIANTS if n in asked]          # canonical order, as the app's
    alone = [n for n in (args.alone or "").split(",") if n]
    if any(n not in names for n in alone):
        raise CLIError(f"--alone must name measured models ({', '.join(names)}), got {args.alone}")
    ckpt = load_checkpoint(args.checkpoint)
    corpus = corpus_of(args, ckpt)
    cache = VariantCache(ckpt, args.cache)
    variants = {n: cache.get(n, progress=None if args.json else stderr_log) for n in names}
    models = {n: v.model for n, v in variants.items()}
    rows, speed, timing = bench_models(models, corpus.split(args.split), max_tokens=args.max_tokens,
                                       threads=args.threads, repeats=args.repeats,
                                       sizes={n: v.size for n, v in variants.items()}, alone=tuple(alone),
                                       block_chunks=args.block_chunks,
                                       progress=TqdmProgress("bench", unit="tok", disable=args.json))
    gen = {name: generation_rate(m, ckpt.dictionary, words=args.words, threads=args.threads)
           for name, m in models.items()} if args.words else {}
    pair = [models[REFERENCE], models[names[1]]] if len(names) > 1 else None
    coupled = coupled_parting(pair, ckpt.dictionary, prompt=args.pair_prompt, seeds=args.pair_seeds,
                              threads=args.threads) if args.pair_seeds and pair else None
    info = machine_info(args.threads)
    if (args.save or args.save_to) and args.split == "test":
        from ..data import slice_label
        from ..download import sha256_file
        from ..results import ResultStore, make_record
        from ..variants import cache_dir
        record = make_record(slice_label=slice_label(args.max_tokens), threads=args.threads, variants=names, rows=rows,
                             engines={n: v.spec.engine for n, v in variants.items()}, machine=info,
                             checkpoint_sha256=ckpt.sha256, test_sha256=sha256_file(corpus.path / "test.txt"),
                             source=command_line(args),
                             timing={"wall_s": timing["wall_s"][0], "models_s": timing["models_s"][0],
                                     "ratio_ci": timing["ratio_ci"]},
                             plans={n: v.plan_sha256 for n, v in variants.items() if v.plan_sha256},
                             no_speed=[n for n, v in variants.items() if not v.spec.speed_claimed])
        record["speed"], record["generation"] = speed, gen
        folder = Path(args.save_to) if args.save_to else cache_dir(args.cache) / "results"
        stderr_log(f"stored: {ResultStore(folder).save(record)}")
    if args.json:
        print(json.dumps({"split": args.split, "rows": [r.to_dict() for r in rows], "speed": speed,
                          "timing": timing, "generation": gen, "coupled": coupled, "machine": info,
                          "engines": {n: v.spec.engine for n, v in variants.items()}}))
        return 0
    print(f"{args.split} split, {rows[0].tokens} tokens, {args.threads} thread(s), {info['cpu']}, "
          f"torch {info['torch']}, engine {info['quantized_engine']}; W1 over {args.repeats} lockstep passes, "
          f"W2 over {speed[REFERENCE]['w2_ms']['n']} one-token steps")
    print(format_table(rows))
    print()
    print(speed_markdown(rows, speed, {n: v.spec.engine for n, v in variants.items()}, gen))
    r, ci = timing["ratio"], timing["ratio_ci"]
    print(f"\ncost of measuring: wall time in the loop / the models' own time = {r['median']:.3f} "
          f"[{r['min']:.3f}-{r['max']:.3f}] over {r['n']} pass(es)"
          + (f"; first pass {timing['wall_s'][0] / timing['models_s'][0]:.3f}, ~95% interval "
             f"[{ci[0]:.3f}-{ci[1]:.3f}] from its per-block times" if ci else "")
          + " (the rest: agreement metrics and the loop)")
    for line in alone_lines(speed):
        print(line)
    calls = {n: s["calls"] for n, s in speed.items() if "calls" in s}
    if calls:
        print("\nper forward call (generation reads 1 token per call, evaluation 25):")
        for line in call_lines(calls):
            print("  " + line)
    if coupled:
        print(f"\nside by side {names[0]} / {names[1]}, {coupled['seeds']} seeds x {coupled['words']} words, prompt "
              f"{args.pair_prompt!r}: {coupled['mean_identical_words']:.1f} identical words before the texts part on "
              f"average ({coupled['never_parted']} runs never parted); step-by-step agreement "
              f"{coupled['step_agreement']:.4f}")
    return 0
