"""The CPU budget of streaming: which threads a session and a process run, and how many cores torch uses.

Per session: two renderer threads (``lsk-stream-submit`` computes features and submits, ``lsk-stream-
collect`` composites), plus the caller's thread that iterates ``frames()`` (the pacer) and the one that
pushes audio. Per loaded model: one scheduler device thread (``lsk-device``) shared by every session on
it, which is where the model runs (batched across sessions). Per process: torch's intra-op pool (and
OpenMP's, which torch sizes with it), used by ``generate`` and by nothing else on the hot path (the
stream resampler is soxr, single-threaded, well under 1 % of a core).

Measured on 2 loaded cores (issue 19): torch's default (one thread per core) makes the device thread's
OpenMP workers fight the renderer and pacer threads and every other process: ``serve`` gave 0.95-2.8
fps at load 13-19, 13-16 fps with ``OMP_NUM_THREADS=1``; Wav2Lip ran faster with one intra-op thread
than with two. So ``serve`` and ``bench --stream`` use **one torch thread per process by default**
(``--threads`` to change it), and a library user running sessions in a server should call
:func:`set_stream_threads` once at start-up. ``lsk.stream`` itself does not change process-wide
settings behind the caller's back.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

DEFAULT_TORCH_THREADS = 1


def set_stream_threads(torch_threads: int = DEFAULT_TORCH_THREADS) -> int:
    """Size torch's intra-op (and OpenMP) pool for real-time serving; returns the number in force.

    Sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` for libraries not loaded yet (unless the user set
    them), ``torch.set_num_threads`` and, if torch has not started its inter-op pool, one inter-op
    thread (sessions already run in parallel on their own threads).
    """
    n = max(1, int(torch_threads))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already started (set once per process): keep what it has
        pass
    log.info("streaming: torch uses %d intra-op thread(s), %d inter-op", n, torch.get_num_interop_threads())
    return torch.get_num_threads()
