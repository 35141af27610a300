"""CPU stages run in worker threads, in order and bounded (decode, prepare, composite, encode)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_ordered(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    workers: int,
    max_pending: int | None = None,
    on_time: Callable[[float], None] | None = None,
) -> Generator[R, None, None]:
    """Apply ``fn`` in a thread pool, yielding results in input order with at most ``max_pending`` in flight.

    Why: decode, detection, cropping, blending and encoding release the GIL in numpy/OpenCV/PyAV, so a
    few threads overlap them with each other and with the device thread, while the bound keeps memory
    flat. ``workers=0`` runs inline. An exception of ``fn`` is raised at its item's position.
    ``on_time(seconds)`` receives the time of each call (stage timing).
    """

    def timed(x: T) -> R:
        t0 = time.perf_counter()
        try:
            return fn(x)
        finally:
            if on_time is not None:
                on_time(time.perf_counter() - t0)

    if workers <= 0:
        for x in iterable:
            yield timed(x)
        return
    bound = max(1, max_pending if max_pending is not None else 2 * workers)
    pending: deque[Future[R]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lsk-cpu")
    try:
        for x in iterable:
            pending.append(pool.submit(timed, x))
            if len(pending) >= bound:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
