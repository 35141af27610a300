"""What a session measured: frames by kind, late frames, underruns, and push-to-play latency."""

from __future__ import annotations

from collections import deque

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class StreamStats(BaseModel):
    """Counters of one session. ``latency`` is, for each pushed chunk, the time from its push to the
    emission of the frame that plays its last sample (the most recent 10 000 chunks)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    frames: int = 0
    speech_frames: int = 0
    idle_frames: int = 0
    late_frames: int = Field(default=0, description="emitted more than one frame period after their tick")
    underruns: int = Field(default=0, description="speech paused because its audio (or look-ahead) came late")
    reanchors: int = Field(
        default=0, description="the consumer fell behind by max_lag_s; the clock was reset"
    )
    interrupts: int = 0
    auto_flushes: int = 0
    pushed_samples: int = 0
    _latency: deque[float] = PrivateAttr(default_factory=lambda: deque(maxlen=10000))

    def record_idle(self, late: bool) -> None:
        self.frames += 1
        self.idle_frames += 1
        self.late_frames += int(late)

    def record_speech(self, late: bool, latencies: list[float]) -> None:
        self.frames += 1
        self.speech_frames += 1
        self.late_frames += int(late)
        self._latency.extend(latencies)

    @property
    def latencies(self) -> list[float]:
        return list(self._latency)

    def latency_summary(self) -> dict[str, float]:
        """p50, p95 and max of the push-to-play latency, in milliseconds (empty if none yet)."""
        if not self._latency:
            return {}
        a = np.asarray(self._latency) * 1000.0
        return {
            "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)),
            "max_ms": float(a.max()),
        }
