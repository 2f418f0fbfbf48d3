"""Thread counts that hold: torch's intra-op thread count belongs to the OS thread that sets it.

``torch.set_num_threads`` is per OS thread in this build (a thread that set 1 still reads 1
after another sets 2), and a web server resumes a generator on whichever worker thread is
free. So a ``with num_threads(n):`` around a generator's body is entered on one thread and
left on another, and the words in between run at whatever count those threads hold.
``pinned`` sets the count at every resumption, on the thread that resumes.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

import torch

T = TypeVar("T")
PAGE_CHOICES = (1, 2, 4)           # the thread counts the page offers
CGROUP_ROOT = "/sys/fs/cgroup"


@contextmanager
def num_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)`` on this OS thread, restoring the old
    value after (None: leave it as it is). The block must not yield to other threads' code."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def pinned(items: Iterable[T], n: int | None) -> Iterator[T]:
    """``items`` (e.g. a generator), each ``next()`` run at ``n`` threads on the OS thread that
    calls it; between two items nothing is set, so the caller's threads keep their own counts."""
    it = iter(items)
    while True:
        with num_threads(n):
            try:
                item = next(it)
            except StopIteration:
                return
        yield item


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (a container's cpuset shows here)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cgroup_quota_cpus(root: str | os.PathLike = CGROUP_ROOT) -> float | None:
    """The CPU time a container may use, in CPUs (quota / period), or None when unlimited or
    unknown: cgroup v2's ``cpu.max`` ("200000 100000"; "max 100000" = no limit), else v1's
    ``cpu/cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 = no limit) under ``root``.

    Only the cgroup mounted at ``root`` is read (in a container, its own)."""
    root = str(root)
    v2 = _read(os.path.join(root, "cpu.max"))
    if v2 is not None:
        fields = v2.split()
        if len(fields) >= 1 and fields[0] != "max":
            try:
                quota, period = int(fields[0]), int(fields[1]) if len(fields) > 1 else 100_000
            except ValueError:
                return None
            return quota / period if quota > 0 and period > 0 else None
        return None
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu", ""):
        quota = _read(os.path.join(root, folder, "cpu.cfs_quota_us"))
        period = _read(os.path.join(root, folder, "cpu.cfs_period_us"))
        if quota is None or period is None:
            continue
        try:
            q, p = int(quota), int(period)
        except ValueError:
            return None
        return q / p if q > 0 and p > 0 else None
    return None


def usable_cpus(cgroup_root: str | os.PathLike = CGROUP_ROOT) -> int:
    """CPUs this process may run on: its affinity mask (a container's cpuset), bounded by its
    cgroup's CPU quota (``ceil(quota / period)``, at least 1), which a container limited by time
    rather than by CPUs shows nowhere else (its affinity lists all the host's CPUs)."""
    cpus = affinity_cpus()
    quota = cgroup_quota_cpus(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def allowed_threads(choices: Iterable[int] = PAGE_CHOICES, cpus: int | None = None) -> tuple[int, ...]:
    """The thread counts a shared server accepts: the offered ``choices`` that fit the usable
    CPUs (at least 1). More threads than CPUs only queue for them and disturb every timing."""
    cpus = usable_cpus() if cpus is None else cpus
    return tuple(n for n in choices if n <= max(1, cpus)) or (1,)
