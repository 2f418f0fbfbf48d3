"""python -m wlm results: print the stored measurements (the app's, bench's and the shipped ones)."""
from __future__ import annotations

import json

HELP = "print the stored measurements (the app's and bench's) as tables"


def add_arguments(rs) -> None:
    rs.add_argument("--cache", help="cache folder (default: $WLM_CACHE or data/cache)")
    rs.add_argument("--json", action="store_true")
    rs.add_argument("--markdown", action="store_true", help="the shipped records as docs/results.md (Markdown)")
    rs.add_argument("--short", action="store_true", help="with --markdown: only the README's table")
    rs.add_argument("--checkpoint", default=None, help="the checkpoint whose records (default: the shipped one)")


def run(args) -> int:
    from ..bench import format_table
    from ..results import ResultStore, rows_of
    from ..storage import SHIPPED_RESULTS
    from ..variants import cache_dir
    store = ResultStore(cache_dir(args.cache) / "results", shipped=[SHIPPED_RESULTS])
    if args.markdown:
        return _markdown(args)
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


def _markdown(args) -> int:
    """docs/results.md (or, with --short, the README's table) from the shipped records only, so that
    what is printed does not depend on what this machine measured."""
    from ..checkpoint import DEFAULT_CHECKPOINT
    from ..download import sha256_file
    from ..recipe import LOWBIT_FILE, load_lowbit
    from ..report import full_split, results_markdown, short_table
    from ..results import ResultStore
    from ..storage import SHIPPED_RESULTS
    from .common import CLIError
    sha = sha256_file(args.checkpoint or DEFAULT_CHECKPOINT)
    store = ResultStore(SHIPPED_RESULTS)
    if args.short:
        record = full_split(store, sha)
        if record is None:
            raise CLIError(f"no full-split measurement of this checkpoint in {SHIPPED_RESULTS}")
        print(short_table(record))
        return 0
    try:
        recipe = load_lowbit(LOWBIT_FILE, sha)
    except ValueError:
        recipe = None
    print(results_markdown(store, sha, recipe), end="")
    return 0
