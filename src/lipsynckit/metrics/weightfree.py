"""Lip-sync metrics that need no network weights, so they always run (tests, CI, ``bench``).

They do not replace LSE-D/LSE-C (which need ``syncnet_v2.model``); they catch the failures a
user sees first, each with a simple, documented signal (details and sources: ``docs/metrics.md``):

* **audio/mouth agreement** - mouth openness measured from the pixels (the first principal component
  of the mouth patches, darker = open) against the log 300-3000 Hz speech energy, both detrended:
  the mean of the level correlation and the frame-to-frame change (onset) correlation, at lag 0 and
  over lags within +-15 frames, with a margin between the best lag and the runner-up peak (after the
  audio-visual energy correlation of Hershey & Movellan, 2000); and how much the mouth still moves
  during silences relative to speech ("closed in silence");
* **identity outside the mouth** - PSNR and SSIM (Wang et al., 2004) of generated vs source frames
  on the pixels outside the mouth boxes;
* **temporal stability** - mean absolute second temporal difference of the mouth region (jitter)
  and the share of its temporal energy above a cut-off (flicker);
* **seam visibility** - intensity step across the paste-box border against the steps just inside it.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.ndimage import gaussian_filter
from scipy.signal import butter, detrend, sosfiltfilt

from lipsynckit.errors import AudioError, VideoError
from lipsynckit.types import AudioClip

log = logging.getLogger(__name__)

__all__ = [
    "AVAgreement",
    "WeightFreeMetrics",
    "WeightFreeOptions",
    "audio_mouth_agreement",
    "mouth_box_from_face",
    "mouth_openness",
    "mouth_patches",
    "speech_band_envelope",
    "speech_envelope",
    "ssim",
    "ssim_map",
    "weightfree_metrics",
]

PSNR_CAP_DB = 100.0  # reported for identical pixels (PSNR would be infinite)


class WeightFreeOptions(BaseModel):
    """Knobs of the weight-free metrics; the defaults are what ``bench`` reports."""

    model_config = ConfigDict(frozen=True)

    patch_size: int = Field(default=32, ge=4, description="mouth patches are resampled to this square size")
    max_lag_frames: int = Field(default=15, ge=0, description="lag search range (SyncNet's vshift)")
    speech_band_hz: tuple[float, float] = Field(
        default=(300.0, 3000.0), description="band of the speech energy the mouth is compared with"
    )
    envelope_floor_db: float = Field(
        default=-40.0, lt=0.0, description="log energy floor below the 95th percentile (silence)"
    )
    silence_db: float = Field(
        default=-20.0,
        le=0.0,
        description="frames this far below the 95th-percentile envelope count as silent",
    )
    silence_vad: Literal["auto", "energy", "silero", "envelope"] = Field(
        default="auto",
        description="where the silences are: the gate's voice-activity detector (auto = silero when "
        "installed), so the metric looks at the pauses the gate finds in noise too; envelope = frames "
        "silence_db under the loud speech (blind in noise: a noisy pause is never that quiet)",
    )
    min_silence_frames: int = Field(
        default=5, ge=1, description="shortest silent stretch used (0.2 s at 25 fps)"
    )
    silence_edge_frames: int = Field(
        default=2, ge=0, description="frames dropped at both ends of a silence (mouth closing/opening)"
    )
    hf_cutoff_hz: float = Field(
        default=8.0, gt=0.0, description="temporal frequency above which energy is flicker"
    )
    ssim_sigma: float = Field(default=1.5, gt=0.0)
    seam_inset: tuple[int, int] = Field(
        default=(2, 5), description="inside band, pixels from the border [a, b)"
    )


class WeightFreeMetrics(BaseModel):
    """One clip's weight-free scores. ``None`` where a score is undefined (see each field)."""

    model_config = ConfigDict(frozen=True)

    num_frames: int
    fps: float
    # audio/mouth agreement
    mouth_motion: float = Field(
        description="mean abs change of the mouth patch per frame, grey levels 0..255"
    )
    av_correlation: float | None = Field(
        description="agreement of mouth openness with the speech energy at lag 0: mean of the level and "
        "the onset Pearson r (None if either signal is constant)"
    )
    av_best_lag_frames: int | None = Field(
        description="lag with the highest agreement; positive = the video lags the audio (SyncNet's AV "
        "offset sign)"
    )
    av_best_correlation: float | None
    av_lag_margin: float | None = Field(
        description="best agreement minus the runner-up peak of the lag curve; small = the lag is ambiguous"
    )
    silence_motion_ratio: float | None = Field(
        description="mouth motion in silent stretches / in speech; low = mouth rests in silence"
    )
    silent_frames: int
    # identity preservation
    identity_psnr: float = Field(description=f"dB outside the mouth boxes; {PSNR_CAP_DB} means identical")
    identity_ssim: float
    # temporal stability
    temporal_jitter: float = Field(description="mean |P[t+1] - 2P[t] + P[t-1]| of the generated mouth patch")
    temporal_jitter_source: float = Field(description="the same on the source frames (the natural baseline)")
    temporal_hf_ratio: float | None = Field(
        description="share of mouth-patch temporal energy above the cut-off"
    )
    # seams
    seam_border_gradient: float
    seam_inside_gradient: float
    seam_ratio: float | None = Field(description="border step / inside steps in the output; ~1 = invisible")
    seam_ratio_source: float | None = Field(description="the same at the same place in the source frames")


