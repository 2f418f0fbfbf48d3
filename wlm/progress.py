"""Progress callbacks: long work calls ``progress(done, total)``; the CLI passes tqdm."""
from __future__ import annotations

from typing import Callable, Optional

Progress = Optional[Callable[[int, int], None]]


class TqdmProgress:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr."""

    def __init__(self, desc: str, unit: str = "tok", disable: bool = False):
        from tqdm import tqdm
        self._tqdm = tqdm
        self.desc, self.unit, self.disable = desc, unit, disable
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = self._tqdm(total=total, desc=self.desc, unit=self.unit, unit_scale=True,
                                  disable=self.disable, leave=False, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
