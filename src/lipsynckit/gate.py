"""The voice-activity gate: the mouth rests when nobody speaks, whatever the model.

Every model (Wav2Lip, MuseTalk, LatentSync, viseme) moves the lips in silence, because it draws a
mouth for every audio window, noise or breath included. The gate is applied after the model, to the
composited frame: each output frame gets a weight in [0, 1] from the speech spans of the audio
(:mod:`lipsynckit.vad`); 1 inside speech, 0 in silence, a linear ramp of ``fade_frames`` frames on the
silent side of each boundary (the mouth sets off a little before the sound and settles after it).
A frame of weight 0 is the source frame itself (a video keeps its own mouth, a still photo its own
closed mouth), and its model call is skipped; between 0 and 1 the output is blended toward the source.

At rest for a speaking source (``SyncOptions.rest``): a dubbing source speaks in its own audio, so its
frames in the new audio's pauses would show the old speech. Where the source frame shown is speech in
the source's own track (:func:`source_speaking`), the rest is the model's closed mouth instead: the
model is called on silent audio features (:func:`rest_features`; within the fade, features between the
silent and the real ones), and its output is not blended toward the source. An idle source (no audio
track, a silent one, a still photo) keeps its own frames as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from lipsynckit.options import SyncOptions
from lipsynckit.types import AudioClip
from lipsynckit.vad import Span, resolve_vad, speech_spans

if TYPE_CHECKING:
    from lipsynckit.model import LipSyncModel

RestMode = Literal["source", "model_closed"]
#: float32 bytes a blend holds at once (frames are mixed in bands of rows)
BLEND_BLOCK_BYTES = 8 * 2**20


@dataclass
class GatePlan:
    """Per-output-frame weights and the spans they came from."""

    spans: list[Span]
    weights: np.ndarray  # (n_out,) float32 in [0, 1]
    skip: np.ndarray  # (n_out,) bool: no model call for this frame
    vad: str  # the detector that ran ("energy" or "silero"; "auto" resolved)
    # (n_out,) bool: frames below weight 1 whose rest is the model's closed mouth (model called on
    # silent features, output not blended toward the source); None = none (the source rests)
    model_rest: np.ndarray | None = None
    source_spans: list[Span] = field(default_factory=list)  # speech in the source's own audio track

    @property
    def gated_frames(self) -> int:
        """Frames shown exactly as the source (weight 0, the source at rest)."""
        rest = self.weights == 0
        if self.model_rest is not None:
            rest &= ~self.model_rest
        return int(rest.sum())

    @property
    def closed_frames(self) -> int:
        """Frames of weight 0 drawn by the model with a closed mouth (silent features)."""
        if self.model_rest is None:
            return 0
        return int((self.model_rest & (self.weights == 0)).sum())

    @property
    def rest_mode(self) -> RestMode:
        """What the pauses show: the source's own frames, or the model's closed mouth."""
        return "model_closed" if self.model_rest is not None and self.model_rest.any() else "source"

    def blend(self, i: int, source: np.ndarray, output: np.ndarray) -> np.ndarray:
        """Frame ``i`` of the output, pulled toward ``source`` by its weight (not where the model rests)."""
        w = float(self.weights[i])
        if w >= 1.0 or (self.model_rest is not None and self.model_rest[i]):
            return output
        if w <= 0.0:
            return source
        out = np.empty_like(output)
        # in bands of rows: a 4000x4000 frame mixed whole held ~0.6 GB of float32 temporaries
        rows = max(1, BLEND_BLOCK_BYTES // max(1, 4 * source[0].size))
        for a in range(0, source.shape[0], rows):
            s = source[a : a + rows].astype(np.float32)
            mixed = s + w * (output[a : a + rows].astype(np.float32) - s)
            np.clip(np.rint(mixed, out=mixed), 0, 255, out=mixed)
            out[a : a + rows] = mixed
        return out


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


def source_speaking(
    source_clip: AudioClip | None, fps: float, index: np.ndarray, options: SyncOptions
) -> tuple[np.ndarray, list[Span]]:
    """Whether the source frame shown at each output frame is speech in the source's own audio
    (``source_clip``, the video's track; ``None`` = no track: idle), and that track's speech spans.

    A source frame speaks where its interval ``[s/fps, (s+1)/fps)`` meets a speech span of the same
    detector and hangover as the gate's; ``index`` maps output frames to source frames."""
    index = np.asarray(index, dtype=np.int64)
    if source_clip is None or index.size == 0:
        return np.zeros(index.size, bool), []
    vad = resolve_vad(options.vad)
    spans = speech_spans(source_clip, vad, hangover_s=options.gate_hangover_s)  # type: ignore[arg-type]
    per_source = frame_weights(spans, fps, int(index.max()) + 1, 0) > 0
    return per_source[index], spans


def plan_gate(
    clip: AudioClip,
    fps: float,
    n_frames: int,
    options: SyncOptions,
    chunk_frames: int = 1,
    speaking: np.ndarray | None = None,
) -> GatePlan:
    """The gate for ``n_frames`` output frames at ``fps`` over ``clip``, with the options' ``vad``,
    ``gate_hangover_s``, ``gate_fade_frames`` and ``rest``.

    ``speaking`` (per output frame, from :func:`source_speaking`): the source frame shown is speech in
    its own audio. With ``rest="auto"`` those frames rest on the model's closed mouth, the others on
    the source; ``"source"`` rests on the source everywhere, ``"closed"`` on the model everywhere.

    ``chunk_frames`` > 1 (models that generate frames together, LatentSync's 16): a model call is
    skipped only for chunks that are silent throughout, so a chunk never reaches the model cut short;
    its silent frames are still shown as the source.
    """
    vad = resolve_vad(options.vad)
    spans = speech_spans(clip, vad, hangover_s=options.gate_hangover_s)  # type: ignore[arg-type]
    # speech running to the end of the audio holds through frames past it (some models add one)
    held = [(a, b if b < clip.duration - 1e-6 else max(b, n_frames / fps)) for a, b in spans]
    weights = frame_weights(held, fps, n_frames, options.gate_fade_frames)
    plan = GatePlan(spans=spans, weights=weights, skip=weights == 0, vad=vad)
    return with_rest(plan, options, chunk_frames, speaking)


def with_rest(
    plan: GatePlan, options: SyncOptions, chunk_frames: int = 1, speaking: np.ndarray | None = None
) -> GatePlan:
    """``plan`` with its rest decided (``options.rest`` and ``speaking``, see :func:`plan_gate`):
    which frames below weight 1 rest on the model, and which model calls are skipped."""
    weights = plan.weights
    n_frames = int(weights.size)
    resting = weights < 1.0
    if options.rest == "closed":
        model_rest = resting
    elif options.rest == "auto" and speaking is not None:
        model_rest = resting & np.asarray(speaking, bool)[:n_frames]
    else:
        model_rest = np.zeros(n_frames, bool)
    silent = (weights == 0) & ~model_rest
    if chunk_frames > 1:
        pad = (-n_frames) % chunk_frames
        whole = np.r_[silent, np.ones(pad, bool)].reshape(-1, chunk_frames).all(axis=1)
        skip = np.repeat(whole, chunk_frames)[:n_frames]
    else:
        skip = silent
    plan.skip = skip
    plan.model_rest = model_rest if model_rest.any() else None
    return plan


def rest_features(
    model: LipSyncModel, clip: AudioClip, fps: float, features: torch.Tensor, plan: GatePlan | None
) -> torch.Tensor:
    """``features`` with the rows of the frames that rest on the model replaced by silence's.

    The silent features are the model's own, from one call of ``model.audio_features`` on a silent
    clip as long as ``clip`` (then passed through the model's optional ``rest_features(silent)``, which
    may mark them as rest); within the fade a row lies between the silent and the real one by the
    frame's weight, so the mouth settles rather than snaps shut."""
    if plan is None or plan.model_rest is None:
        return features
    rows = np.flatnonzero(plan.model_rest)
    silence = AudioClip(torch.zeros(1, max(1, clip.num_samples)), clip.sample_rate)
    silent = model.audio_features(silence, fps)
    mark = getattr(model, "rest_features", None)
    if mark is not None:
        silent = mark(silent)
    if int(silent.shape[0]) < int(features.shape[0]):  # one frame fewer at most: hold the last row
        pad = silent[-1:].expand(int(features.shape[0]) - int(silent.shape[0]), *silent.shape[1:])
        silent = torch.cat([silent, pad])
    out = features.clone()
    if features.is_floating_point():
        r = torch.from_numpy(rows)
        w = torch.from_numpy(plan.weights[rows]).to(features.dtype)
        w = w.reshape((-1,) + (1,) * (features.ndim - 1))
        quiet = silent[r].to(features.dtype)
        out[r] = quiet + w * (features[r] - quiet)  # exactly the silent row at weight 0
    else:  # features that cannot be mixed: silence at weight 0, the real row in the fade
        zero = torch.from_numpy(rows[plan.weights[rows] == 0])
        out[zero] = silent[zero].to(features.dtype)
    return out
