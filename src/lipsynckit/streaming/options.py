"""Settings of a streaming session (pydantic, so a bad value is one clear line before anything loads)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StreamOptions(BaseModel):
    """How a :class:`~lipsynckit.streaming.StreamSession` paces, buffers and blends its frames."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(default=25.0, gt=0.0, le=120.0, description="output frame rate")
    realtime: bool = Field(
        default=True,
        description="frames at the frame rate, idle frames when there is nothing to say; "
        "False: one frame per 1/fps of pushed audio, as fast as they are made",
    )
    sample_rate: int = Field(
        default=16000,
        ge=8000,
        le=192000,
        description="rate of the silence in idle frames until the first push sets the session's rate",
    )
    render_budget_s: float = Field(
        default=0.05,
        ge=0.0,
        le=2.0,
        description="time given to render the first frame of an utterance (and after an underrun): "
        "it is planned this much after its audio arrives, which also absorbs push jitter",
    )
    crossfade_frames: int = Field(
        default=2,
        ge=0,
        le=12,
        description="frames that blend the mouth in at speech start and out at its end",
    )
    auto_flush_s: float | None = Field(
        default=0.3,
        gt=0.0,
        description="realtime: an utterance with no new audio for this long is flushed (its last frames "
        "need look-ahead that will not come); None: wait for flush()",
    )
    max_lag_s: float = Field(
        default=0.3,
        gt=0.0,
        description="realtime: a consumer this far behind the frame clock while nothing is being said "
        "re-anchors it (skips idle frames); behind during speech it catches up instead (never shifts speech)",
    )
    max_latency_ms: float = Field(
        default=400.0,
        ge=40.0,
        le=10000.0,
        description="realtime: how far video may fall behind its audio. A speech frame not rendered by "
        "max(its tick + one frame, its push + 3/4 of this) is dropped (the last rendered face repeats; "
        "the last quarter is headroom to emit it) and the renderer skips frames it cannot finish in "
        "time, so latency returns under this after a stall",
    )
    history_s: float | None = Field(
        default=None,
        gt=0.0,
        description="audio context before a frame for models whose features are computed on a sliding "
        "window (None: the model's default)",
    )
    max_queued_s: float = Field(
        default=60.0,
        gt=0.0,
        description="real time: pushed audio not yet played beyond this is refused (back-pressure); "
        "offline sessions take any amount",
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="scheduler batch (None: share the model's default scheduler)"
    )
