"""Sharing one CPU between visitors: who computes next.

Three kinds of work ask for a turn:

- ``generate``: a Generate's work between two updates of the page (a few words, or a chunk of
  its prompt; ~100 ms, ``wlm.sidebyside.STREAM_INTERVAL_S``), or a chunk of a Your text;
- ``chunk``: one step of a measurement (one model over a block of chunks, ``wlm.evaluate``);
- ``build``: preparing a variant (seconds; cannot be split).

Rules:

1. A ``chunk`` never overlaps anything else, and ``generate`` turns run side by side only up
   to ``generate_slots`` at once (one per CPU at the app's thread count): each times only its
   own calls, on a CPU of its own.
2. A ``build`` never overlaps a ``chunk`` (a measurement's timing stays clean), but may run
   beside a ``generate`` turn, so that no Generate waits seconds for someone else's variant;
   such a turn is marked ``disturbed`` and the page says so.
3. When the CPU frees, a waiting ``generate`` goes first (a Generate clicked during a
   measurement runs right after the current chunk), unless the measurement is owed a turn:
   a waiting chunk is owed once the generate turns since the last chunk have used
   ``(1 - share) / share`` times that chunk's time. So under a continuous stream of Generates
   a measurement still gets ``share`` of the CPU and finishes.
4. Turns of one kind go first come, first served: a Generate asks again after each update,
   so concurrent Generates take turns word batch by word batch.

A turn is held only while computing: a Generate gives the CPU back before the page is sent
its update, so a slow or vanished client holds nothing.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

KINDS = ("generate", "chunk", "build")
DEFAULT_MEASURE_SHARE = 0.2


@dataclass
class Turn:
    kind: str
    started: float
    disturbed: bool = False      # a build ran beside this (generate) turn


@dataclass
class Snapshot:
    waiting: dict[str, int] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)


class CpuTurns:
    """The scheduler of the rules above.

    Args:
        measure_share: the CPU share a measurement keeps under a continuous stream of Generates.
        generate_slots: how many generate turns may run at once (CPUs / threads per turn).
        clock: seconds, monotonic (tests pass a fake one).
    Example:
        >>> turns = CpuTurns()
        >>> with turns.turn("chunk"):
        ...     comparison.step()
    """

    def __init__(self, measure_share: float = DEFAULT_MEASURE_SHARE, generate_slots: int = 1,
                 clock: Callable[[], float] = time.perf_counter):
        if not 0 < measure_share < 1:
            raise ValueError(f"measure_share must be between 0 and 1, got {measure_share!r}")
        if not isinstance(generate_slots, int) or generate_slots < 1:
            raise ValueError(f"generate_slots must be a positive integer, got {generate_slots!r}")
        self.measure_share, self.generate_slots, self._clock = measure_share, generate_slots, clock
        self._cond = threading.Condition()
        self._queue: dict[str, deque] = {k: deque() for k in KINDS}
        self._running: dict[str, list[Turn]] = {k: [] for k in KINDS}
        self._generate_s = 0.0       # generate seconds since the last chunk (per slot)
        self._last_chunk_s = 0.0     # how long the last chunk took

    # ------------------------------------------------------------------ rules
    def _chunk_may_run(self) -> bool:
        return (not self._running["generate"] and not self._running["chunk"] and not self._running["build"]
                and not self._queue["build"])

    def _chunk_owed(self) -> bool:
        ratio = (1 - self.measure_share) / self.measure_share
        return bool(self._queue["chunk"]) and self._generate_s >= ratio * self._last_chunk_s

    def _may_start(self, kind: str, ticket) -> bool:
        if self._queue[kind][0] is not ticket:
            return False                                   # first come, first served within a kind
        if kind == "generate":
            # an owed chunk lets the running generate turns drain rather than start new ones
            return (not self._running["chunk"] and len(self._running["generate"]) < self.generate_slots
                    and not (self._chunk_owed() and not self._running["build"] and not self._queue["build"]))
        if kind == "chunk":
            return self._chunk_may_run() and (not self._queue["generate"] or self._chunk_owed())
        return not self._running["chunk"] and not self._running["build"]     # build

    # ------------------------------------------------------------------ turns
    @contextmanager
    def turn(self, kind: str) -> Iterator[Turn]:
        """Wait for a turn of ``kind`` under the rules, hold it for the block."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        ticket = object()
        with self._cond:
            self._queue[kind].append(ticket)
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: self._may_start(kind, ticket))
            finally:
                self._queue[kind].remove(ticket)
                self._cond.notify_all()
            t = Turn(kind, self._clock())
            if kind == "generate" and self._running["build"]:
                t.disturbed = True
            if kind == "build":
                for g in self._running["generate"]:
                    g.disturbed = True
            self._running[kind].append(t)
        try:
            yield t
        finally:
            with self._cond:
                self._running[kind].remove(t)
                spent = self._clock() - t.started
                if kind == "generate":
                    self._generate_s += spent / self.generate_slots
                elif kind == "chunk":
                    self._last_chunk_s, self._generate_s = spent, 0.0
                self._cond.notify_all()

    def generate(self):
        return self.turn("generate")

    def chunk(self):
        return self.turn("chunk")

    def build(self):
        return self.turn("build")

    # ------------------------------------------------------------------ looking on
    def snapshot(self) -> Snapshot:
        with self._cond:
            return Snapshot({k: len(q) for k, q in self._queue.items()},
                            {k: len(r) for k, r in self._running.items()})

    def wait_until(self, predicate: Callable[[Snapshot], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate(snapshot)`` holds (checked at every change); False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: predicate(Snapshot({k: len(q) for k, q in self._queue.items()},
                                           {k: len(r) for k, r in self._running.items()})), timeout)
