"""Command line: python -m wlm {download,train,eval,generate,bench} ..."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data import resolve_data_dir

DEFAULT_CHECKPOINT = "data/wlm-lstm.safetensors"


class CLIError(Exception):
    """An error to print as one line, exit status 2."""


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}")
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s}")
    return v


def _seed(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63-1, got {s!r}")
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63-1, got {v}")
    return v


def _command_line(args) -> str:
    """The command that was run, for the records it writes."""
    return "python -m wlm " + " ".join(args.argv)


def _slice_label(max_tokens: int | None) -> str:
    """The app's name of the first ``max_tokens`` test tokens (None: the whole split)."""
    from .measureview import FULL_SLICE
    return FULL_SLICE if max_tokens is None else f"{max_tokens:,} tokens"


def _variant_names():
    from .variants import VARIANTS
    return VARIANTS


def _tqdm_factory(unit: str, quiet: bool):
    from .progress import TqdmProgress
    return lambda name: TqdmProgress(str(name), unit=unit, disable=quiet)


# ---------------------------------------------------------------- commands
def cmd_download(args) -> int:
    from .download import download
    dest = resolve_data_dir(args.dest)
    paths = download(dest, mirror=args.mirror, progress_factory=_tqdm_factory("B", args.json), force=args.force)
    if args.json:
        print(json.dumps({k: str(v) for k, v in paths.items()}))
    else:
        print(f"WikiText-2 ready in {dest} (sha256 verified: {', '.join(paths)})")
    return 0


def cmd_train(args) -> int:
    from .train import TrainConfig, train
    lr = args.lr if args.lr is not None else (0.002 if args.optimizer == "adam" else 20.0)
    cfg = TrainConfig(data=str(resolve_data_dir(args.data)), out=args.out, epochs=args.epochs, lr=lr,
                      clip=args.clip, batch_size=args.batch_size, bptt=args.bptt, seed=args.seed,
                      ninp=args.ninp, nhid=args.nhid, nlayers=args.nlayers, dropout=args.dropout,
                      amp=None if args.amp == "none" else args.amp, device=args.device,
                      anneal_last=args.anneal_last, optimizer=args.optimizer, lstm_init=args.lstm_init, init_gain=args.init_gain,
                      threads=args.threads, dry_run=args.dry_run, save_every_s=args.save_every)
    if cfg.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise CLIError("--device cuda: no CUDA device is available to this torch build")
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else (lambda line: print(line, flush=True))
    factory = _tqdm_factory("batch", args.json)
    record = train(cfg, resume=args.resume, log=log,
                   progress_factory=lambda epoch: factory(f"epoch {epoch}" if epoch else "test"))
    record["command"] = _command_line(args)
    record_path = args.record or str(Path(cfg.out).with_suffix(".train.json"))
    with open(record_path, "w") as f:
        json.dump(record, f, indent=1)
    log(f"training record: {record_path}")
    if args.json:
        print(json.dumps(record))
    return 0


def _load(args):
    """Checkpoint from --checkpoint, plus the model to use: fp32, or --variant (--quantize: the
    tutorial's qint8)."""
    from .checkpoint import load_checkpoint
    ckpt = load_checkpoint(args.checkpoint)
    name = getattr(args, "variant", None) or ("qint8" if args.quantize else "fp32")
    if name == "fp32":
        return ckpt, ckpt.model, "fp32"
    from .variants import build
    return ckpt, build(name, ckpt, getattr(args, "cache", None)).model, name


def cmd_eval(args) -> int:
    from . import stats
    from .data import Corpus
    from .evaluate import Comparison
    from .quantize import model_size
    ckpt, model, name = _load(args)
    corpus = Corpus(resolve_data_dir(args.data))
    if len(corpus.dictionary) != ckpt.model.config.ntoken or corpus.dictionary.idx2word != ckpt.dictionary.idx2word:
        raise CLIError(f"the corpus in {corpus.path} does not have the checkpoint's vocabulary")
    from .progress import TqdmProgress
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


def cmd_score(args) -> int:
    from .score import cli_main
    return cli_main(args)


