"""Measurements that persist: one JSON file per (slice, threads, variants, test data, checkpoint,
machine, library versions), written atomically, read back by later visitors of the app and by
``python -m wlm results``.

A store has a folder it writes to and, optionally, folders it only reads: the results shipped
with the app (``data/results``, measured with ``python -m wlm bench --save``), so a new server
shows full-split figures before anyone measures there. A record answers any request for a
subset of its variants: every model of a lockstep run timed only its own calls, and each
variant is compared with fp32 on the same tokens, so its rows stand alone. A variant whose
model follows a plan file (``qint8-mixed``) answers only for the same plan: its plan's sha256
is part of the record (``plans``; ``plan_sha256`` for an inspection).

A lookup parses no file twice: records are cached by (path, mtime, size). The store keeps at
most ``max_records`` of its own records: when it holds more, those least recently shown
(returned by ``lookup`` / ``find``; a hidden ``.<name>.shown`` file beside each records the
time) are removed. Shipped records are never removed.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import threading
from pathlib import Path

from .bench import Measurement
from .evaluate import Agreement
from .storage import write_json

FORMAT = "wlm-measurement/2"
KEY_FIELDS = ("slice", "threads", "variants", "test_sha256", "checkpoint_sha256", "cpu", "versions", "plans")
INSPECTION_FORMAT = "wlm-inspection/1"
INSPECTION_KEY_FIELDS = ("slice", "threads", "variant", "test_sha256", "checkpoint_sha256", "cpu", "versions",
                         "plan_sha256")
LADDER_FORMAT = "wlm-ladder/1"
LADDER_KEY_FIELDS = ("split", "slice", "data_sha256", "checkpoint_sha256", "calibration_sha256", "cpu", "versions")
OPTIONAL_KEY_FIELDS = ("plans", "plan_sha256")    # in a record's key only when set: older keys stay as they were
MAX_RECORDS = 200                  # a store's own records kept (least recently shown beyond this are removed)


def torch_version() -> str:
    """torch's version with its build: a CUDA or ROCm build whose version has no local tag (PyPI's
    Linux wheel says "2.13.0") gets one ("2.13.0+cu128"), so it never reads as a CPU build."""
    import torch
    v = str(torch.__version__)
    if "+" in v:
        return v
    if torch.version.cuda:
        return f"{v}+cu{torch.version.cuda.replace('.', '')}"
    if getattr(torch.version, "hip", None):
        return f"{v}+rocm{torch.version.hip.split('-')[0]}"
    return v


def describe_build(torch_v: str) -> str:
    """What a torch version's local tag says, in words: "CPU build", "CUDA 12.8 build", ... ("" if
    there is no tag)."""
    tag = torch_v.partition("+")[2]
    if tag == "cpu":
        return "CPU build"
    if tag.startswith("cu") and tag[2:].isdigit():
        return f"CUDA {tag[2:-1]}.{tag[-1]} build"
    if tag.startswith("rocm"):
        return f"ROCm {tag[4:]} build"
    return f"{tag} build" if tag else ""


def versions() -> dict:
    """The library versions a timing depends on (torch with its build, see ``torch_version``)."""
    out = {"torch": torch_version()}
    try:
        import onnxruntime
        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return out


def version_differences(record: dict, current: dict | None = None) -> dict[str, tuple[str | None, str | None]]:
    """The libraries whose version differs between a stored ``record`` and this process (or
    ``current``): name -> (stored version, version here); None where one side has none."""
    stored, here = record.get("versions") or {}, versions() if current is None else current
    return {k: (stored.get(k), here.get(k)) for k in sorted(set(stored) | set(here)) if stored.get(k) != here.get(k)}


def describe_version_differences(record: dict, current: dict | None = None) -> str:
    """One line for the page, "" when the versions are the same, e.g. "measured with other library
    versions: torch 2.13.0+cpu (CPU build), here 2.13.0+cu128 (CUDA 12.8 build)"."""
    def one(v):
        if v is None:
            return "none"
        build = describe_build(v)
        return f"{v} ({build})" if build else v
    diffs = version_differences(record, current)
    if not diffs:
        return ""
    return "measured with other library versions: " + "; ".join(
        f"{name} {one(a)}, here {one(b)}" for name, (a, b) in diffs.items())


