"""python -m wlm score: your own text, scored word by word by fp32 and a variant (the page's "Your text")."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import add_model_options

HELP = "score your own text word by word with fp32 and a variant: where int8 changes its mind"


def add_arguments(parser) -> None:
    from ..score import MAX_SCORE_CHARS
    from ..variants import VARIANTS
    add_model_options(parser, cache=True)
    parser.add_argument("--variant", choices=[n for n in VARIANTS if n != "fp32"], default="qint8",
                        help="the model compared with fp32")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help=f"the text to score (at most {MAX_SCORE_CHARS:,} characters)")
    source.add_argument("--file", help="read the text from this file (UTF-8; '-': standard input)")


def run(args) -> int:
    """Print the report (or, with ``--json``, ``wlm.score.to_json``) of fp32 and ``args.variant`` on
    ``--text`` or ``--file`` (exactly one)."""
    from ..checkpoint import load_checkpoint
    from ..score import format_report, read_text, score, to_json
    from ..threads import num_threads
    from ..variants import VariantCache
    if (args.text is None) == (args.file is None):
        raise ValueError("give exactly one of --text and --file")
    if args.file is None:
        text = args.text
    elif args.file == "-":
        text = sys.stdin.read()
    else:
        text = Path(args.file).read_text(encoding="utf8")
    ckpt = load_checkpoint(args.checkpoint)
    read_text(ckpt.dictionary, text)             # a bad text fails before any variant is built
    cache = VariantCache(ckpt, args.cache)
    models = {"fp32": cache.get("fp32").model, args.variant: cache.get(args.variant).model}
    with num_threads(args.threads):
        result = score(models, ckpt.dictionary, text)
    if args.json:
        print(json.dumps({**to_json(result), "variant": args.variant, "checkpoint": str(args.checkpoint)}))
    else:
        print(format_report(result))
    return 0