def cmd_generate(args) -> int:
    from .generate import GenerationConfig, generate
    ckpt, model, name = _load(args)
    cfg = GenerationConfig(prompt=args.prompt, words=args.words, temperature=args.temperature, seed=args.seed)
    unknown = ckpt.dictionary.encode(args.prompt).unknown
    if unknown:
        print(f"note: not in the vocabulary, read as <unk>: {' '.join(unknown)}", file=sys.stderr)
    words = []
    from .threads import num_threads
    with num_threads(args.threads):
        for w in generate(model, ckpt.dictionary, cfg):
            words.append(w)
            if not args.json:
                print("" if w == "<eos>" else w, end="\n" if w == "<eos>" else " ", flush=True)
    if args.json:
        print(json.dumps({"model": name, "prompt": args.prompt, "words": words, "unknown": unknown,
                          "seed": args.seed, "temperature": args.temperature}))
    else:
        print()
    return 0


def cmd_bench(args) -> int:
    from .bench import (alone_lines, bench_models, call_lines, coupled_parting, format_table, generation_rate,
                        machine_info,
                        speed_markdown)
    from .checkpoint import load_checkpoint
    from .data import Corpus
    from .progress import TqdmProgress
    from .variants import REFERENCE, VARIANTS, VariantCache
    asked = [n for n in args.variants.split(",") if n and n != REFERENCE]
    unknown = [n for n in asked if n not in VARIANTS]
    if unknown:
        raise CLIError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    names = [REFERENCE] + [n for n in VARIANTS if n in asked]          # canonical order, as the app's
    alone = [n for n in (args.alone or "").split(",") if n]
    if any(n not in names for n in alone):
        raise CLIError(f"--alone must name measured models ({', '.join(names)}), got {args.alone}")
    ckpt = load_checkpoint(args.checkpoint)
    corpus = Corpus(resolve_data_dir(args.data))
    if corpus.dictionary.idx2word != ckpt.dictionary.idx2word:
        raise CLIError(f"the corpus in {corpus.path} does not have the checkpoint's vocabulary")
    cache = VariantCache(ckpt, args.cache)
    log = (lambda line: print(line, file=sys.stderr, flush=True))
    variants = {n: cache.get(n, progress=None if args.json else log) for n in names}
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
        from .download import sha256_file
        from .results import ResultStore, make_record
        from .variants import cache_dir
        label = _slice_label(args.max_tokens)
        record = make_record(slice_label=label, threads=args.threads, variants=names, rows=rows,
                             engines={n: v.spec.engine for n, v in variants.items()}, machine=info,
                             checkpoint_sha256=ckpt.sha256, test_sha256=sha256_file(corpus.path / "test.txt"),
                             source=_command_line(args),
                             timing={"wall_s": timing["wall_s"][0], "models_s": timing["models_s"][0],
                                     "ratio_ci": timing["ratio_ci"]},
                             plans={n: v.plan_sha256 for n, v in variants.items() if v.plan_sha256})
        record["speed"], record["generation"] = speed, gen
        folder = Path(args.save_to) if args.save_to else cache_dir(args.cache) / "results"
        log(f"stored: {ResultStore(folder).save(record)}")
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


def cmd_inspect(args) -> int:
    from .checkpoint import load_checkpoint
    from .data import Corpus
    from .threads import num_threads
    from .inspection import Inspection, noise_text
    from .inspectview import report_text
    from .progress import TqdmProgress
    from .variants import VARIANTS, VariantCache
    if args.variant not in VARIANTS or args.variant == "fp32":
        raise CLIError(f"--variant must be one of {', '.join(n for n in VARIANTS if n != 'fp32')}, got {args.variant!r}")
    ckpt = load_checkpoint(args.checkpoint)
    corpus = Corpus(resolve_data_dir(args.data))
    if corpus.dictionary.idx2word != ckpt.dictionary.idx2word:
        raise CLIError(f"the corpus in {corpus.path} does not have the checkpoint's vocabulary")
    if args.replace_recipe and not args.derive_recipe:
        raise CLIError("--replace-recipe writes a derived recipe: add --derive-recipe")
    recipe_out = _recipe_out(args) if args.derive_recipe else None       # refused before the work, not after
    variant = VariantCache(ckpt, args.cache).get(args.variant)
    bar = TqdmProgress(f"inspect {args.variant}", unit="tok", disable=args.json)
    with num_threads(args.threads):
        ins = Inspection(ckpt.model, variant, corpus.split(args.split), max_tokens=args.max_tokens)
        while ins.step():
            bar(*ins.tokens)
        report = ins.report()
    bar.close()
    report["threads"] = args.threads
    if args.save_to and args.split == "test":
        from .bench import machine_info
        from .download import sha256_file
        from .results import ResultStore, make_inspection_record
        label = _slice_label(args.max_tokens)
        record = make_inspection_record(slice_label=label, threads=args.threads, variant=args.variant, report=report,
                                        machine=machine_info(args.threads), checkpoint_sha256=ckpt.sha256,
                                        test_sha256=sha256_file(corpus.path / "test.txt"),
                                        source=_command_line(args), plan_sha256=variant.plan_sha256)
        print(f"stored: {ResultStore(args.save_to).inspections().save(record)}", file=sys.stderr)
    if args.derive_recipe:
        from .recipe import derive, save
        recipe = derive(report, args.budget_mb, report["size_overhead_mb"])
        recipe["command"] = _command_line(args)
        recipe["checkpoint_sha256"] = ckpt.sha256
        report["recipe"] = recipe
        from .recipe import derived_path
        report["recipe_file"] = str(save(recipe, recipe_out or derived_path(recipe["plan"])))
    if args.json:
        print(json.dumps(report))
        return 0
    print(report_text(report))
    print()
    print(noise_text(report))
    if args.derive_recipe:
        from .recipe import verdict
        print(f"\nrecipe written to {report['recipe_file']} (plan sha256 {report['recipe']['plan_sha256'][:12]}); "
              f"{verdict(report['recipe'])}")
    return 0


