"""Audio -> one mouth opening per video frame, from energy, voice activity and spectral shape.

Everything is measured relative to the clip itself (noise floor, speech peak), so the result does not
depend on the recording level. Works at any sample rate: band edges are in Hz and capped at Nyquist.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import distance_transform_edt

from lipsynckit.viseme.options import VisemeOptions

#: feature columns returned by :func:`frame_features`
COLUMNS = ("opening", "width", "voice", "level")
_SILENT_DB = -120.0
_BLOCK = 2048  # analysis frames per FFT block (bounded memory on long audio)


def _band(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (freqs >= lo) & (freqs < hi)


def analyse(x: np.ndarray, sample_rate: int, opts: VisemeOptions) -> dict[str, np.ndarray]:
    """Short-time measures on a regular grid: frame ``k`` is centred at ``k * hop`` samples."""
    hop = max(1, int(round(sample_rate * opts.hop_s)))
    win = max(hop, int(round(sample_rate * opts.window_s)))
    nfft = 1 << (win - 1).bit_length()
    n = int(x.shape[0])
    k_total = n // hop + 1
    half = win // 2
    xp = np.zeros(half + k_total * hop + win, dtype=np.float32)
    xp[half : half + n] = x
    frames = np.lib.stride_tricks.sliding_window_view(xp, win)[::hop][:k_total]
    window = np.hanning(win).astype(np.float32)
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    nyq = sample_rate / 2.0
    low = _band(freqs, 80.0, 300.0)
    mid = _band(freqs, 300.0, 3000.0)
    high = _band(freqs, min(4000.0, 0.8 * nyq), min(8000.0, nyq + 1.0))
    speech = _band(freqs, 100.0, min(4000.0, nyq + 1.0))
    ana = _band(freqs, 100.0, min(6000.0, nyq + 1.0))
    out = {name: np.empty(k_total, dtype=np.float64) for name in ("db", "flat", "speech", "mid", "centroid")}
    tiny = 1e-20
    for a in range(0, k_total, _BLOCK):
        fr = np.asarray(frames[a : a + _BLOCK], dtype=np.float32)
        energy = np.mean(fr.astype(np.float64) ** 2, axis=1)
        out["db"][a : a + len(fr)] = np.maximum(10.0 * np.log10(energy + 1e-30), _SILENT_DB)
        p = np.abs(np.fft.rfft(fr * window, nfft, axis=1)).astype(np.float64) ** 2
        total = p.sum(axis=1) + tiny
        e_low, e_mid, e_high = p[:, low].sum(1), p[:, mid].sum(1), p[:, high].sum(1)
        pa = p[:, ana] + tiny
        out["flat"][a : a + len(fr)] = np.exp(np.mean(np.log(pa), axis=1)) / np.mean(pa, axis=1)
        out["speech"][a : a + len(fr)] = p[:, speech].sum(1) / total
        out["mid"][a : a + len(fr)] = e_mid / (e_low + e_mid + e_high + tiny)
        out["centroid"][a : a + len(fr)] = (pa * freqs[ana]).sum(1) / pa.sum(1)
    out["hop_s"] = np.array(hop / float(sample_rate))
    return out


def _fill_runs(mask: np.ndarray, value: bool, max_len: int, interior_only: bool) -> np.ndarray:
    """Set runs of ``value`` no longer than ``max_len`` to ``not value`` (bridging gaps, dropping blips)."""
    if max_len <= 0 or mask.size == 0:
        return mask
    m = mask.copy()
    edges = np.flatnonzero(np.diff(np.r_[False, m == value, False].astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start > max_len:
            continue
        if interior_only and (start == 0 or stop == m.size):
            continue
        m[start:stop] = not value
    return m


def voice_activity(ana: dict[str, np.ndarray], opts: VisemeOptions) -> tuple[np.ndarray, np.ndarray]:
    """Voice mask per analysis frame and the relative loudness in [0, 1] (0 at the voice threshold)."""
    db = ana["db"]
    valid = db > -100.0
    if not valid.any():
        return np.zeros(db.shape, dtype=bool), np.zeros(db.shape)
    peak = float(np.percentile(db[valid], 98.0))
    floor = min(float(np.percentile(db[valid], opts.noise_percentile)), peak - opts.noise_span_db)
    thr = max(floor + opts.vad_threshold_db, opts.vad_abs_min_db)
    energy_ok = db > thr
    spectral_ok = (ana["flat"] < opts.vad_max_flatness) | (ana["speech"] > opts.vad_min_speech_ratio)
    vad = energy_ok & spectral_ok
    hop_s = float(ana["hop_s"])
    vad = _fill_runs(vad, False, int(round(opts.vad_min_gap_s / hop_s)), interior_only=True)
    vad = _fill_runs(vad, True, int(round(opts.vad_min_speech_s / hop_s)), interior_only=False)
    level = np.clip((db - thr) / max(peak - thr, 6.0), 0.0, 1.0)
    return vad, level


def _attack_release(target: np.ndarray, hop_s: float, attack_s: float, release_s: float) -> np.ndarray:
    """One-pole follower that opens with ``attack_s`` and closes with ``release_s``."""
    up = 1.0 - math.exp(-hop_s / attack_s) if attack_s > 0 else 1.0
    down = 1.0 - math.exp(-hop_s / release_s) if release_s > 0 else 1.0
    out = np.empty_like(target)
    y = 0.0
    for i, t in enumerate(target.tolist()):
        y += (up if t > y else down) * (t - y)
        out[i] = y
    return out


def _window_means(values: np.ndarray, centres_s: np.ndarray, half_s: float, hop_s: float) -> np.ndarray:
    """Mean of ``values`` (on the analysis grid) over ``[c - half, c + half]`` for each centre."""
    k = values.shape[0]
    lo = np.clip(np.ceil((centres_s - half_s) / hop_s - 1e-9).astype(np.int64), 0, k - 1)
    hi = np.clip(np.floor((centres_s + half_s) / hop_s + 1e-9).astype(np.int64), 0, k - 1)
    hi = np.maximum(hi, lo)
    csum = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    count = (hi - lo + 1).astype(np.float64)
    return (csum[hi + 1] - csum[lo]) / count.reshape((-1,) + (1,) * (values.ndim - 1))


def num_output_frames(duration_s: float, fps: float) -> int:
    """Frames of output video for audio of this length: the video lasts as long as the audio."""
    return max(0, int(round(duration_s * fps)))


def frame_features(x: np.ndarray, sample_rate: int, fps: float, opts: VisemeOptions) -> np.ndarray:
    """``(n_out, 4)`` float32: opening in [0, 1] (exactly 0 without voice), width in [-1, 1], voice, level."""
    n_out = num_output_frames(x.shape[0] / float(sample_rate), fps)
    feats = np.zeros((n_out, len(COLUMNS)), dtype=np.float32)
    if n_out == 0 or x.shape[0] == 0:
        return feats
    ana = analyse(np.asarray(x, dtype=np.float32), sample_rate, opts)
    hop_s = float(ana["hop_s"])
    vad, level = voice_activity(ana, opts)
    # open vowels put their energy in 300-3000 Hz (high F1); nasals/closures sit below 300 Hz and
    # fricatives above 4 kHz: both keep the lips nearly closed
    openness = np.clip((ana["mid"] - 0.2) / 0.5, 0.0, 1.0)
    shape = opts.closed_shape + (1.0 - opts.closed_shape) * openness
    target = np.clip(opts.gain * level**opts.level_gamma * shape, 0.0, 1.0) * vad
    smooth = _attack_release(target, hop_s, opts.attack_s, opts.release_s)
    ramp = max(1.0, opts.gate_ramp_s / hop_s)
    padded = np.r_[False, vad, False]
    gate = np.minimum(distance_transform_edt(padded)[1:-1] / ramp, 1.0) * vad  # 0 exactly off-voice
    opening = smooth * gate
    # high centroid (i, e, s) spreads the lips, low centroid (u, o) rounds them
    # (relative to this speaker's median voiced centroid, so voices of any pitch use the full range)
    log_c = np.log(np.maximum(ana["centroid"], 1.0))
    ref = float(np.median(log_c[vad])) if vad.any() else 0.0
    spread = np.clip((log_c - ref) / math.log(1.8), -1.0, 1.0) * vad
    spread = _attack_release(spread + 1.0, hop_s, opts.attack_s, opts.attack_s) - 1.0
    spread = spread * gate
    grid = np.stack([opening, spread, vad.astype(np.float64), level * vad], axis=1)
    centres = (np.arange(n_out) + 0.5) / fps + opts.lead_s
    per_frame = _window_means(grid, centres, max(0.5 / fps, hop_s / 2.0), hop_s)
    per_frame[:, 0] = np.where(per_frame[:, 0] < opts.min_opening, 0.0, np.clip(per_frame[:, 0], 0.0, 1.0))
    per_frame[per_frame[:, 0] == 0.0, 1] = 0.0
    feats[:] = per_frame
    return feats
