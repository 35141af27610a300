"""The voice-activity gate: the mouth rests when nobody speaks, whatever the model.

Every model (Wav2Lip, MuseTalk, LatentSync, viseme) moves the lips in silence, because it draws a
mouth for every audio window, noise or breath included. The gate is applied after the model, to the
composited frame: each output frame gets a weight in [0, 1] from the speech spans of the audio
(:mod:`lipsynckit.vad`); 1 inside speech, 0 in silence, a linear ramp of ``fade_frames`` frames on the
silent side of each boundary (the mouth sets off a little before the sound and settles after it).
A frame of weight 0 is the source frame itself (a video keeps its own mouth, a still photo its own
closed mouth), and its model call is skipped; between 0 and 1 the output is blended toward the source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipsynckit.options import SyncOptions
from lipsynckit.types import AudioClip
from lipsynckit.vad import Span, resolve_vad, speech_spans


@dataclass
class GatePlan:
    """Per-output-frame weights and the spans they came from."""

    spans: list[Span]
    weights: np.ndarray  # (n_out,) float32 in [0, 1]
    skip: np.ndarray  # (n_out,) bool: no model call for this frame
    vad: str  # the detector that ran ("energy" or "silero"; "auto" resolved)

    @property
    def gated_frames(self) -> int:
        """Frames shown exactly as the source (weight 0)."""
        return int((self.weights == 0).sum())

    def blend(self, i: int, source: np.ndarray, output: np.ndarray) -> np.ndarray:
        """Frame ``i`` of the output, pulled toward ``source`` by its weight."""
        w = float(self.weights[i])
        if w >= 1.0:
            return output
        if w <= 0.0:
            return source
        mixed = source.astype(np.float32) + w * (output.astype(np.float32) - source.astype(np.float32))
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def frame_weights(spans: list[Span], fps: float, n_frames: int, fade_frames: int) -> np.ndarray:
    """Weight per frame: 1 where the frame's interval ``[i/fps, (i+1)/fps)`` meets a speech span, then
    ``1 - d / (fade_frames + 1)`` at ``d`` frames from the nearest such frame, down to 0."""
    speech = np.zeros(n_frames, bool)
    for a, b in spans:
        i0 = max(0, int(np.floor(a * fps)))
        i1 = min(n_frames, int(np.ceil(b * fps)))
        speech[i0:i1] = True
    if not speech.any():
        return np.zeros(n_frames, np.float32)
    idx = np.arange(n_frames)
    on = np.flatnonzero(speech)
    # distance to the nearest speech frame (two-sided search in the sorted speech indices)
    pos = np.searchsorted(on, idx)
    left = np.abs(idx - on[np.clip(pos - 1, 0, len(on) - 1)])
    right = np.abs(on[np.clip(pos, 0, len(on) - 1)] - idx)
    dist = np.minimum(left, right)
    w = np.clip(1.0 - dist / float(fade_frames + 1), 0.0, 1.0)
    return w.astype(np.float32)


def plan_gate(
    clip: AudioClip, fps: float, n_frames: int, options: SyncOptions, chunk_frames: int = 1
) -> GatePlan:
    """The gate for ``n_frames`` output frames at ``fps`` over ``clip``, with the options' ``vad``,
    ``gate_hangover_s`` and ``gate_fade_frames``.

    ``chunk_frames`` > 1 (models that generate frames together, LatentSync's 16): a model call is
    skipped only for chunks that are silent throughout, so a chunk never reaches the model cut short;
    its silent frames are still shown as the source.
    """
    vad = resolve_vad(options.vad)
    spans = speech_spans(clip, vad, hangover_s=options.gate_hangover_s)  # type: ignore[arg-type]
    # speech running to the end of the audio holds through frames past it (some models add one)
    held = [(a, b if b < clip.duration - 1e-6 else max(b, n_frames / fps)) for a, b in spans]
    weights = frame_weights(held, fps, n_frames, options.gate_fade_frames)
    silent = weights == 0
    if chunk_frames > 1:
        pad = (-n_frames) % chunk_frames
        whole = np.r_[silent, np.ones(pad, bool)].reshape(-1, chunk_frames).all(axis=1)
        skip = np.repeat(whole, chunk_frames)[:n_frames]
    else:
        skip = silent
    return GatePlan(spans=spans, weights=weights, skip=skip, vad=vad)