def make_record(*, slice_label: str, threads: int, variants: list[str], rows: list[Measurement],
                engines: dict, machine: dict, checkpoint_sha256: str, test_sha256: str,
                source: str = "app", timing: dict | None = None, plans: dict[str, str] | None = None,
                no_speed: list[str] | None = None) -> dict:
    """A measurement as stored. ``variants`` in canonical order (fp32 first, then as
    ``wlm.variants.VARIANTS`` lists them); ``test_sha256`` of the test file measured;
    ``source``: what measured it ("app" or the bench command); ``timing``: the measurement's
    own wall and model seconds; ``plans``: variant -> sha256 of the plan it was built from, for
    the variants that follow a plan file (``wlm.variants.Variant.plan_sha256``); ``no_speed``: the
    variants whose speed is not claimed (low-bit weights computed in fp32)."""
    plans = {v: plans[v] for v in variants if plans and plans.get(v)} or None
    return {"format": FORMAT, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "slice": slice_label, "threads": threads, "variants": list(variants), "test_sha256": test_sha256,
            "checkpoint_sha256": checkpoint_sha256, "cpu": machine.get("cpu"), "versions": versions(),
            **({"plans": plans} if plans else {}), **({"no_speed": list(no_speed)} if no_speed else {}),
            "machine": machine, "engines": engines, "source": source, "timing": timing or {},
            "tokens": rows[0].tokens, "rows": [m.to_dict() for m in rows]}


def make_inspection_record(*, slice_label: str, threads: int, variant: str, report: dict, machine: dict,
                           checkpoint_sha256: str, test_sha256: str, source: str = "app",
                           plan_sha256: str | None = None) -> dict:
    """An inspection (``wlm.inspection``) as stored; ``plan_sha256``: the variant's plan, if it has one."""
    return {"format": INSPECTION_FORMAT, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "slice": slice_label, "threads": threads, "variant": variant, "test_sha256": test_sha256,
            "checkpoint_sha256": checkpoint_sha256, "cpu": machine.get("cpu"), "versions": versions(),
            **({"plan_sha256": plan_sha256} if plan_sha256 else {}),
            "machine": machine, "source": source, "report": report}


def make_ladder_record(*, split: str, slice_label: str, ladder, machine: dict, checkpoint_sha256: str,
                       data_sha256: str, calibration: dict | None, source: str, threads: int) -> dict:
    """A bit ladder (``wlm.ladder.Ladder``, finished) as stored: every rung's figures, fp32's loss
    and file, and what the ladder was measured on."""
    loss, loss_se = ladder.fp32_loss()
    return {"format": LADDER_FORMAT, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "split": split, "slice": slice_label, "tokens": ladder.n, "data_sha256": data_sha256,
            "checkpoint_sha256": checkpoint_sha256,
            "calibration_sha256": (calibration or {}).get("sha256"), "calibration": calibration,
            "cpu": machine.get("cpu"), "versions": versions(), "machine": machine, "threads": threads,
            "source": source, "call_tokens": ladder.call_tokens, "seconds": ladder.seconds,
            "fp32": {"loss": loss, "loss_se": loss_se, "file_mb": ladder.fp32_mb},
            "rungs": [r.to_dict() for r in ladder.results()]}


