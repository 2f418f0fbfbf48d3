"""Thread counts (wlm.threads): the CPUs a process may use, a container's CPU quota included."""
import os

import pytest

from wlm import threads
from wlm.threads import allowed_threads, cgroup_quota_cpus, usable_cpus


@pytest.fixture
def many_cpus(monkeypatch):
    """An affinity mask of 16 CPUs, as a container limited by quota sees the host's."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))


def v2(root, text):
    root.mkdir(exist_ok=True)
    (root / "cpu.max").write_text(text + "\n")
    return root


def v1(root, quota, period):
    (root / "cpu").mkdir(parents=True, exist_ok=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize("text, cpus", [("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1),
                                        ("max 100000", 16), ("2000000 100000", 16)])
def test_cgroup_v2_quota_bounds_the_cpus(tmp_path, many_cpus, text, cpus):
    assert usable_cpus(v2(tmp_path / "cg", text)) == cpus


@pytest.mark.parametrize("quota, period, cpus", [(200000, 100000, 2), (-1, 100000, 16), (10000, 100000, 1)])
def test_cgroup_v1_quota_bounds_the_cpus(tmp_path, many_cpus, quota, period, cpus):
    assert usable_cpus(v1(tmp_path / "cg", quota, period)) == cpus


def test_no_cgroup_files_leaves_the_affinity_count(tmp_path, many_cpus):
    assert cgroup_quota_cpus(tmp_path / "none") is None and usable_cpus(tmp_path / "none") == 16
    assert usable_cpus(v2(tmp_path / "bad", "garbage here")) == 16


def test_the_page_offers_only_what_the_quota_allows(tmp_path, many_cpus, monkeypatch):
    monkeypatch.setattr(threads, "CGROUP_ROOT", str(v2(tmp_path / "cg", "200000 100000")))
    assert usable_cpus(threads.CGROUP_ROOT) == 2
    assert allowed_threads(cpus=usable_cpus(threads.CGROUP_ROOT)) == (1, 2)


def test_this_machine_reads_without_error():
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
