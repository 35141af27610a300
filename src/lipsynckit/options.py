"""User options for a sync run (pydantic; defaults reproduce each model's official inference)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lipsynckit.errors import LipSyncError
from lipsynckit.limits import DEFAULT_FRAME_QUEUE_BYTES, DEFAULT_MAX_PIXELS


class SyncOptions(BaseModel):
    """Everything about a run that is not the model's own options."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(25.0, gt=0, description="frame rate used for a still image input")
    length_mode: Literal["loop", "pingpong", "cut"] = Field(
        "pingpong",
        description="when the audio outlasts the video: play it back and forth (no visible cut), loop it "
        "(jumps back to frame 0), or cut the output",
    )
    output_mode: Literal["auto", "mp4", "ffv1", "png", "webm"] = Field(
        "auto",
        description="auto = from the output's suffix (.mp4/.mov H.264 + AAC, .mkv lossless FFV1, .webm "
        "VP9 + Opus, no suffix = PNG folder); ffv1 = lossless (.mkv or a folder)",
    )
    crf: int = Field(18, ge=0, le=51, description="H.264 quality for mp4 output (lower is better)")
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
    ] = Field("medium", description="x264 speed/size trade-off for mp4 output (faster = larger file)")
    encode_threads: int | None = Field(
        None,
        ge=1,
        le=64,
        description="threads of the H.264/VP9 encoder (None = the encoder's own choice, all cores). "
        "Manifests use 1 per job: their jobs already run side by side, and x264's threads made the "
        "bytes of a file depend on the machine's load",
    )
    detector: str = Field("auto", description="face detector (see `lipsynckit detectors`)")
    detector_options: dict[str, Any] = Field(
        default_factory=dict,
        description="options of the chosen detector, as JSON on the command line (e.g. '{\"conf\": 0.8}'); "
        "`lipsynckit detectors` lists each detector's",
    )
    face_boxes: Path | None = Field(None, description="JSON file of per-frame boxes (skips detection)")
    face_select: Literal["largest", "score", "index", "box"] = Field(
        "largest",
        description="with several faces: the largest, the most confident (what the official Wav2Lip "
        "takes), the N-th from the left (face_index) or the one nearest face_box",
    )
    face_index: int = Field(0, description="with several faces: the N-th from the left (selects by index)")
    face_box: tuple[float, float, float, float] | None = Field(
        None, description="with several faces: the one nearest this box x1,y1,x2,y2 (selects by box)"
    )
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
    prepare_workers: int = Field(2, ge=1, description="threads that prepare faces for the model")
    avatar_dir: Path | None = Field(
        None, description="cache prepared faces here (one template, many audio tracks)"
    )
    allow_silent_audio: bool = Field(False, description="accept silent audio (a closed mouth throughout)")
    keep_going: bool = Field(
        False,
        description="a frame whose preparation fails is passed through unchanged and listed in "
        "SyncResult.failed_frames, instead of ending the run with an error",
    )
    gate: bool = Field(
        True,
        description="mouth at rest where nobody speaks: outside the speech spans the output keeps the source "
        "frame and the model is not called (False = every model's official behaviour)",
    )
    vad: Literal["auto", "energy", "silero"] = Field(
        "auto",
        description="voice-activity detector for the gate: auto = silero when installed (it hears pauses in "
        "noise: docs/benchmarks.md), else energy (silero: pip install lipsynckit[vad])",
    )
    gate_hangover_s: float = Field(
        0.1, ge=0, le=2.0, description="seconds a speech span is held after the sound"
    )
    gate_fade_frames: int = Field(3, ge=0, le=25, description="cross-fade frames at each speech boundary")
    rest: Literal["auto", "source", "closed"] = Field(
        "auto",
        description="what the gate shows where nobody speaks: auto = the model's closed mouth where the "
        "source frame speaks in the video's own audio track (a dubbing source), else the source frame; "
        "source = always the source frame; closed = always the model's closed mouth",
    )
    max_pixels: int | None = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        description="largest picture (width x height) accepted, checked from the file's header before "
        "decoding; larger ones are refused (default 4096x4096: 4K video, 12-MP photos)",
    )
    frame_queue_bytes: int = Field(
        DEFAULT_FRAME_QUEUE_BYTES,
        ge=1,
        description="bytes of decoded frames waiting for their faces (the frame queue; its length in "
        "frames follows from the frame size)",
    )
    progress: bool = Field(True, description="progress bars on the terminal")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="free-form values for plugins and hooks (Python API only)"
    )

    @field_validator("vad")
    @classmethod
    def _vad_runs_here(cls, v: str) -> str:
        from lipsynckit.vad import check_vad

        check_vad(v)  # before any model loads
        return v

    @field_validator("detector_options", mode="before")
    @classmethod
    def _parse_detector_options(cls, v: Any) -> Any:
        if isinstance(v, str):  # the command line's JSON text
            try:
                v = json.loads(v) if v.strip() else {}
            except json.JSONDecodeError as exc:
                v = exc
            if not isinstance(v, dict):
                raise LipSyncError(
                    "detector_options (--detector-options) is not a JSON object"
                    + (f": {v.msg}" if isinstance(v, json.JSONDecodeError) else ""),
                    stage="options",
                    remedy="e.g. --detector-options '{\"conf\": 0.8}' (`lipsynckit detectors` lists each one's)",
                )
        return v

    @model_validator(mode="after")
    def _detector_takes_its_options(self) -> SyncOptions:
        """A named detector's options are checked here, before any model loads (one line on a bad one);
        with ``auto`` they are checked against the detector chosen."""
        if self.detector_options and self.detector != "auto":
            from lipsynckit.registry import face_detector_plugins

            entry = face_detector_plugins().get(self.detector)
            if entry is not None and entry.plugin is not None:
                entry.plugin.parse_options(self.detector_options)
        return self

    @field_validator("face_box", mode="before")
    @classmethod
    def _parse_box(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(float(x) for x in v.replace(" ", "").split(","))
        return v


#: Output suffixes and what each holds (no suffix, or an existing folder: PNG frames + audio.wav).
OUTPUT_SUFFIXES = {
    ".mp4": "H.264 + AAC",
    ".mov": "H.264 + AAC (QuickTime)",
    ".mkv": "lossless FFV1 + float PCM",
    ".webm": "VP9 + Opus",
}
_SUFFIX_MODE = {".mp4": "mp4", ".mov": "mp4", ".mkv": "ffv1", ".webm": "webm"}


def output_mode_for(path: Path, requested: str) -> str:
    """The sink mode the output's suffix asks for; ``ValueError`` for an unknown suffix or a mismatch."""
    suffix = path.suffix.lower()
    if suffix == "" or path.is_dir():
        mode = "png"
    elif suffix in _SUFFIX_MODE:
        mode = _SUFFIX_MODE[suffix]
    else:
        kinds = "; ".join(f"{k} ({v})" for k, v in OUTPUT_SUFFIXES.items())
        raise ValueError(f"cannot write a {suffix} file; the output suffix picks the container: {kinds}")
    if requested in ("auto", mode) or (requested == "ffv1" and mode == "png"):  # PNG frames are lossless
        return mode
    if requested == "ffv1":
        raise ValueError(f"lossless output is written as .mkv or a PNG folder, not {suffix}")
    raise ValueError(f"output mode {requested!r} does not fit the suffix {suffix}")
