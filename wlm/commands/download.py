"""python -m wlm download: fetch WikiText-2 and verify its sha256."""
from __future__ import annotations

import json

from .common import tqdm_factory

HELP = "fetch WikiText-2 and verify its sha256"


def add_arguments(d) -> None:
    d.add_argument("--dest", help="target folder (default: $WLM_DATA or data/wikitext-2)")
    d.add_argument("--mirror", help="base URL replacing the canonical one (or $WLM_DATA_MIRROR)")
    d.add_argument("--force", action="store_true", help="download again even if the files are there")
    d.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    from ..data import resolve_data_dir
    from ..download import download
    dest = resolve_data_dir(args.dest)
    paths = download(dest, mirror=args.mirror, progress_factory=tqdm_factory("B", args.json), force=args.force)
    if args.json:
        print(json.dumps({k: str(v) for k, v in paths.items()}))
    else:
        print(f"WikiText-2 ready in {dest} (sha256 verified: {', '.join(paths)})")
    return 0