def key_of(record: dict, fields=KEY_FIELDS) -> str:
    """The short hash naming a record's file: its key fields (an optional one only when set)."""
    key = json.dumps({k: record.get(k) for k in fields
                      if k not in OPTIONAL_KEY_FIELDS or record.get(k) is not None}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def rows_of(record: dict) -> list[Measurement]:
    return [Measurement(**{**r, "agreement": Agreement(**r["agreement"]) if r.get("agreement") else None})
            for r in record["rows"]]


def select(record: dict, variants: list[str]) -> dict:
    """The record with only ``variants`` (a subset of its own, fp32 first), in that order; a
    true subset says of how many models it was taken (``subset_of``)."""
    rows = {r["model"]: r for r in record["rows"]}
    out = {**record, "variants": list(variants), "rows": [rows[v] for v in variants],
           "engines": {v: record.get("engines", {}).get(v, "") for v in variants}}
    if len(variants) < len(record["variants"]):
        out["subset_of"] = len(record["variants"])     # its timing is the whole run's, not these models'
    if record.get("plans"):
        out["plans"] = {v: p for v, p in record["plans"].items() if v in variants} or None
    return out


def _shown_marker(path: Path) -> Path:
    return path.with_name(f".{path.name}.shown")


class ResultStore:
    """Records of one kind (measurements by default; ``inspections()`` for the other kind):
    written to ``folder``, read from it and from ``shipped`` folders (never written).

    Thread-safe; one store per process and kind is enough (it caches what it parsed)."""

    def __init__(self, folder: str | os.PathLike, shipped: list[str | os.PathLike] = (), *,
                 fmt: str = FORMAT, prefix: str = "measure", key_fields=KEY_FIELDS,
                 max_records: int = MAX_RECORDS):
        if not isinstance(max_records, int) or max_records < 1:
            raise ValueError(f"max_records must be a positive integer, got {max_records!r}")
        self.folder = Path(folder)
        self.shipped = [Path(p) for p in shipped]
        self.fmt, self.prefix, self.key_fields, self.max_records = fmt, prefix, key_fields, max_records
        self._parsed: dict[Path, tuple[int, int, dict | None]] = {}   # path -> (mtime_ns, size, record)
        self._lock = threading.Lock()
        self.parses = 0                     # files parsed so far (tests check that lookups reuse them)

    def inspections(self) -> "ResultStore":
        """The store of inspections beside this one (same folders)."""
        return ResultStore(self.folder, self.shipped, fmt=INSPECTION_FORMAT, prefix="inspect",
                           key_fields=INSPECTION_KEY_FIELDS, max_records=self.max_records)

    def ladders(self) -> "ResultStore":
        """The store of bit ladders (``wlm.ladder``) beside this one (same folders)."""
        return ResultStore(self.folder, self.shipped, fmt=LADDER_FORMAT, prefix="ladder",
                           key_fields=LADDER_KEY_FIELDS, max_records=self.max_records)

    def path(self, record_or_key: dict) -> Path:
        return self.folder / f"{self.prefix}-{key_of(record_or_key, self.key_fields)}.json"

    def save(self, record: dict) -> Path:
        """Write the record atomically (``wlm.storage.write_json``), then drop the least recently
        shown of this folder's records beyond ``max_records``; returns its path."""
        path = write_json(self.path(record), record)
        self._touch(path)
        self.prune()
        return path

    def lookup(self, variants: list[str], plans: dict[str, str] | None = None, **match) -> dict | None:
        """The newest record whose fields equal ``match`` (e.g. slice, threads, test and
        checkpoint sha256, and cpu and versions for this machine only) and which measured every
        one of ``variants`` (for a variant in ``plans``, built from that plan: see
        ``wlm.variants.VariantCache.plans``), cut down to them (``select``); None if there is none."""
        plans = plans or {}

        def fits(r: dict) -> bool:
            have = r.get("plans") or {}
            return (set(variants) <= set(r.get("variants", ())) and r.get("variants", [None])[0] == variants[0]
                    and all(have.get(v) == plans.get(v) for v in variants))
        found = self.find(fits, **match)
        return select(found, variants) if found else None

    def find(self, where=lambda record: True, **match) -> dict | None:
        """The newest record whose fields equal ``match`` and for which ``where`` holds, or None.
        The record returned is a copy, and counts as shown (see the module's docstring)."""
        found = None
        for path, record in self._records():
            if all(record.get(k) == v for k, v in match.items()) and where(record):
                found = (path, record)
        if found is None:
            return None
        path, record = found
        if not record["shipped"]:
            self._touch(path)
        return copy.deepcopy(record)

    def all(self) -> list[dict]:
        """Every readable record of this format, oldest first (unreadable files count as none)."""
        return [copy.deepcopy(r) for _, r in self._records()]

    # ---------------------------------------------------------------- the files
    def _records(self) -> list[tuple[Path, dict]]:
        """(path, record) of every readable record, oldest first; a file is parsed again only
        when its mtime or size changed."""
        out = []
        with self._lock:
            seen = set()
            for folder in (self.folder, *self.shipped):
                shipped = folder != self.folder
                for path, st in self._listing(folder):
                    seen.add(path)
                    cached = self._parsed.get(path)
                    if cached is None or cached[:2] != (st.st_mtime_ns, st.st_size):
                        cached = (st.st_mtime_ns, st.st_size, self._parse(path, shipped))
                        self._parsed[path] = cached
                    if cached[2] is not None:
                        out.append((path, cached[2]))
            for path in set(self._parsed) - seen:
                del self._parsed[path]
        return sorted(out, key=lambda pr: pr[1].get("when", ""))

    def _listing(self, folder: Path):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return []
        out = []
        for e in entries:
            if e.name.startswith(f"{self.prefix}-") and e.name.endswith(".json"):
                try:
                    out.append((Path(e.path), e.stat()))
                except OSError:
                    pass
        return sorted(out)

    def _parse(self, path: Path, shipped: bool) -> dict | None:
        self.parses += 1
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None                 # unreadable, or half written (see wlm.storage): none
        if not isinstance(record, dict) or record.get("format") != self.fmt:
            return None
        record["shipped"] = shipped
        return record

    def _touch(self, path: Path) -> None:
        """Record that ``path`` was shown now (its marker's mtime); best effort."""
        marker = _shown_marker(path)
        try:
            try:
                os.utime(marker)
            except FileNotFoundError:
                marker.touch()
        except OSError:
            pass

    def _last_shown(self, path: Path) -> float:
        times = []
        for p in (path, _shown_marker(path)):
            try:
                times.append(p.stat().st_mtime)
            except OSError:
                pass
        return max(times, default=0.0)

    def prune(self) -> list[Path]:
        """Remove this folder's records beyond ``max_records``, least recently shown first (never
        a shipped one); returns the paths removed."""
        own = [p for p, _ in self._listing(self.folder)]
        if len(own) <= self.max_records:
            return []
        own.sort(key=self._last_shown, reverse=True)
        removed = []
        for path in own[self.max_records:]:
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                continue
            try:
                _shown_marker(path).unlink()
            except OSError:
                pass
        return removed
