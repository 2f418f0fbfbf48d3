"""python -m wlm inspect: where int8 loses and why it is faster, part by part; and the recipe
the analysis chooses (``--derive-recipe``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import CLIError, add_model_options, command_line, corpus_of

HELP = "where int8 loses and why it is faster: per-part error, sensitivity, time"


def add_arguments(ins) -> None:
    add_model_options(ins, split=True, cache=True)
    ins.add_argument("--variant", default="qint8", help="the variant to take apart against fp32")
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


def run(args) -> int:
    from ..checkpoint import load_checkpoint
    from ..inspection import Inspection, noise_text, report_text
    from ..progress import TqdmProgress
    from ..threads import num_threads
    from ..variants import VARIANTS, VariantCache
    offered = [n for n, s in VARIANTS.items() if n != "fp32" and s.speed_claimed]
    if args.variant not in offered:
        raise CLIError(f"--variant must be one of {', '.join(offered)}, got {args.variant!r} (low-bit weights: "
                       f"python -m wlm bits)")
    ckpt = load_checkpoint(args.checkpoint)
    corpus = corpus_of(args, ckpt)
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
        from ..bench import machine_info
        from ..data import slice_label
        from ..download import sha256_file
        from ..results import ResultStore, make_inspection_record
        record = make_inspection_record(slice_label=slice_label(args.max_tokens), threads=args.threads,
                                        variant=args.variant, report=report, machine=machine_info(args.threads),
                                        checkpoint_sha256=ckpt.sha256,
                                        test_sha256=sha256_file(corpus.path / "test.txt"),
                                        source=command_line(args), plan_sha256=variant.plan_sha256)
        print(f"stored: {ResultStore(args.save_to).inspections().save(record)}", file=sys.stderr)
    if args.derive_recipe:
        from ..recipe import derive, derived_path, save
        recipe = derive(report, args.budget_mb, report["size_overhead_mb"])
        recipe["command"] = command_line(args)
        recipe["checkpoint_sha256"] = ckpt.sha256
        report["recipe"] = recipe
        report["recipe_file"] = str(save(recipe, recipe_out or derived_path(recipe["plan"])))
    if args.json:
        print(json.dumps(report))
        return 0
    print(report_text(report))
    print()
    print(noise_text(report))
    if args.derive_recipe:
        from ..recipe import verdict
        print(f"\nrecipe written to {report['recipe_file']} (plan sha256 {report['recipe']['plan_sha256'][:12]}); "
              f"{verdict(report['recipe'])}")
    return 0


def _recipe_out(args):
    """Where --derive-recipe writes: --recipe-out, else the shipped recipe with --replace-recipe,
    else a new file beside it named by the plan (decided once the plan is known)."""
    from ..recipe import RECIPE_FILE
    if args.recipe_out:
        out = Path(args.recipe_out)
        if out.resolve() == RECIPE_FILE.resolve() and not args.replace_recipe:
            raise CLIError(f"--recipe-out {out} is the shipped recipe of qint8-mixed; add --replace-recipe to "
                           f"replace it")
        return out
    return RECIPE_FILE if args.replace_recipe else None