# -- small building blocks ----------------------------------------------------------------------


def _grey(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma as float32, frames ``(..., H, W, 3)`` RGB."""
    f = frames.astype(np.float32)
    return np.asarray(0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2], dtype=np.float32)


def _int_boxes(boxes: np.ndarray, n: int, height: int, width: int, what: str) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.shape == (4,):
        b = np.repeat(b[None], n, axis=0)
    if b.shape != (n, 4):
        raise VideoError(f"{what} must be (4,) or ({n}, 4) x1,y1,x2,y2, got {b.shape}", stage="metrics")
    if np.isnan(b).any():
        raise VideoError(f"{what} contain NaN", stage="metrics", remedy="fill frames without a face first")
    out = np.rint(b).astype(np.int64)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    if np.any(out[:, 2] - out[:, 0] < 2) or np.any(out[:, 3] - out[:, 1] < 2):
        raise VideoError(f"{what} smaller than 2 pixels inside the frame", stage="metrics")
    return out


def mouth_box_from_face(face_box: np.ndarray) -> np.ndarray:
    """A mouth box inside a face box ``x1,y1,x2,y2``: the middle 44% of the width, 68-92% of the height.

    Rough, detector-independent proportions for frontal faces, for when no landmarks are at hand.
    """
    x1, y1, x2, y2 = np.asarray(face_box, dtype=np.float64).reshape(-1, 4).T
    w, h = x2 - x1, y2 - y1
    out = np.stack([x1 + 0.28 * w, y1 + 0.68 * h, x1 + 0.72 * w, y1 + 0.92 * h], axis=1)
    return out[0] if np.asarray(face_box).ndim == 1 else out


def speech_envelope(audio: AudioClip, fps: float, num_frames: int) -> np.ndarray:
    """RMS of the mono waveform over each frame's interval ``[t/fps, (t+1)/fps)`` (0 past the end)."""
    x = audio.numpy().astype(np.float64)
    return np.sqrt(_frame_means(x * x, audio.sample_rate, fps, num_frames))


def _frame_means(y: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """Mean of ``y`` over each frame interval ``[t/fps, (t+1)/fps)`` (0 past the end)."""
    c = np.concatenate([[0.0], np.cumsum(y, dtype=np.float64)])
    t = np.arange(num_frames + 1)
    edges = np.clip(np.rint(t * sample_rate / fps).astype(np.int64), 0, len(y))
    counts = np.diff(edges)
    sums = c[edges[1:]] - c[edges[:-1]]
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def speech_band_envelope(
    audio: AudioClip,
    fps: float,
    num_frames: int,
    band_hz: tuple[float, float] = (300.0, 3000.0),
    floor_db: float = -40.0,
) -> np.ndarray:
    """Log energy (dB re. the 95th percentile, floored at ``floor_db``) of the speech band per frame.

    The band (default 300-3000 Hz: the formant region, where the energy follows the opening of the
    mouth rather than voicing or fricative noise) is cut with a zero-phase Butterworth filter, so the
    envelope carries no delay of its own; the log compresses loud vowels against soft consonants.
    """
    x = audio.numpy().astype(np.float64)
    sr = audio.sample_rate
    lo, hi = band_hz
    hi = min(hi, 0.45 * sr)
    if len(x) > 30 and 0 < lo < hi:
        sos = butter(4, [lo, hi], btype="band", fs=sr, output="sos")
        pad = min(len(x) - 1, 3 * (2 * len(sos) + 1))
        x = sosfiltfilt(sos, x, padlen=pad)
    energy = _frame_means(x * x, sr, fps, num_frames)
    ref = float(np.percentile(energy, 95)) if num_frames else 0.0
    if ref <= 0.0:
        return np.full(num_frames, floor_db)
    return np.asarray(10.0 * np.log10(np.maximum(energy, ref * 10 ** (floor_db / 10.0)) / ref))


def mouth_patches(frames: np.ndarray, mouth_boxes: np.ndarray, size: int = 32) -> np.ndarray:
    """``(N, size, size)`` float64 luma of each frame's mouth box, area-resampled (RGB uint8 frames)."""
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise VideoError(f"frames must be (N, H, W, 3), got {f.shape}", stage="metrics")
    n, h, w, _ = f.shape
    boxes = _int_boxes(mouth_boxes, n, h, w, "mouth boxes")
    out = np.empty((n, size, size), dtype=np.float64)
    for i in range(n):
        out[i] = _patch(_grey(f[i]), boxes[i], size)
    return out


def _patch(grey: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.asarray(cv2.resize(grey[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA))


def mouth_openness(patches: np.ndarray, rest: np.ndarray | None = None) -> np.ndarray:
    """How open the mouth is per frame, from the pixels alone: the patches' first principal component.

    Over a clip most of the mouth patch's variance comes from the lips parting and closing. With
    ``rest`` (the source's mouth patches, one or per frame) the sign is fixed so that the score rises
    with the distance from the source mouth: an opening counts whether its interior is drawn darker
    or brighter than the skin (bright teeth on a dim, bearded face). Without it, or where the patches
    never leave the source, a darker patch (the cavity) scores higher. Units are arbitrary (only
    correlations use it); all zeros for a still mouth.
    """
    p = np.asarray(patches, dtype=np.float64)
    n = len(p)
    x = p.reshape(n, -1)
    x = x - x.mean(axis=0, keepdims=True)
    if n < 2 or not np.any(x):
        return np.zeros(n)
    _, vecs = np.linalg.eigh(x.T @ x)  # covariance eigenvectors, ascending: bounded cost for long clips
    score = x @ vecs[:, -1]
    if rest is not None:
        r = np.asarray(rest, dtype=np.float64).reshape(-1, x.shape[1])
        away = np.abs(p.reshape(n, -1) - r).mean(axis=1)
        away = away - away.mean()
        if np.any(away):
            return np.asarray(score if float(np.dot(score, away)) >= 0 else -score)
    brightness = x.mean(axis=1)
    if float(np.dot(score, brightness)) > 0:
        score = -score
    return np.asarray(score)


class AVAgreement(BaseModel):
    """Agreement of a mouth-openness signal with a speech envelope over a range of lags."""

    model_config = ConfigDict(frozen=True)

    scores: dict[int, float] = Field(description="lag -> mean of level and onset Pearson r")
    best_lag: int | None
    best_score: float | None
    margin: float | None = Field(description="best score minus the highest other local maximum")

    @property
    def at_zero(self) -> float | None:
        return self.scores.get(0)


def _runner_up_peak(scores: dict[int, float], best: int) -> float | None:
    """Highest local maximum of the lag curve other than the best one (ends count as maxima)."""
    lags = sorted(scores)
    peaks = []
    for i, k in enumerate(lags):
        left = scores[lags[i - 1]] if i > 0 else -math.inf
        right = scores[lags[i + 1]] if i + 1 < len(lags) else -math.inf
        if scores[k] >= left and scores[k] >= right and abs(k - best) > 1:
            peaks.append(scores[k])
    return max(peaks) if peaks else None


def audio_mouth_agreement(openness: np.ndarray, envelope: np.ndarray, max_lag: int = 15) -> AVAgreement:
    """Score ``openness[t]`` against ``envelope[t - lag]`` for every lag in ``[-max_lag, max_lag]``.

    Both signals are linearly detrended (slow drifts of lighting, head pose or recording level are
    not speech). The score is the mean of two Pearson correlations over the overlap: of the levels
    (open while loud) and of the frame-to-frame changes (opening at onsets, closing at offsets).
    The change term sharpens the peak: a mouth that follows the loudness a few frames late still
    correlates in level but not in its onsets.
    """
    o = np.asarray(openness, dtype=np.float64)
    e = np.asarray(envelope, dtype=np.float64)
    if len(o) != len(e):
        raise ValueError(f"openness ({len(o)}) and envelope ({len(e)}) must have one length")
    n = len(o)
    lag_range = min(max_lag, n - 10) if n > 10 else 0
    if n < 3:
        return AVAgreement(scores={}, best_lag=None, best_score=None, margin=None)
    o, e = detrend(o), detrend(e)
    level = _lagged_correlations(o, e, lag_range)
    onset = _lagged_correlations(np.gradient(o), np.gradient(e), lag_range)
    scores: dict[int, float] = {}
    for k, a in level.items():
        b = onset.get(k)
        if a is not None and b is not None:
            scores[k] = 0.5 * (a + b)
    if not scores:
        return AVAgreement(scores={}, best_lag=None, best_score=None, margin=None)
    best = max(scores, key=lambda k: (scores[k], -abs(k)))
    second = _runner_up_peak(scores, best)
    return AVAgreement(
        scores=scores,
        best_lag=best,
        best_score=scores[best],
        margin=None if second is None else scores[best] - second,
    )


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3:
        return None
    sa, sb = float(np.std(a)), float(np.std(b))
    if sa < 1e-9 or sb < 1e-9:
        return None
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def _lagged_correlations(video: np.ndarray, audio: np.ndarray, max_lag: int) -> dict[int, float | None]:
    """r(video[t], audio[t - lag]) over the overlap, for lag in [-max_lag, max_lag]."""
    n = len(video)
    out: dict[int, float | None] = {}
    for lag in range(-max_lag, max_lag + 1):
        lo, hi = max(0, lag), min(n, n + lag)
        if hi - lo < 10:
            out[lag] = None
            continue
        out[lag] = _pearson(video[lo:hi], audio[lo - lag : hi - lag])
    return out


def _vad_frames(audio: AudioClip, fps: float, n: int, vad: str) -> np.ndarray:
    """Per frame: does its interval meet a speech span of the voice-activity detector (the gate's)."""
    from lipsynckit.vad import speech_spans

    speech = np.zeros(n, dtype=bool)
    for a, b in speech_spans(audio, vad, hangover_s=0.0):  # type: ignore[arg-type]
        speech[max(0, int(np.floor(a * fps))) : min(n, int(np.ceil(b * fps)))] = True
    return speech


def _silent_mask(quiet: np.ndarray, options: WeightFreeOptions) -> np.ndarray:
    """Frames inside silent stretches (``quiet``) long enough to matter, minus their edges."""
    quiet = np.asarray(quiet, dtype=bool)
    mask = np.zeros_like(quiet)
    i = 0
    while i < len(quiet):
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < len(quiet) and quiet[j]:
            j += 1
        if j - i >= options.min_silence_frames:
            e = options.silence_edge_frames
            a, b = i + (e if i > 0 else 0), j - (e if j < len(quiet) else 0)
            mask[a:b] = True
        i = j
    return mask


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM (Wang et al. 2004) of two grey images with an 11x11 Gaussian window (sigma 1.5).

    Same constants and filtering as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    use_sample_covariance=False)``; reflect padding at the image borders.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def f(z: np.ndarray) -> np.ndarray:
        return np.asarray(gaussian_filter(z, sigma=sigma, truncate=3.5, mode="reflect"))

    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    mask: np.ndarray | None = None,
    data_range: float = 255.0,
    sigma: float = 1.5,
) -> float:
    """Mean SSIM; without ``mask`` the border half-window is left out, as skimage does."""
    s = ssim_map(a, b, data_range, sigma)
    if mask is None:
        p = int(3.5 * sigma + 0.5)  # window radius: 5 (11x11) at sigma 1.5
        return float(s[p:-p, p:-p].mean())
    return float(s[mask].mean()) if mask.any() else float("nan")


def _ssim_outside(
    gen_grey: np.ndarray, src_grey: np.ndarray, changed: np.ndarray, mouth: np.ndarray, sigma: float
) -> float:
    """Mean SSIM over pixels whose window neither reaches into the mouth box nor past the frame edge.

    Only the bounding box of changed pixels (grown by two window radii) is filtered: elsewhere both
    images are identical over the whole window and SSIM is exactly 1. This keeps the cost
    proportional to the pasted region, not to the frame.
    """
    h, w = gen_grey.shape
    r = int(3.5 * sigma + 0.5)  # Gaussian window radius (11x11 at sigma 1.5)
    x1, y1, x2, y2 = (int(v) for v in mouth)
    far = np.zeros((h, w), dtype=bool)
    far[r : h - r, r : w - r] = True
    far[max(0, y1 - r) : y2 + r, max(0, x1 - r) : x2 + r] = False
    total = int(far.sum())
    if total == 0:
        return float("nan")
    ys, xs = np.nonzero(changed)
    if len(ys) == 0:
        return 1.0
    a0, a1 = max(0, int(ys.min()) - 2 * r), min(h, int(ys.max()) + 1 + 2 * r)
    b0, b1 = max(0, int(xs.min()) - 2 * r), min(w, int(xs.max()) + 1 + 2 * r)
    s = ssim_map(gen_grey[a0:a1, b0:b1], src_grey[a0:a1, b0:b1], sigma=sigma)
    sub = far[a0:a1, b0:b1]
    inside = int(sub.sum())
    return (float(s[sub].sum()) + float(total - inside)) / total


def _seam_steps(grey: np.ndarray, box: np.ndarray, inset: tuple[int, int]) -> tuple[list[float], list[float]]:
    """Absolute steps across each border side that lies inside the frame, and steps just inside."""
    h, w = grey.shape
    x1, y1, x2, y2 = (int(v) for v in box)
    border: list[float] = []
    inside: list[float] = []
    rows, cols = slice(y1, y2), slice(x1, x2)
    band = range(*inset) if min(x2 - x1, y2 - y1) > 2 * inset[1] else range(0)  # tiny boxes: border only
    if x1 >= 1:
        border.append(float(np.mean(np.abs(grey[rows, x1] - grey[rows, x1 - 1]))))
        inside += [float(np.mean(np.abs(grey[rows, x1 + d] - grey[rows, x1 + d - 1]))) for d in band]
    if x2 < w:
        border.append(float(np.mean(np.abs(grey[rows, x2] - grey[rows, x2 - 1]))))
        inside += [float(np.mean(np.abs(grey[rows, x2 - d] - grey[rows, x2 - d - 1]))) for d in band]
    if y1 >= 1:
        border.append(float(np.mean(np.abs(grey[y1, cols] - grey[y1 - 1, cols]))))
        inside += [float(np.mean(np.abs(grey[y1 + d, cols] - grey[y1 + d - 1, cols]))) for d in band]
    if y2 < h:
        border.append(float(np.mean(np.abs(grey[y2, cols] - grey[y2 - 1, cols]))))
        inside += [float(np.mean(np.abs(grey[y2 - d, cols] - grey[y2 - d - 1, cols]))) for d in band]
    return border, inside


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 1e-9 else None


# -- the public entry point ---------------------------------------------------------------------


def weightfree_metrics(
    source_frames: np.ndarray,
    generated_frames: np.ndarray,
    audio: AudioClip,
    fps: float,
    mouth_boxes: np.ndarray,
    paste_boxes: np.ndarray | None = None,
    options: WeightFreeOptions | None = None,
) -> WeightFreeMetrics:
    """Score a lip-synced clip against its source frames and the driving audio.

    ``source_frames`` is ``(N, H, W, 3)`` or one ``(H, W, 3)`` image (a still); ``generated_frames``
    ``(N, H, W, 3)``, both RGB uint8, frame ``t`` showing time ``t / fps`` of ``audio``.
    ``mouth_boxes`` (``(4,)`` or ``(N, 4)``, x1,y1,x2,y2 pixels) bound the lips; ``paste_boxes`` the
    region the model pasted back (defaults to the mouth boxes) and is where seams are measured.
    """
    o = options or WeightFreeOptions()
    gen = np.asarray(generated_frames)
    src = np.asarray(source_frames)
    if gen.ndim != 4 or gen.shape[-1] != 3:
        raise VideoError(f"generated frames must be (N, H, W, 3), got {gen.shape}", stage="metrics")
    n, h, w, _ = gen.shape
    if src.ndim == 3:
        src = src[None]
    if src.shape[1:] != gen.shape[1:] or len(src) not in (1, n):
        raise VideoError(
            f"source frames {src.shape} do not match generated frames {gen.shape}",
            stage="metrics",
            remedy="pass the source frames the output was made from (same size, same count, or one still)",
        )
    if n < 3:
        raise VideoError(f"need at least 3 frames, got {n}", stage="metrics")
    if fps <= 0:
        raise VideoError(f"fps must be positive, got {fps}", stage="metrics")
    if audio.num_samples == 0:
        raise AudioError("empty audio", path=audio.source, stage="metrics", remedy="pass the driving audio")
    mboxes = _int_boxes(mouth_boxes, n, h, w, "mouth boxes")
    pboxes = mboxes if paste_boxes is None else _int_boxes(paste_boxes, n, h, w, "paste boxes")

    size = o.patch_size
    pg = np.empty((n, size, size), dtype=np.float64)  # generated mouth patches
    ps = np.empty((n, size, size), dtype=np.float64)  # source mouth patches
    psnrs, ssims = [], []
    gb: list[float] = []
    gi: list[float] = []
    sb: list[float] = []
    si: list[float] = []
    src_cache: tuple[int, np.ndarray] | None = None
    for i in range(n):  # one frame at a time: memory stays flat with clip length
        j = i if len(src) > 1 else 0
        if src_cache is None or src_cache[0] != j:
            src_cache = (j, _grey(src[j]))
        s_grey = src_cache[1]
        g_grey = _grey(gen[i])
        x1, y1, x2, y2 = mboxes[i]
        pg[i] = _patch(g_grey, mboxes[i], size)
        ps[i] = _patch(s_grey, mboxes[i], size)
        # identity outside the mouth
        outside = np.ones((h, w), dtype=bool)
        outside[y1:y2, x1:x2] = False
        diff = gen[i].astype(np.float64) - src[j].astype(np.float64)
        mse = float(np.mean(diff[outside] ** 2))
        psnrs.append(PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10 * math.log10(255.0**2 / mse)))
        ssims.append(_ssim_outside(g_grey, s_grey, np.any(diff != 0, axis=-1), mboxes[i], o.ssim_sigma))
        # seams
        bd, ins = _seam_steps(g_grey, pboxes[i], o.seam_inset)
        gb += bd
        gi += ins
        bd, ins = _seam_steps(s_grey, pboxes[i], o.seam_inset)
        sb += bd
        si += ins

    # audio/mouth agreement
    motion = np.zeros(n)
    motion[1:] = np.mean(np.abs(np.diff(pg, axis=0)), axis=(1, 2))
    motion[0] = motion[1]
    env = speech_envelope(audio, fps, n)
    band = speech_band_envelope(audio, fps, n, o.speech_band_hz, o.envelope_floor_db)
    agree = audio_mouth_agreement(mouth_openness(pg, ps), band, o.max_lag_frames)
    if o.silence_vad == "envelope":
        quiet = env < float(np.percentile(env, 95)) * 10 ** (o.silence_db / 20.0)
    else:
        quiet = ~_vad_frames(audio, fps, n, o.silence_vad)
    silent = _silent_mask(quiet, o)
    speech = ~quiet
    silence_ratio = None
    if silent.any() and speech.any():
        silence_ratio = _ratio(float(motion[silent].mean()), float(motion[speech].mean()))

    # temporal stability of the generated mouth region
    jitter = float(np.mean(np.abs(pg[2:] - 2 * pg[1:-1] + pg[:-2])))
    jitter_src = float(np.mean(np.abs(ps[2:] - 2 * ps[1:-1] + ps[:-2])))
    hf_ratio = None
    if o.hf_cutoff_hz < fps / 2:
        spec = np.abs(np.fft.rfft(pg - pg.mean(axis=0, keepdims=True), axis=0)) ** 2
        freqs = np.fft.rfftfreq(n, d=1.0 / fps)
        total = float(spec[1:].sum())
        hf_ratio = float(spec[freqs > o.hf_cutoff_hz].sum()) / total if total > 1e-9 else None

    border_g = float(np.mean(gb)) if gb else 0.0
    inside_g = float(np.mean(gi)) if gi else 0.0

    return WeightFreeMetrics(
        num_frames=n,
        fps=float(fps),
        mouth_motion=float(motion.mean()),
        av_correlation=agree.at_zero,
        av_best_lag_frames=agree.best_lag,
        av_best_correlation=agree.best_score,
        av_lag_margin=agree.margin,
        silence_motion_ratio=silence_ratio,
        silent_frames=int(silent.sum()),
        identity_psnr=float(np.mean(psnrs)),
        identity_ssim=float(np.mean(ssims)),
        temporal_jitter=jitter,
        temporal_jitter_source=jitter_src,
        temporal_hf_ratio=hf_ratio,
        seam_border_gradient=border_g,
        seam_inside_gradient=inside_g,
        seam_ratio=_ratio(border_g, inside_g) if gb else None,
        seam_ratio_source=_ratio(float(np.mean(sb)), float(np.mean(si))) if sb and si else None,
    )
