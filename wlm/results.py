"""Measurements that persist: one JSON file per (slice, threads, variants, test data, checkpoint,
machine, library versions), written atomically, read back by later visitors of the app and by
``python -m wlm results``.

A store has a folder it writes to and, optionally, folders it only reads: the results shipped
with the app (``data/results``, measured with ``python -m wlm bench --save``), so a new server
shows full-split figures before anyone measures there. A record answers any request for a
subset of its variants: every model of a lockstep run timed only its own calls, and each
variant is compared with fp32 on the same tokens, so its rows stand alone.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

from .bench import Measurement
from .evaluate import Agreement
from .storage import write_json

FORMAT = "wlm-measurement/2"
KEY_FIELDS = ("slice", "threads", "variants", "test_sha256", "checkpoint_sha256", "cpu", "versions")
INSPECTION_FORMAT = "wlm-inspection/1"
INSPECTION_KEY_FIELDS = ("slice", "threads", "variant", "test_sha256", "checkpoint_sha256", "cpu", "versions")


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
                engines: dict, machine: dict, checkpoint_sha256: str, test_sha256: str,
                source: str = "app", timing: dict | None = None) -> dict:
    """A measurement as stored. ``variants`` in canonical order (fp32 first, then as
    ``wlm.variants.VARIANTS`` lists them); ``test_sha256`` of the test file measured;
    ``source``: what measured it ("app" or the bench command); ``timing``: the measurement's
    own wall and model seconds."""
    return {"format": FORMAT, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "slice": slice_label, "threads": threads, "variants": list(variants), "test_sha256": test_sha256,
            "checkpoint_sha256": checkpoint_sha256, "cpu": machine.get("cpu"), "versions": versions(),
            "machine": machine, "engines": engines, "source": source, "timing": timing or {},
            "tokens": rows[0].tokens, "rows": [m.to_dict() for m in rows]}


def make_inspection_record(*, slice_label: str, threads: int, variant: str, report: dict, machine: dict,
                           checkpoint_sha256: str, test_sha256: str, source: str = "app") -> dict:
    """An inspection (``wlm.inspection``) as stored."""
    return {"format": INSPECTION_FORMAT, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "slice": slice_label, "threads": threads, "variant": variant, "test_sha256": test_sha256,
            "checkpoint_sha256": checkpoint_sha256, "cpu": machine.get("cpu"), "versions": versions(),
            "machine": machine, "source": source, "report": report}


def key_of(record: dict, fields=KEY_FIELDS) -> str:
    key = json.dumps({k: record.get(k) for k in fields}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def rows_of(record: dict) -> list[Measurement]:
    return [Measurement(**{**r, "agreement": Agreement(**r["agreement"]) if r.get("agreement") else None})
            for r in record["rows"]]


def select(record: dict, variants: list[str]) -> dict:
    """The record with only ``variants`` (a subset of its own, fp32 first), in that order."""
    rows = {r["model"]: r for r in record["rows"]}
    return {**record, "variants": list(variants), "rows": [rows[v] for v in variants],
            "engines": {v: record.get("engines", {}).get(v, "") for v in variants}}


class ResultStore:
    """Records of one kind (measurements by default; ``inspections()`` for the other kind):
    written to ``folder``, read from it and from ``shipped`` folders."""

    def __init__(self, folder: str | os.PathLike, shipped: list[str | os.PathLike] = (), *,
                 fmt: str = FORMAT, prefix: str = "measure", key_fields=KEY_FIELDS):
        self.folder = Path(folder)
        self.shipped = [Path(p) for p in shipped]
        self.fmt, self.prefix, self.key_fields = fmt, prefix, key_fields

    def inspections(self) -> "ResultStore":
        """The store of inspections beside this one (same folders)."""
        return ResultStore(self.folder, self.shipped, fmt=INSPECTION_FORMAT, prefix="inspect",
                           key_fields=INSPECTION_KEY_FIELDS)

    def path(self, record_or_key: dict) -> Path:
        return self.folder / f"{self.prefix}-{key_of(record_or_key, self.key_fields)}.json"

    def save(self, record: dict) -> Path:
        """Write the record atomically (temporary file, then rename); returns its path."""
        return write_json(self.path(record), record)

    def lookup(self, variants: list[str], **match) -> dict | None:
        """The newest record whose fields equal ``match`` (e.g. slice, threads, test and
        checkpoint sha256, and cpu and versions for this machine only) and which measured every
        one of ``variants``, cut down to them (``select``); None if there is none."""
        found = self.find(lambda r: set(variants) <= set(r.get("variants", ()))
                          and r.get("variants", [None])[0] == variants[0], **match)
        return select(found, variants) if found else None

    def find(self, where=lambda record: True, **match) -> dict | None:
        """The newest record whose fields equal ``match`` and for which ``where`` holds, or None."""
        found = [r for r in self.all() if all(r.get(k) == v for k, v in match.items()) and where(r)]
        return found[-1] if found else None

    def all(self) -> list[dict]:
        """Every readable record of this format, oldest first (unreadable files count as none)."""
        out = []
        for folder in (self.folder, *self.shipped):
            for p in sorted(folder.glob(f"{self.prefix}-*.json")):
                try:
                    record = json.loads(p.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(record, dict) and record.get("format") == self.fmt:
                    record["shipped"] = folder != self.folder
                    out.append(record)
        return sorted(out, key=lambda r: r.get("when", ""))
