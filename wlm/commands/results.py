"""python -m wlm results: print the stored measurements (the app's, bench's and the shipped ones)."""
from __future__ import annotations

import json

HELP = "print the stored measurements (the app's and bench's) as tables"


def add_arguments(rs) -> None:
    rs.add_argument("--cache", help="cache folder (default: $WLM_CACHE or data/cache)")
    rs.add_argument("--json", action="store_true")


def run(args) -> int:
    from ..bench import format_table
    from ..results import ResultStore, rows_of
    from ..storage import SHIPPED_RESULTS
    from ..variants import cache_dir
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
