"""Clocks for pacing: the real monotonic clock, and a manual one so tests are deterministic.

The session reads time only through a clock: ``now()`` stamps pushes, ``sleep_until()`` paces frames,
``wait(event, deadline)`` waits for a frame's render no later than its deadline. With
:class:`ManualClock` nothing depends on thread timing: sleeping sets the time, and a wait ends only when
the event is set or the time was moved past the deadline (by ``advance``, e.g. from a test model).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float: ...

    def sleep_until(self, t: float) -> None: ...


def wait_until(clock: Clock, event: threading.Event, deadline: float) -> bool:
    """Wait for ``event`` until ``deadline`` by ``clock``; True if it is set (clocks without ``wait``
    fall back to wall time)."""
    if deadline == math.inf:
        event.wait()
        return True
    wait = getattr(clock, "wait", None)
    if wait is not None:
        return bool(wait(event, deadline))
    return event.wait(max(0.0, deadline - clock.now()))


class MonotonicClock:
    """Wall time from ``time.perf_counter``."""

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, t: float) -> None:
        dt = t - time.perf_counter()
        if dt > 0:
            time.sleep(dt)

    def wait(self, event: threading.Event, deadline: float) -> bool:
        return event.wait(max(0.0, deadline - time.perf_counter()))


class ManualClock:
    """Time that moves only when told: ``sleep_until`` jumps to ``t`` at once, ``advance`` adds to it."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._lock = threading.Condition()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, dt: float) -> None:
        with self._lock:
            self._t += float(dt)
            self._lock.notify_all()

    def sleep_until(self, t: float) -> None:
        with self._lock:
            self._t = max(self._t, float(t))
            self._lock.notify_all()

    def wait(self, event: threading.Event, deadline: float) -> bool:
        """True once ``event`` is set; False once the time has been moved to ``deadline`` (the event is
        checked first, so a frame made before its deadline is always used)."""
        while True:
            if event.is_set():
                return True
            with self._lock:
                if self._t >= deadline:
                    return event.is_set()
                self._lock.wait(0.01)  # the event is not a condition: look again (outcome is not timed)
