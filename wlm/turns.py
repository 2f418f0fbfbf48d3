"""Sharing one CPU between visitors: generation first, measurement between its chunks."""
from __future__ import annotations

import threading
from contextlib import contextmanager


class CpuTurns:
    """One CPU-bound job at a time, generation first: a measurement takes the CPU one chunk at a
    time and waits between chunks while any generation is waiting, so a visitor's Generate never
    waits for a whole measurement, and no job's timing is disturbed by another."""

    def __init__(self):
        self._cpu = threading.Lock()
        self._cond = threading.Condition()
        self._waiting = 0

    @contextmanager
    def priority(self):
        with self._cond:
            self._waiting += 1
        try:
            with self._cpu:
                yield
        finally:
            with self._cond:
                self._waiting -= 1
                self._cond.notify_all()

    @contextmanager
    def background(self):
        with self._cond:
            self._cond.wait_for(lambda: self._waiting == 0)
        with self._cpu:
            yield