def _recipe_out(args):
    """Where --derive-recipe writes: --recipe-out, else the shipped recipe with --replace-recipe,
    else a new file beside it named by the plan (decided once the plan is known)."""
    from .recipe import RECIPE_FILE
    if args.recipe_out:
        out = Path(args.recipe_out)
        if out.resolve() == RECIPE_FILE.resolve() and not args.replace_recipe:
            raise CLIError(f"--recipe-out {out} is the shipped recipe of qint8-mixed; add --replace-recipe to "
                           f"replace it")
        return out
    return RECIPE_FILE if args.replace_recipe else None


def cmd_load(args) -> int:
    from .load import main_load
    out = main_load(args)
    if args.json:
        print(json.dumps(out))
        return 0
    if args.loop_seconds:
        g, m = out["generate"], out["measure"]
        fmt = (lambda v: f"{v:.1f} s" if v is not None else "-")
        print(f"{args.generate_users} users calling Generate ({args.words} words) in a loop for {args.loop_seconds:.0f} s,"
              f" one Measure ({args.slice}) sent at the start")
        print(f"Generate: {g['ok']} answered, {g['errors']} errors, {g['refusals']} refused; p50 {fmt(g['p50_s'])}, "
              f"p95 {fmt(g['p95_s'])}")
        done = out["measure_done_at_s"]
        print(f"Measure: {'finished after ' + fmt(done) if done is not None else 'did not finish'}"
              f"{' (while the Generates still ran)' if out['measure_finished_in_loop'] else ''}; "
              f"{m['errors']} errors")
        for e in g["first_errors"] + m["first_errors"]:
            print(f"  error: {e}")
        if out["rss_mb_before"] is not None:
            print(f"server resident memory: {out['rss_mb_before']:.0f} MB before, {out['rss_mb_after']:.0f} MB after")
        return 0
    print(f"{args.generate_users} generate users ({args.words} words) + {args.measure_users} measure users "
          f"({args.slice}), one request each, at once; wall {out['wall_s']:.1f} s, unfinished {out['unfinished']}")
    print(f"{'endpoint':<10} {'ok':>4} {'errors':>7} {'refused':>8} {'p50 s':>8} {'p95 s':>8}")
    for name in ("generate", "measure"):
        r = out[name]
        fmt = (lambda v: f"{v:8.2f}" if v is not None else f"{'-':>8}")
        print(f"{name:<10} {r['ok']:>4} {r['errors']:>7} {r['refusals']:>8} {fmt(r['p50_s'])} {fmt(r['p95_s'])}")
        for e in r["first_errors"]:
            print(f"  error: {e}")
    if out["rss_mb_before"] is not None:
        print(f"server resident memory: {out['rss_mb_before']:.0f} MB before, {out['rss_mb_after']:.0f} MB after")
    if "generate_wait_during_full_split_s" in out:
        print(f"a Generate sent while a full-split measurement ran was answered in "
              f"{out['generate_wait_during_full_split_s']:.1f} s")
    return 0


