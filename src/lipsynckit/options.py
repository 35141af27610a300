"""User options for a sync run (pydantic; defaults reproduce each model's official inference)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SyncOptions(BaseModel):
    """Everything about a run that is not the model's own options."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(25.0, gt=0, description="frame rate used for a still image input")
    length_mode: Literal["loop", "pingpong", "cut"] = Field(
        "loop", description="when the audio outlasts the video: loop it, ping-pong it, or cut the output"
    )
    output_mode: Literal["auto", "mp4", "ffv1", "png"] = Field(
        "auto",
        description="mp4 = H.264 + AAC; ffv1 = lossless mkv; png = lossless frame folder; auto = from suffix",
    )
    crf: int = Field(18, ge=0, le=51, description="x264 quality for mp4 output")
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
    ] = Field("medium", description="x264 speed/size trade-off for mp4 output (faster = larger file)")
    detector: str = Field("auto", description="face detector plugin name")
    face_boxes: Path | None = Field(None, description="JSON file of per-frame boxes (skips detection)")
    face_select: Literal["largest", "score", "index", "box"] = "largest"
    face_index: int = 0
    face_box: tuple[float, float, float, float] | None = None
    exact_detection: bool = Field(
        False, description="detect on every frame at full resolution (official behaviour)"
    )
    detect_every: int | None = Field(
        None, ge=1, description="run the detector every N frames and track between"
    )
    face_workers: int | None = Field(
        None,
        ge=1,
        description="threads for the face pass (default: the usable cores, at most 8); the track is "
        "the same for any number",
    )
    batch_size: int | None = Field(
        None, ge=1, description="model batch size (default: the scheduler decides)"
    )
    prepare_workers: int = Field(2, ge=1)
    avatar_dir: Path | None = Field(
        None, description="cache prepared faces here (one template, many audio tracks)"
    )
    allow_silent_audio: bool = False
    gate: bool = Field(
        True,
        description="mouth at rest where nobody speaks: outside the speech spans the output keeps the source "
        "frame and the model is not called (False = every model's official behaviour)",
    )
    vad: Literal["energy", "silero"] = Field(
        "energy", description="voice-activity detector for the gate (silero: pip install lipsynckit[vad])"
    )
    gate_hangover_s: float = Field(
        0.1, ge=0, le=2.0, description="seconds a speech span is held after the sound"
    )
    gate_fade_frames: int = Field(3, ge=0, le=25, description="cross-fade frames at each speech boundary")
    progress: bool = True
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("vad")
    @classmethod
    def _vad_runs_here(cls, v: str) -> str:
        from lipsynckit.vad import check_vad

        check_vad(v)  # before any model loads
        return v

    @field_validator("face_box", mode="before")
    @classmethod
    def _parse_box(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(float(x) for x in v.replace(" ", "").split(","))
        return v


def output_mode_for(path: Path, requested: str) -> str:
    if requested != "auto":
        return requested
    suffix = path.suffix.lower()
    if suffix == ".mkv":
        return "ffv1"
    if suffix == "":
        return "png"
    return "mp4"
