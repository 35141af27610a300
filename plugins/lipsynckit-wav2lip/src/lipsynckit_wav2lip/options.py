"""Wav2Lip options. Defaults reproduce the official ``inference.py`` (fp32, hard paste, pads 0/10/0/0)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Wav2LipOptions(BaseModel):
    """What a user may change about Wav2Lip inference; everything else follows the official code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pads: tuple[int, int, int, int] = Field(
        default=(0, 10, 0, 0),
        description="pixels added to the face box: top, bottom, left, right (official --pads)",
    )
    smooth: bool = Field(
        default=True, description="official 5-frame box smoothing (off = official --nosmooth)"
    )
    smooth_window: int = Field(default=5, ge=1, description="frames in the smoothing window (official T = 5)")
    paste: Literal["official", "feathered"] = Field(
        default="official",
        description="official = hard paste of the whole resized box (as inference.py); "
        "feathered = lipsynckit's soft-edged blend (deviates from official output)",
    )
    feather: float = Field(
        default=0.15, ge=0.0, le=0.5, description="feather width (fraction of the box) for paste=feathered"
    )
    channels_last: bool = Field(
        default=False, description="NHWC memory format for the convolutions (GPU speed)"
    )
    compile: bool = Field(
        default=False, description="torch.compile the generator (first batch is slow; GPU speed)"
    )
    # ONNX runtime (lipsynckit_wav2lip.onnx_runtime): "torch" stays the default because only it is the
    # golden-exact official forward; "onnx" matches it within the goldens' tolerance (docs/benchmarks.md)
    runtime: Literal["torch", "onnx"] = Field(
        default="torch",
        description="generator runtime: torch, or onnx (an export made once per checkpoint, run by "
        "OpenVINO on cpu and ONNX Runtime on cuda; the one that runs int8)",
    )
    onnx_threads: int | None = Field(
        default=None,
        ge=1,
        description="runtime=onnx: the engine's threads in this process (default: torch's per-process "
        "count, which follows OMP_NUM_THREADS)",
    )
    tensorrt: bool = Field(
        default=False, description="runtime=onnx on cuda: put ONNX Runtime's TensorRT provider first"
    )

    @field_validator("pads", mode="before")
    @classmethod
    def _parse_pads(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(int(x) for x in v.replace(",", " ").split())
        return v
