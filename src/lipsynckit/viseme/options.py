"""Options of the built-in ``viseme`` model (pydantic, so they validate and round-trip)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class VisemeOptions(BaseModel):
    """Tuning of the weight-free mouth animator.

    The defaults give a natural, moderate articulation for read speech at any recording level:
    loudness is measured relative to the clip's own noise floor and speech peak, so the same
    options suit a quiet phone recording and a loud studio track.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- audio -> opening -------------------------------------------------------------------
    gain: float = Field(
        default=1.0, ge=0.0, le=4.0, description="scales the mouth opening before clipping to [0, 1]"
    )
    level_gamma: float = Field(
        default=0.8,
        gt=0.0,
        le=4.0,
        description="exponent on the relative loudness (< 1 opens more on quiet syllables)",
    )
    attack_s: float = Field(default=0.03, ge=0.0, le=1.0, description="time constant of opening (s)")
    release_s: float = Field(default=0.07, ge=0.0, le=1.0, description="time constant of closing (s)")
    gate_ramp_s: float = Field(
        default=0.04,
        ge=0.0,
        le=0.5,
        description="the opening ramps to exactly 0 over this time at voice on/offsets",
    )
    min_opening: float = Field(
        default=0.02, ge=0.0, lt=1.0, description="openings below this are snapped to 0 (closed)"
    )
    lead_s: float = Field(
        default=0.0,
        ge=-0.2,
        le=0.2,
        description="the mouth shows the sound this many seconds early (anticipation)",
    )
    window_s: float = Field(default=0.032, gt=0.005, le=0.2, description="analysis window (s)")
    hop_s: float = Field(default=0.01, gt=0.001, le=0.05, description="analysis hop (s)")
    noise_percentile: float = Field(
        default=10.0, ge=0.0, le=50.0, description="the noise floor is this percentile of frame energies (dB)"
    )
    noise_span_db: float = Field(
        default=30.0,
        gt=0.0,
        le=90.0,
        description="the noise floor is at most this far below the speech peak (dB)",
    )
    vad_threshold_db: float = Field(
        default=9.0, ge=0.0, le=60.0, description="voice needs this much energy above the floor"
    )
    vad_abs_min_db: float = Field(
        default=-70.0, le=0.0, description="voice needs at least this energy (dBFS)"
    )
    vad_max_flatness: float = Field(
        default=0.45, gt=0.0, le=1.0, description="spectral flatness above this (noise-like) is not voice ..."
    )
    vad_min_speech_ratio: float = Field(
        default=0.6, ge=0.0, le=1.0, description="... unless this share of the energy lies in the speech band"
    )
    vad_min_gap_s: float = Field(
        default=0.08, ge=0.0, le=1.0, description="shorter pauses are bridged (mouth stays open)"
    )
    vad_min_speech_s: float = Field(
        default=0.05, ge=0.0, le=1.0, description="shorter voice bursts are ignored"
    )
    closed_shape: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="relative opening of nasal/closed sounds (energy below 300 Hz)",
    )

    # --- opening -> lower-face warp ---------------------------------------------------------
    max_jaw_drop: float = Field(
        default=0.085,
        gt=0.0,
        le=0.25,
        description="jaw and lower-lip drop at opening 1, as a fraction of face height",
    )
    upper_lip_lift: float = Field(
        default=0.2, ge=0.0, le=1.0, description="upper-lip lift as a fraction of the jaw drop"
    )
    width_gain: float = Field(
        default=0.1, ge=0.0, le=0.5, description="lip spread/rounding, fraction of mouth half-width"
    )
    cavity_shade: float = Field(
        default=0.15,
        ge=0.0,
        le=1.0,
        description="brightness kept inside the opened lips (0 black, 1 no darkening)",
    )
    teeth: float = Field(
        default=0.6, ge=0.0, le=1.0, description="opacity of the hint of upper teeth (0 disables)"
    )
    region_scale: float = Field(
        default=0.9, gt=0.3, le=2.0, description="side of the warped square, in face heights"
    )
    edge_falloff: float = Field(
        default=0.12,
        gt=0.0,
        le=0.5,
        description="the warp fades to zero over this fraction of the region side",
    )
    feather: float = Field(
        default=0.15, gt=0.0, le=0.5, description="feathered paste-back width, fraction of region side"
    )
    field_max_side: int = Field(
        default=320,
        ge=32,
        le=4096,
        description="the warp field is computed at most this many pixels across, then resized",
    )
    mouth_y: float = Field(
        default=0.78,
        gt=0.3,
        lt=1.2,
        description="mouth centre in the face box, fraction of its height (no landmarks)",
    )
    mouth_half_width: float = Field(
        default=0.19,
        gt=0.05,
        lt=0.5,
        description="mouth half-width, fraction of the box width (no landmarks)",
    )
    follow_source: bool = Field(
        default=True,
        description="with landmarks: fit the lip line in the image and close the source's own open mouth "
        "before drawing the new one (video of a talking face)",
    )
    close_ramp: float = Field(
        default=0.1,
        gt=0.0,
        le=1.0,
        description="the source mouth is closed fully from this opening on (less below: no pop at onsets)",
    )
    dense_landmarks: bool = Field(
        default=True,
        description="with the [landmarks] extra: the 68-point lip contour (dlib, non-commercial model) "
        "places the opening between the real lips and measures the source's own opening",
    )
