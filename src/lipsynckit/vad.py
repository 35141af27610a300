"""Voice activity: where in a clip somebody speaks, as time spans in seconds.

Two detectors behind one function, :func:`speech_spans` (``auto``, the default, is Silero when it is
installed and the energy detector otherwise):

* ``energy`` (no dependency): band energy (100–4000 Hz) per 20 ms frame against a noise floor
  that adapts along the clip (minimum statistics over a few seconds), entered above a high threshold
  and left below a lower one (hysteresis); blips shorter than ``min_speech_s`` are dropped, gaps
  shorter than ``min_silence_s`` are bridged, and each span is held ``hangover_s`` past its end.
* ``silero``: the Silero VAD network (MIT) from the ``silero-vad`` wheel, which carries its model; run
  through onnxruntime (its ONNX file, no TorchScript), offline. ``pip install "lipsynckit[vad]"``.
  Its thresholds sit above the clip's own noise level (babble or typing behind the voice keeps its
  probability at 0.3-0.7 through a pause, the voice reads 0.95+), and a hop is speech only where the
  band energy also stands 3 dB over the energy detector's noise floor (no breath in room tone).

Both return the same kind of spans, post-processed by the same duration rules, so the gate that uses
them (:mod:`lipsynckit.gate`) does not care which one ran.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any, Literal

import numpy as np
from scipy.ndimage import median_filter, minimum_filter1d, uniform_filter1d

from lipsynckit.errors import LipSyncError
from lipsynckit.types import AudioClip

log = logging.getLogger(__name__)

VadName = Literal["auto", "energy", "silero"]
Span = tuple[float, float]

_HOP_S = 0.010
_WIN_S = 0.020
_SILENT_DB = -120.0
# Silero's adaptive thresholds (tuned on crowded-room and keyboard noise with LibriVox pairs 0-2, 1-4,
# 3-0; held out: pairs 2-3, 4-1 and city, office, forest noise: benchmarks/vad_noise.py)
NOISE_PERCENTILE = 20.0
NOISE_MARGIN = 0.35
MAX_ON = 0.9
# ... and Silero's speech must also stand this far over the energy detector's noise floor (dB)
SILERO_ON_DB = 3.0
SILERO_OFF_DB = 1.0


def silero_available() -> bool:
    return (
        importlib.util.find_spec("silero_vad") is not None
        and importlib.util.find_spec("onnxruntime") is not None
    )


def resolve_vad(name: str) -> str:
    """The detector that runs for ``name``: ``auto`` is Silero when installed (at 10 dB SNR of real
    noise it leaves 0.92 of the pause frames at rest where the energy detector leaves 0.64:
    docs/benchmarks.md), else the dependency-free energy detector."""
    if name == "auto":
        return "silero" if silero_available() else "energy"
    return name


def check_vad(name: str) -> None:
    """Fail early (before any model loads) when the chosen detector cannot run here."""
    if name == "silero" and not silero_available():
        raise LipSyncError(
            "vad 'silero' needs the silero-vad and onnxruntime packages",
            stage="vad",
            remedy='pip install "lipsynckit[vad]", or use the built-in vad "energy"',
        )


def band_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Speech-band (100–4000 Hz) energy in dB per 10 ms hop, 20 ms Hann windows centred on ``k * hop``."""
    hop = max(1, int(round(sample_rate * _HOP_S)))
    win = max(hop, int(round(sample_rate * _WIN_S)))
    nfft = 1 << (win - 1).bit_length()
    n = int(x.shape[0])
    k_total = n // hop + 1
    half = win // 2
    # mirrored at the ends: a clip cut out of speech is as loud at its first hop as just after it
    xp = np.pad(
        np.asarray(x, np.float32), (half, k_total * hop + win - n), mode="reflect" if n > 1 else "constant"
    )
    frames = np.lib.stride_tricks.sliding_window_view(xp, win)[::hop][:k_total]
    window = np.hanning(win).astype(np.float32)
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    band = (freqs >= 100.0) & (freqs < min(4000.0, sample_rate / 2.0 + 1.0))
    out = np.empty(k_total, dtype=np.float64)
    for a in range(0, k_total, 4096):  # bounded memory on long audio
        fr = np.asarray(frames[a : a + 4096], dtype=np.float32)
        p = np.abs(np.fft.rfft(fr * window, nfft, axis=1)).astype(np.float64) ** 2
        e = p[:, band].sum(axis=1) / (win * win)
        out[a : a + len(fr)] = np.maximum(10.0 * np.log10(e + 1e-30), _SILENT_DB)
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def energy_activity(
    x: np.ndarray,
    sample_rate: int,
    on_db: float = 9.0,
    off_db: float = 5.0,
    floor_window_s: float = 3.0,
    range_db: float = 35.0,
) -> np.ndarray:
    """Speech flag per 10 ms hop. The floor is the minimum of the 50 ms-smoothed band level over
    ``floor_window_s`` around each hop (a pause anywhere near sets it); the thresholds sit ``on_db`` /
    ``off_db`` above it, and never lower than ``range_db`` under the clip's loud speech level."""
    db = band_db(x, sample_rate)
    if db.size == 0:
        return np.zeros(0, bool)
    # smoothed over 50 ms: the floor follows the noise, not its ripple
    smooth = uniform_filter1d(db, size=5, mode="nearest")
    win = max(3, int(round(floor_window_s / _HOP_S)))
    floor = minimum_filter1d(smooth, size=win, mode="nearest")
    floor = uniform_filter1d(floor, size=max(3, win // 4), mode="nearest")
    loud = float(np.percentile(db, 95))
    base = np.maximum(floor, loud - range_db)
    on = base + on_db
    off = base + off_db
    active = np.zeros(db.size, bool)
    speaking = False
    for k in range(db.size):  # hysteresis: enter above `on`, leave below `off`
        speaking = db[k] > (off[k] if speaking else on[k])
        active[k] = speaking
    return active


_silero_models = threading.local()


def _silero_model() -> Any:
    """This thread's Silero network, loaded on its first use: loading costs ~40 ms (an onnxruntime
    session) and held the GIL for most of it once per job in a manifest; the network keeps state
    between chunks, so threads do not share one."""
    model = getattr(_silero_models, "model", None)
    if model is None:
        import torch

        threads = torch.get_num_threads()
        try:
            from silero_vad import load_silero_vad  # its import sets torch to one thread for the process
        finally:
            torch.set_num_threads(threads)
        model = load_silero_vad(onnx=True)  # the ONNX file inside the wheel: data only, no code from a file
        _silero_models.model = model
    return model


def _silero_activity(
    x: np.ndarray, sample_rate: int, threshold: float = 0.5, adaptive: bool = True
) -> np.ndarray:
    """Speech flag per 10 ms hop from Silero VAD's per-32 ms-chunk probabilities (16 kHz), hysteresis
    as Silero's own rule (enter above ``threshold``, leave below ``threshold - 0.15``)."""
    check_vad("silero")
    import torch

    model = _silero_model()
    clip = AudioClip(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), sample_rate).resample(16000)
    wav = clip.samples[0]
    chunk = 512
    probs = []
    model.reset_states()
    for a in range(0, int(wav.shape[0]), chunk):
        piece = wav[a : a + chunk]
        if piece.shape[0] < chunk:
            piece = torch.nn.functional.pad(piece, (0, chunk - int(piece.shape[0])))
        probs.append(float(model(piece, 16000).item()))
    p = np.asarray(probs)
    on, off = threshold, threshold - 0.15
    if adaptive and p.size >= 8:
        # babble or typing behind the voice keeps Silero's probability at 0.3-0.7 through a pause,
        # where the voice itself reads 0.95+: the thresholds sit above the clip's own noise level
        # (its 20th-percentile probability), never below Silero's own rule
        noise = float(np.percentile(p, NOISE_PERCENTILE))
        on = float(np.clip(noise + NOISE_MARGIN, threshold, MAX_ON))
        off = on - 0.15
        p = median_filter(p, size=3, mode="nearest")  # one 32 ms chunk is no word
    n_hops = int(len(x) / sample_rate / _HOP_S) + 1
    centres = (np.arange(n_hops) * _HOP_S * 16000 / chunk).astype(int)
    p_hop = p[np.clip(centres, 0, len(p) - 1)] if len(p) else np.zeros(n_hops)
    active = np.zeros(n_hops, bool)
    speaking = False
    for k in range(n_hops):
        speaking = p_hop[k] > (off if speaking else on)
        active[k] = speaking
    return active


def speech_spans(
    clip: AudioClip,
    vad: VadName = "energy",
    *,
    hangover_s: float = 0.1,
    min_speech_s: float = 0.08,
    min_silence_s: float = 0.20,
) -> list[Span]:
    """Speech spans ``[(start_s, end_s), ...]`` of ``clip``, sorted and disjoint, within the clip.

    ``hangover_s`` holds each span open after its last active hop (the mouth closes after the sound
    stops); gaps shorter than ``min_silence_s`` (after the hangover, and at the clip's ends) are
    bridged, and bursts shorter than ``min_speech_s`` are dropped (a click is not speech).
    """
    x = clip.numpy()
    sr = clip.sample_rate
    duration = len(x) / float(sr)
    if len(x) == 0:
        return []
    vad = resolve_vad(vad)  # type: ignore[assignment]
    if vad == "energy":
        active = energy_activity(x, sr)
    elif vad == "silero":
        # a voice that is also heard over the noise floor: Silero alone hears a breath or a click in
        # room tone, and babble behind the voice; the energy test alone hears any loud noise
        voice = _silero_activity(x, sr)
        loud = energy_activity(x, sr, on_db=SILERO_ON_DB, off_db=SILERO_OFF_DB)
        n = min(voice.size, loud.size)
        active = voice[:n] & loud[:n]
    else:
        raise LipSyncError(f"unknown vad {vad!r}", stage="vad", remedy='use "auto", "energy" or "silero"')
    runs = [(a, b) for a, b in _runs(active) if (b - a) * _HOP_S >= min_speech_s]
    spans: list[Span] = []
    for a, b in runs:
        start = max(0.0, a * _HOP_S - _HOP_S / 2)
        end = min(duration, b * _HOP_S - _HOP_S / 2 + hangover_s)
        if spans and start - spans[-1][1] < min_silence_s:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    # the clip's ends count as silence's edges too: a gap there shorter than ``min_silence_s`` (a clip
    # cut out of speech starts on a consonant's closure) is bridged rather than shown as a blink of rest
    if spans and spans[0][0] < min_silence_s:
        spans[0] = (0.0, spans[0][1])
    if spans and duration - spans[-1][1] < min_silence_s:
        spans[-1] = (spans[-1][0], duration)
    log.debug(
        "vad %s: %d span(s), %.2f of %.2f s speech", vad, len(spans), sum(b - a for a, b in spans), duration
    )
    return spans
