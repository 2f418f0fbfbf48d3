"""Measurements that persist: one JSON file per (slice, threads, variants, machine, checkpoint,
library versions), written atomically, read back by later visitors of the app and by
``python -m wlm results``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path

from .bench import Measurement
from .evaluate import Agreement

FORMAT = "wlm-measurement/1"
KEY_FIELDS = ("slice", "threads", "variants", "checkpoint_sha256", "cpu", "versions")


def versions() -> dict:
    """The library versions a timing depends on."""
    import torch
    out = {"torch": torch.__version__}
    try:
        import onnxruntime
        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return out


def make_record(*, slice_label: str, threads: int, variants: list[str], rows: list[Measurement],
                engines: dict, machine: dict, checkpoint_sha256: str, test_sha256: str | None) -> dict:
    return {"format": FORMAT, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "slice": slice_label, "threads": threads, "variants": list(variants),
            "checkpoint_sha256": checkpoint_sha256, "cpu": machine.get("cpu"), "versions": versions(),
            "machine": machine, "test_sha256": test_sha256, "engines": engines,
            "tokens": rows[0].tokens, "rows": [m.to_dict() for m in rows]}


def key_of(record: dict) -> str:
    key = json.dumps({k: record.get(k) for k in KEY_FIELDS}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def rows_of(record: dict) -> list[Measurement]:
    return [Measurement(**{**r, "agreement": Agreement(**r["agreement"]) if r.get("agreement") else None})
            for r in record["rows"]]


class ResultStore:
    """A folder of measurement records, the latest per key."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, record_or_key: dict) -> Path:
        return self.folder / f"measure-{key_of(record_or_key)}.json"

    def save(self, record: dict) -> Path:
        """Write the record atomically (temporary file, then rename); returns its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(record)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".measure-", suffix=".part")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, indent=1)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def find(self, key: dict) -> dict | None:
        """The stored record with these key fields, or None (unreadable files count as none)."""
        try:
            record = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        return record if record.get("format") == FORMAT else None

    def latest_anywhere(self, **match) -> dict | None:
        """The newest record whose fields equal ``match`` (e.g. slice, threads, variants and
        checkpoint, measured on any machine), or None."""
        found = [r for r in self.all() if all(r.get(k) == v for k, v in match.items())]
        return found[-1] if found else None

    def all(self) -> list[dict]:
        out = []
        for p in sorted(self.folder.glob("measure-*.json")):
            try:
                record = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if record.get("format") == FORMAT:
                out.append(record)
        return sorted(out, key=lambda r: r.get("when", ""))
