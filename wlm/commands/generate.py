"""python -m wlm generate: write word by word with fp32 or a variant (the page's pane, same seed)."""
from __future__ import annotations

import json
import sys

from .common import add_model_options, load_model, nonneg_float, positive_int, seed

HELP = "generate text word by word"


def add_arguments(g) -> None:
    from ..variants import VARIANTS
    add_model_options(g, model="use", cache=True)
    g.add_argument("--prompt", default="", help="text fed before generating (empty: a random start word)")
    g.add_argument("--words", type=positive_int, default=100)
    g.add_argument("--temperature", type=nonneg_float, default=1.0, help="0 = greedy")
    g.add_argument("--seed", type=seed, default=0, help="0 to 2**63-1")
    g.add_argument("--variant", choices=list(VARIANTS), default=None,
                   help="generate with this variant (the demo's right pane; default fp32, --quantize: qint8)")
    g.add_argument("--recipe", default=None, help="or with this low-bit recipe, e.g. 'embedding=int2-g32 "
                                                  "lstm=int2-g32 decoder=int2-g32' (the page's Your recipe)")


def run(args) -> int:
    from ..generate import GenerationConfig, generate
    from .common import CLIError
    if args.recipe and (args.variant or args.quantize):
        raise CLIError("give one of --variant, --quantize and --recipe")
    from ..threads import num_threads
    ckpt, model, name = load_model(args)
    cfg = GenerationConfig(prompt=args.prompt, words=args.words, temperature=args.temperature, seed=args.seed)
    unknown = ckpt.dictionary.encode(args.prompt).unknown
    if unknown:
        print(f"note: not in the vocabulary, read as <unk>: {' '.join(unknown)}", file=sys.stderr)
    words = []
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
