"""What a session measured: frames by kind, late and dropped frames, underruns, push-to-play latency."""

from __future__ import annotations

from collections import deque

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class StreamStats(BaseModel):
    """Counters of one session. ``latencies`` holds, for each speech frame emitted, the time from the
    push that brought the frame's last sample to the frame's emission (the most recent 10 000 frames),
    so every session that spoke has a summary, however its audio was chunked."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    frames: int = 0
    speech_frames: int = 0
    idle_frames: int = 0
    late_frames: int = Field(default=0, description="emitted more than one frame period after their tick")
    underruns: int = Field(default=0, description="speech paused because its audio (or look-ahead) came late")
    reanchors: int = Field(
        default=0, description="the consumer fell behind by max_lag_s while idle; idle frames were skipped"
    )
    dropped_frames: int = Field(
        default=0,
        description="speech frames not rendered within max_latency_ms: their audio played with a stand-in",
    )
    repeated_frames: int = Field(
        default=0, description="dropped frames shown as the utterance's last rendered face (a subset)"
    )
    interrupts: int = 0
    auto_flushes: int = 0
    pushed_samples: int = 0
    _latency: deque[float] = PrivateAttr(default_factory=lambda: deque(maxlen=10000))

    def record_idle(self, late: bool) -> None:
        self.frames += 1
        self.idle_frames += 1
        self.late_frames += int(late)

    def record_speech(
        self, late: bool, latency: float | None, dropped: bool = False, repeated: bool = False
    ) -> None:
        self.frames += 1
        self.speech_frames += 1
        self.late_frames += int(late)
        self.dropped_frames += int(dropped)
        self.repeated_frames += int(repeated)
        if latency is not None:
            self._latency.append(latency)

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
