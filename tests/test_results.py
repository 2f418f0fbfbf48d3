"""Stored results (wlm.results): lookups that parse nothing twice, a bounded store, versions that
tell a CUDA build from a CPU one, and the mixed variant keyed by its plan."""
import json
import os
import time

import pytest

from wlm import results
from wlm.bench import Measurement
from wlm.results import ResultStore, key_of, make_inspection_record, make_record


def record(i: int = 0, variants=("fp32", "qint8"), slice_label="2,000 tokens", plans=None) -> dict:
    rows = [Measurement(v, 1.0, {}, 5.0, 148.4, 1.0, 2000.0, 2000) for v in variants]
    return make_record(slice_label=slice_label, threads=1 + i, variants=list(variants), rows=rows,
                       engines={v: "torch" for v in variants}, machine={"cpu": "test cpu"},
                       checkpoint_sha256="c" * 64, test_sha256="t" * 64, **({"plans": plans} if plans else {}))


@pytest.fixture
def counted_parses(monkeypatch):
    """How many JSON documents were parsed (json.loads calls) since the fixture began."""
    calls = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda s, *a, **kw: calls.append(1) or real(s, *a, **kw))
    return calls


def test_a_lookup_parses_no_file_it_has_parsed(tmp_path, counted_parses):
    store = ResultStore(tmp_path)
    for i in range(30):
        store.save(record(i))
    assert store.lookup(["fp32", "qint8"], threads=5)["threads"] == 5
    before = len(counted_parses)
    for i in range(20):
        assert store.lookup(["fp32", "qint8"], threads=1 + i)["threads"] == 1 + i
    assert len(counted_parses) == before                # the (path, mtime, size) cache answered
    store.save(record(40))                              # one new file: one parse
    assert store.lookup(["fp32", "qint8"], threads=41) is not None
    assert len(counted_parses) == before + 1


def test_a_file_changed_or_removed_on_disk_is_read_again(tmp_path):
    store = ResultStore(tmp_path)
    path = store.save(record(0))
    assert store.find(threads=1)["slice"] == "2,000 tokens"
    changed = {**json.loads(path.read_text()), "slice": "5,000 tokens, rewritten"}
    path.write_text(json.dumps(changed))
    assert store.find(threads=1)["slice"] == "5,000 tokens, rewritten"
    path.write_text('{"format": "wlm-measurement/2", "slice": ')       # half written: counts as none
    assert store.find(threads=1) is None
    path.unlink()
    assert store.find(threads=1) is None and store.all() == []


def test_what_a_lookup_returns_is_a_copy(tmp_path):
    store = ResultStore(tmp_path)
    store.save(record(0))
    store.find(threads=1)["rows"].clear()
    assert len(store.find(threads=1)["rows"]) == 2


def test_the_store_is_bounded_least_recently_shown_go_first_shipped_stay(tmp_path):
    shipped = tmp_path / "shipped"
    ResultStore(shipped).save(record(100))              # as data/results ships one
    store = ResultStore(tmp_path / "own", [shipped], max_records=5)
    paths = []
    for i in range(5):
        paths.append(store.save(record(i)))
        os.utime(paths[-1], (time.time() - 1000 + i, time.time() - 1000 + i))   # saved in this order
        os.utime(paths[-1].with_name(f".{paths[-1].name}.shown"), (time.time() - 1000 + i,) * 2)
    assert store.lookup(["fp32", "qint8"], threads=1) is not None           # the oldest is shown again
    for i in range(5, 8):
        store.save(record(i))
    own = sorted(json.loads(p.read_text())["threads"] for p in (tmp_path / "own").glob("measure-*.json"))
    assert own == [1, 5, 6, 7, 8]                        # 2, 3 and 4 were shown least lately
    assert len(list(shipped.glob("measure-*.json"))) == 1
    assert store.find(threads=101)["shipped"] is True
    assert not [p for p in (tmp_path / "own").glob(".*.shown")
                if not p.with_name(p.name[1:-len(".shown")]).exists()]        # no marker outlives its record


def test_versions_tell_a_cuda_build_from_a_cpu_build(monkeypatch):
    import torch
    monkeypatch.setattr(torch, "__version__", "2.13.0")                # PyPI's Linux wheel
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    cuda = results.versions()
    assert cuda["torch"] == "2.13.0+cu128"
    monkeypatch.setattr(torch, "__version__", "2.13.0+cpu")            # PyTorch's CPU index
    monkeypatch.setattr(torch.version, "cuda", None)
    assert results.versions()["torch"] == "2.13.0+cpu"
    stored = {"versions": {"torch": "2.13.0+cpu", "onnxruntime": "1.32.0"}}
    assert results.version_differences(stored, {**cuda, "onnxruntime": "1.32.0"}) == {
        "torch": ("2.13.0+cpu", "2.13.0+cu128")}
    line = results.describe_version_differences(stored, {"torch": "2.13.0+cu128", "onnxruntime": "1.32.0"})
    assert line == ("measured with other library versions: torch 2.13.0+cpu (CPU build), "
                    "here 2.13.0+cu128 (CUDA 12.8 build)")
    assert results.describe_version_differences(stored, dict(stored["versions"])) == ""


def test_the_key_of_a_record_without_a_plan_is_as_before():
    r = record(0)
    old_fields = ("slice", "threads", "variants", "test_sha256", "checkpoint_sha256", "cpu", "versions")
    import hashlib
    old = hashlib.sha256(json.dumps({k: r.get(k) for k in old_fields}, sort_keys=True).encode()).hexdigest()[:20]
    assert key_of(r) == old                              # stored files keep their names
    assert key_of(record(0, variants=("fp32", "qint8-mixed"), plans={"qint8-mixed": "a" * 64})) != \
        key_of(record(0, variants=("fp32", "qint8-mixed"), plans={"qint8-mixed": "b" * 64}))


def test_the_mixed_variant_answers_only_for_its_plan(tmp_path):
    store = ResultStore(tmp_path)
    names = ["fp32", "qint8", "qint8-mixed"]
    store.save(record(0, variants=names, plans={"qint8-mixed": "a" * 64, "qint8": None}))
    assert store.lookup(names, plans={"qint8-mixed": "b" * 64}, threads=1) is None      # another plan
    hit = store.lookup(["fp32", "qint8-mixed"], plans={"qint8-mixed": "a" * 64}, threads=1)
    assert hit["plans"] == {"qint8-mixed": "a" * 64} and hit["variants"] == ["fp32", "qint8-mixed"]
    assert store.lookup(["fp32", "qint8"], threads=1) is not None       # its other rows still answer
    old = record(1, variants=names)                      # stored before plans were recorded
    store.save(old)
    assert store.lookup(names, plans={"qint8-mixed": "a" * 64}, threads=2) is None
    ins = ResultStore(tmp_path).inspections()
    ins.save(make_inspection_record(slice_label="2,000 tokens", threads=1, variant="qint8-mixed", report={},
                                    machine={"cpu": "x"}, checkpoint_sha256="c", test_sha256="t",
                                    plan_sha256="a" * 64))
    assert ins.find(variant="qint8-mixed", plan_sha256="b" * 64) is None
    assert ins.find(variant="qint8-mixed", plan_sha256="a" * 64) is not None
