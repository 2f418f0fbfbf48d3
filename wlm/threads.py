"""Thread counts that hold: torch's intra-op thread count belongs to the OS thread that sets it.

``torch.set_num_threads`` is per OS thread in this build (a thread that set 1 still reads 1
after another sets 2), and a web server resumes a generator on whichever worker thread is
free. So a ``with num_threads(n):`` around a generator's body is entered on one thread and
left on another, and the words in between run at whatever count those threads hold.
``pinned`` sets the count at every resumption, on the thread that resumes.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

import torch

T = TypeVar("T")
PAGE_CHOICES = (1, 2, 4)           # the thread counts the page offers


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


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; a container's cpuset shows here)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def allowed_threads(choices: Iterable[int] = PAGE_CHOICES, cpus: int | None = None) -> tuple[int, ...]:
    """The thread counts a shared server accepts: the offered ``choices`` that fit the usable
    CPUs (at least 1). More threads than CPUs only queue for them and disturb every timing."""
    cpus = usable_cpus() if cpus is None else cpus
    return tuple(n for n in choices if n <= max(1, cpus)) or (1,)