def cmd_results(args) -> int:
    from .bench import format_table
    from .results import ResultStore, rows_of
    from .storage import SHIPPED_RESULTS
    from .variants import cache_dir
    store = ResultStore(cache_dir(args.cache) / "results", shipped=[SHIPPED_RESULTS])
    records = store.all()
    if args.json:
        print(json.dumps(records))
        return 0
    if not any(not r.get("shipped") for r in records):
        print(f"no stored measurements in {store.folder}")
    for r in records:
        print(f"## {r['slice']}, {r['threads']} thread(s), measured {r['when']} on {r.get('cpu')} "
              f"({', '.join(f'{k} {v}' for k, v in r.get('versions', {}).items())})"
              f"{' [shipped with the app]' if r.get('shipped') else ''}\n")
        print(format_table(rows_of(r)))
        print()
    return 0


def _command(sub, name: str, help: str, func, *, model: str | None = None, split: bool = False):
    """A subcommand with the options several commands share: --checkpoint [--quantize], --data,
    [--split, --max-tokens], --threads, --json."""
    c = sub.add_parser(name, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    if model:
        c.add_argument("--quantize", action="store_true", help=f"{model} the qint8 dynamic quantized model")
    if split:
        c.add_argument("--data", help="WikiText-2 folder (default: $WLM_DATA or data/wikitext-2)")
        c.add_argument("--split", choices=["train", "valid", "test"], default="test")
        c.add_argument("--max-tokens", type=_positive_int, default=None, help="use only the first N tokens")
    c.add_argument("--threads", type=_positive_int, default=1, help="torch threads (tutorial: 1)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=func)
    return c


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wlm", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("download", help="fetch WikiText-2 and verify its sha256")
    d.add_argument("--dest", help="target folder (default: $WLM_DATA or data/wikitext-2)")
    d.add_argument("--mirror", help="base URL replacing the canonical one (or $WLM_DATA_MIRROR)")
    d.add_argument("--force", action="store_true", help="download again even if the files are there")
    d.add_argument("--json", action="store_true", help="print the result as JSON")
    d.set_defaults(func=cmd_download)

    _command(sub, "eval", "evaluate a checkpoint by the tutorial's protocol (bptt 25, batch 1)", cmd_eval,
             model="evaluate", split=True)

    g = _command(sub, "generate", "generate text word by word", cmd_generate, model="use")
    g.add_argument("--prompt", default="", help="text fed before generating (empty: a random start word)")
    g.add_argument("--words", type=_positive_int, default=100)
    g.add_argument("--temperature", type=_nonneg_float, default=1.0, help="0 = greedy")
    g.add_argument("--seed", type=_seed, default=0, help="0 to 2**63-1")
    g.add_argument("--variant", choices=list(_variant_names()), default=None,
                   help="generate with this variant (the demo's right pane; default fp32, --quantize: qint8)")
    g.add_argument("--cache", help="folder for ONNX exports (default: $WLM_CACHE or data/cache)")

    b = _command(sub, "bench", "measure fp32 vs variants in one run: size, loss, agreement, speed, words/s", cmd_bench,
                 split=True)
    b.add_argument("--variants", default="qint8",
                   help="comma-separated variants compared with fp32 (see wlm.variants.VARIANTS)")
    b.add_argument("--repeats", type=_positive_int, default=1, help="lockstep passes over the slice for W1")
    b.add_argument("--cache", help="folder for ONNX exports and stored results (default: $WLM_CACHE or data/cache)")
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
    b.add_argument("--block-chunks", type=_positive_int, default=None,
                   help="chunks each model runs in a row (default: wlm.evaluate.DEFAULT_BLOCK_CHUNKS; 1: the old "
                        "chunk-by-chunk lockstep)")

    ins = _command(sub, "inspect", "where int8 loses and why it is faster: per-part error, sensitivity, time",
                   cmd_inspect, split=True)
    ins.add_argument("--variant", default="qint8", help="the variant to take apart against fp32")
    ins.add_argument("--cache", help="folder for ONNX exports (default: $WLM_CACHE or data/cache)")
    ins.add_argument("--derive-recipe", action="store_true",
                     help="choose a mixed-precision plan from the sensitivities (wlm.recipe) and write it")
    ins.add_argument("--budget-mb", type=float, default=31.0, help="size budget of the derived recipe (MB)")
    ins.add_argument("--save-to", metavar="DIR",
                     help="store the result in DIR, where the app finds it (data/results: shipped with the app)")
    ins.add_argument("--recipe-out", default=None,
                     help="where the derived recipe goes (default: a new file data/recipes/qint8-mixed-<plan sha256>"
                          ".json; the variant's own file only with --replace-recipe)")
    ins.add_argument("--replace-recipe", action="store_true",
                     help="write the derived recipe over data/recipes/qint8-mixed.json, the plan qint8-mixed runs")

    from .score import add_arguments as score_arguments
    score_arguments(_command(sub, "score", "score your own text word by word with fp32 and a variant: where int8 "
                                          "changes its mind", cmd_score))
    ld = sub.add_parser("load", help="load-test the demo on loopback: concurrent generate and measure users",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ld.add_argument("--url", help="a running demo on this machine (default: launch demo.py on a free port)")
    ld.add_argument("--pid", type=int, help="the server's process id, for its memory (with --url)")
    ld.add_argument("--generate-users", type=int, default=16, help="concurrent /generate requests (0..64)")
    ld.add_argument("--measure-users", type=int, default=2, help="concurrent /measure requests (0..8)")
    ld.add_argument("--words", type=_positive_int, default=100)
    ld.add_argument("--slice", default="5,000 tokens", help="test tokens each measure user asks for")
    ld.add_argument("--deadline", type=float, default=600.0, help="seconds before unfinished requests are left")
    ld.add_argument("--full-split-wait", action="store_true",
                    help="then time one Generate sent while a full-split measurement runs")
    ld.add_argument("--loop-seconds", type=float, default=0,
                    help="instead: the generate users call Generate in a loop for this long while one measurement "
                         "(--slice) runs; prints Generate p50/p95 and when the measurement finished")
    ld.add_argument("--json", action="store_true")
    ld.set_defaults(func=cmd_load)

    rs = sub.add_parser("results", help="print the stored measurements (the app's and bench's) as tables")
    rs.add_argument("--cache", help="cache folder (default: $WLM_CACHE or data/cache)")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=cmd_results)

    t = sub.add_parser("train", help="train the model with the tutorial's recipe",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--data", help="WikiText-2 folder (default: $WLM_DATA or data/wikitext-2)")
    t.add_argument("--out", default=DEFAULT_CHECKPOINT, help="checkpoint to write (best by valid loss)")
    t.add_argument("--epochs", type=_positive_int, default=5)
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: 20 for sgd, 0.002 for adam)")
    t.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="sgd: plain steps, as the recipe")
    t.add_argument("--lstm-init", choices=["pytorch", "preserve"], default="pytorch",
                   help="preserve: scale-preserving LSTM init for deep stacks (see wlm.train.init_lstm_preserving)")
    t.add_argument("--init-gain", type=float, default=4.0, help="gain of the preserve init's input weights")
    t.add_argument("--clip", type=float, default=0.25)
    t.add_argument("--batch-size", type=_positive_int, default=20)
    t.add_argument("--bptt", type=_positive_int, default=35)
    t.add_argument("--seed", type=int, default=1111)
    t.add_argument("--ninp", type=_positive_int, default=512)
    t.add_argument("--nhid", type=_positive_int, default=256)
    t.add_argument("--nlayers", type=_positive_int, default=5)
    t.add_argument("--dropout", type=float, default=0.5)
    t.add_argument("--amp", choices=["none", "bf16"], default="none", help="autocast dtype")
    t.add_argument("--device", default="cpu", help="cpu, or cuda where present")
    t.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's)")
    t.add_argument("--anneal-last", action="store_true", help="divide the lr by 4 for the last epoch")
    t.add_argument("--resume", action="store_true", help="continue from the saved training state")
    t.add_argument("--dry-run", action="store_true", help="one batch per epoch (for tests)")
    t.add_argument("--save-every", type=float, default=300.0, help="seconds between training-state saves")
    t.add_argument("--record", help="training record (JSON) file (default: beside --out, .train.json)")
    t.add_argument("--json", action="store_true", help="print the training record as JSON")
    t.set_defaults(func=cmd_train)
    return p


def main(argv=None) -> int:
    from .checkpoint import CheckpointError
    from .download import DownloadError
    from .quantize import QuantizationError
    from .variants import VariantBuildError
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return args.func(args)
    except (CLIError, CheckpointError, DownloadError, QuantizationError, VariantBuildError, FileNotFoundError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
