"""Clocks for pacing: the real monotonic clock, and a manual one so tests are deterministic.

The session reads time only through a clock: ``now()`` stamps pushes, ``sleep_until()`` paces frames.
With :class:`ManualClock` nothing depends on thread timing: sleeping sets the time.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float: ...

    def sleep_until(self, t: float) -> None: ...


class MonotonicClock:
    """Wall time from ``time.perf_counter``."""

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, t: float) -> None:
        dt = t - time.perf_counter()
        if dt > 0:
            time.sleep(dt)


class ManualClock:
    """Time that moves only when told: ``sleep_until`` jumps to ``t`` at once, ``advance`` adds to it."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, dt: float) -> None:
        with self._lock:
            self._t += float(dt)

    def sleep_until(self, t: float) -> None:
        with self._lock:
            self._t = max(self._t, float(t))
