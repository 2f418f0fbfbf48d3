"""python -m wlm bits: the bit ladder, each part from 8 down to 2 bits (``wlm.ladder``), and the
smallest recipe within a size budget chosen from it (``--derive-recipe``, ``wlm.recipe``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import CLIError, add_model_options, command_line, corpus_of

HELP = "the bit ladder: every part from 8 down to 2 bits, its KL, loss change and top-1 against fp32"


def add_arguments(c) -> None:
    from ..gptq import CALIBRATION_FILE
    add_model_options(c, split=True)
    c.set_defaults(max_tokens=20_000)
    c.add_argument("--parts", default="", help="comma-separated parts (embedding, lstm.K, decoder, all; default: "
                                               "every part and all)")
    c.add_argument("--bits", default="8,6,5,4,3,2", help="comma-separated widths, each 2 to 8")
    c.add_argument("--groups", default="row,32", help="comma-separated: row (one scale per row) or a group size")
    c.add_argument("--roundings", default="rtn,mse,gptq", help="comma-separated, of rtn, mse, gptq")
    c.add_argument("--calibration", default=str(CALIBRATION_FILE),
                   help="the input statistics rounding=gptq needs (python -m wlm calibrate)")
    c.add_argument("--save-to", metavar="DIR", help="store the ladder in DIR (data/results: shipped with the app)")
    c.add_argument("--derive-recipe", action="store_true",
                   help="choose the recipe of least predicted KL within --budget-mb from this ladder (run it on "
                        "--split valid, so that the test split judges the choice) and write it")
    c.add_argument("--budget-mb", type=float, default=None,
                   help="size budget of the derived recipe, its packed file (default 18 unless --target-kl)")
    c.add_argument("--target-kl", type=float, default=None,
                   help="instead of a budget: the smallest recipe whose predicted KL is at most this")
    c.add_argument("--ladder", metavar="FILE", help="derive from this stored ladder (a ladder-*.json) instead of "
                                                     "measuring one")
    c.add_argument("--recipe-out", default=None, help="where the derived recipe goes (default: a new file "
                                                      "data/recipes/lowbit-mixed-<sha>.json)")
    c.add_argument("--replace-recipe", action="store_true",
                   help="write the derived recipe over data/recipes/lowbit-mixed.json, the plan lowbit-mixed runs")


def _list(text: str, name: str, parse) -> list:
    try:
        return [parse(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise CLIError(f"--{name}: could not read {text!r}") from None


def run(args) -> int:
    from ..checkpoint import load_checkpoint
    from ..ladder import Ladder, rungs
    from ..lowbit import GROUPS, MAX_BITS, MIN_BITS, ROUNDINGS
    from ..progress import TqdmProgress
    from ..threads import num_threads
    bits = _list(args.bits, "bits", int)
    groups = _list(args.groups, "groups", lambda t: None if t == "row" else int(t))
    roundings = _list(args.roundings, "roundings", str)
    if not bits or any(not MIN_BITS <= b <= MAX_BITS for b in bits):
        raise CLIError(f"--bits must be widths from {MIN_BITS} to {MAX_BITS}, got {args.bits!r}")
    if not groups or any(g is not None and g not in GROUPS for g in groups):
        raise CLIError(f"--groups must be row or one of {', '.join(map(str, GROUPS))}, got {args.groups!r}")
    if not roundings or any(r not in ROUNDINGS for r in roundings):
        raise CLIError(f"--roundings must be among {', '.join(ROUNDINGS)}, got {args.roundings!r}")
    if args.replace_recipe and not args.derive_recipe:
        raise CLIError("--replace-recipe writes a derived recipe: add --derive-recipe")
    if args.budget_mb is not None and args.target_kl is not None:
        raise CLIError("give one of --budget-mb and --target-kl")
    _recipe_out(args)                                     # refused before the work, not after
    if args.ladder:
        if not args.derive_recipe:
            raise CLIError("--ladder derives a recipe from a stored ladder: add --derive-recipe")
        try:
            record = json.loads(Path(args.ladder).read_text())
        except (OSError, ValueError) as e:
            raise CLIError(f"--ladder {args.ladder}: {e}") from None
        from ..results import LADDER_FORMAT
        if not isinstance(record, dict) or record.get("format") != LADDER_FORMAT:
            raise CLIError(f"--ladder {args.ladder}: not a stored ladder (format {LADDER_FORMAT}; "
                           f"python -m wlm bits --save-to DIR writes one)")
        return _finish(args, record)
    ckpt = load_checkpoint(args.checkpoint)
    corpus = corpus_of(args, ckpt)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()] or None
    todo = rungs(ckpt.model.config, parts, bits, groups, roundings)
    hessians, calibration = None, None
    if "gptq" in roundings:
        from ..download import sha256_file
        from ..gptq import Calibration
        cal = Calibration.load(args.calibration, ckpt.sha256)
        hessians = cal.hessians
        calibration = {"file": Path(args.calibration).name, "sha256": sha256_file(args.calibration),
                       "tokens": cal.tokens, "split": cal.provenance.get("split")}
    bar = TqdmProgress(f"bits: {len(todo)} rungs", unit="tok", disable=args.json)
    with num_threads(args.threads):
        ladder = Ladder(ckpt.model, corpus.split(args.split), todo, hessians, max_tokens=args.max_tokens,
                        vocab=ckpt.dictionary.idx2word)
        while ladder.step():
            bar(*ladder.progress)
    bar.close()
    from ..bench import machine_info
    from ..data import slice_label
    from ..download import sha256_file
    from ..results import ResultStore, make_ladder_record
    record = make_ladder_record(split=args.split, slice_label=slice_label(args.max_tokens), ladder=ladder,
                                machine=machine_info(args.threads), checkpoint_sha256=ckpt.sha256,
                                data_sha256=sha256_file(corpus.path / f"{args.split}.txt"), calibration=calibration,
                                source=command_line(args), threads=args.threads)
    if args.save_to:
        print(f"stored: {ResultStore(args.save_to).ladders().save(record)}", file=sys.stderr)
    return _finish(args, record)


def _recipe_out(args):
    """Where --derive-recipe writes: --recipe-out, else the shipped recipe with --replace-recipe, else
    None (a new file named by the recipe, once it is known)."""
    from ..recipe import LOWBIT_FILE
    if args.recipe_out:
        out = Path(args.recipe_out)
        if out.resolve() == LOWBIT_FILE.resolve() and not args.replace_recipe:
            raise CLIError(f"--recipe-out {out} is the shipped recipe of lowbit-mixed; add --replace-recipe")
        return out
    return LOWBIT_FILE if args.replace_recipe else None


def _finish(args, record: dict) -> int:
    """Derive the recipe if asked, then print the ladder (text or JSON)."""
    from ..ladder import format_ladder
    if args.derive_recipe:
        from ..recipe import derive_lowbit, lowbit_derived_path, save
        budget = args.budget_mb if args.budget_mb is not None or args.target_kl is not None else 18.0
        recipe = derive_lowbit(record, budget, args.target_kl)
        recipe["command"] = command_line(args)
        path = save(recipe, _recipe_out(args) or lowbit_derived_path(recipe["recipe"]))
        record["derived_recipe"] = {**recipe, "file": str(path)}
    if args.json:
        print(json.dumps(record))
        return 0
    print(format_ladder(record))
    if args.derive_recipe:
        d = record["derived_recipe"]
        rule = f"within {d['budget_mb']} MB" if d["target_kl"] is None else f"smallest at KL <= {d['target_kl']}"
        print(f"\nderived recipe, {rule} (written to {d['file']}): {d['recipe']}\n  predicted KL "
              f"{d['predicted_kl']:.5f}, predicted file {d['predicted_mb']:.2f} MB, from {record['tokens']:,} "
              f"{record['split']} tokens")
    return 0
