"""Where a protection run's time goes: seconds per stage, for `ppjax bench profile`.

A :class:`StageClock` is handed to the parts of a run that want to be measured (decoding, the
batch's stages, the panel); each wraps a stage in ``with clock("name"):``. Stages may run on
several threads at once (a batch's host work overlaps the next batch's program, the panel's
variants run on a pool), so their seconds are summed per stage and can add up to more than the
run's wall time. :data:`NO_CLOCK`, the default everywhere, measures nothing.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager

__all__ = ["StageClock", "NO_CLOCK"]


class StageClock:
    """Seconds and calls per stage name, summed over threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            with self._lock:
                self.seconds[stage] += spent
                self.calls[stage] += 1

    def rows(self) -> list[tuple[str, float, int]]:
        """(stage, seconds, calls), the longest first."""
        with self._lock:
            return sorted(((s, self.seconds[s], self.calls[s]) for s in self.seconds), key=lambda r: -r[1])


class _NoClock:
    @contextmanager
    def __call__(self, stage: str):
        yield


#: The clock that measures nothing (no lock, no timer).
NO_CLOCK = _NoClock()
