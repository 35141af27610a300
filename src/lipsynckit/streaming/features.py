"""Streaming audio features: each frame's model input from the audio pushed so far.

A model may provide ``stream_features(fps, options)`` returning a :class:`StreamFeatures` (Wav2Lip does:
its mel windows are exact). Otherwise :class:`WindowedFeatures` runs the model's own
``audio_features`` on a sliding window (history before the frames, look-ahead after them), which is
how clip-relative features (viseme's noise floor) and encoders (MuseTalk's Whisper) are streamed.
Models that generate chunks of frames (LatentSync) are refused before they load.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from lipsynckit.errors import LipSyncError, StreamingUnsupportedError
from lipsynckit.types import AudioClip

log = logging.getLogger(__name__)


@runtime_checkable
class StreamFeatures(Protocol):
    """Features of one utterance, frame by frame, as its audio arrives (mono float32 at ``sample_rate``).

    Frame ``j`` covers the audio from ``j/fps`` to ``(j+1)/fps`` of the utterance. ``row(j)`` may be
    called once ``needed_samples(j)`` samples were pushed, or after ``finish()``.
    """

    sample_rate: int

    def needed_samples(self, frame: int) -> int: ...

    def push(self, samples: np.ndarray) -> None: ...

    def finish(self) -> None: ...

    def row(self, frame: int) -> torch.Tensor: ...


class WindowedFeatures:
    """``model.audio_features`` on a sliding window: ``history_s`` before the frames, ``lookahead_s`` after.

    Rows are computed a block at a time (all frames whose look-ahead has arrived, at most
    ``max_block``) so per-frame cost stays small; samples older than the history are dropped.
    """

    def __init__(
        self,
        model: Any,
        fps: float,
        sample_rate: int,
        history_s: float,
        lookahead_s: float,
        max_block: int = 25,
        tail: str = "repeat",
    ) -> None:
        self.model = model
        self.fps = float(fps)
        self.sample_rate = int(sample_rate)
        self.history_frames = max(0, int(math.ceil(history_s * self.fps)))
        self.lookahead = int(math.ceil(lookahead_s * self.sample_rate))
        self.max_block = max(1, max_block)
        self.tail = tail
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # utterance sample index of _buf[0]
        self._n = 0
        self._finished = False
        self._rows: dict[int, torch.Tensor] = {}

    def _start(self, frame: int) -> int:
        return int(round(frame * self.sample_rate / self.fps))

    def needed_samples(self, frame: int) -> int:
        return self._start(frame + 1) + self.lookahead

    def push(self, samples: np.ndarray) -> None:
        self._buf = np.concatenate([self._buf, samples.astype(np.float32, copy=False)])
        self._n += len(samples)

    def finish(self) -> None:
        self._finished = True

    def _available(self, frame: int) -> bool:
        return self._finished or self.needed_samples(frame) <= self._n

    def row(self, frame: int) -> torch.Tensor:
        got = self._rows.pop(frame, None)
        if got is not None:
            return got
        if not self._available(frame):
            raise LipSyncError(f"features of frame {frame} asked before its audio arrived", stage="stream")
        last = frame
        while last + 1 < frame + self.max_block and self._available(last + 1):
            last += 1
            if self._finished and self._start(last + 1) >= self._n:
                break
        first_ctx = max(0, frame - self.history_frames)
        a = self._start(first_ctx)
        b = self._n if self._finished else min(self._n, self.needed_samples(last))
        seg = self._buf[a - self._buf_start : b - self._buf_start]
        if len(seg) == 0:
            seg = np.zeros(1, dtype=np.float32)
        feats = self.model.audio_features(
            AudioClip(torch.from_numpy(np.ascontiguousarray(seg)), self.sample_rate), self.fps
        )
        for j in range(frame, last + 1):
            k = j - first_ctx
            if k < feats.shape[0]:
                self._rows[j] = feats[k]
            elif feats.shape[0]:
                self._rows[j] = feats[-1] if self.tail == "repeat" else torch.zeros_like(feats[-1])
            else:
                raise LipSyncError(f"no features for frame {frame}: audio too short", stage="stream")
        # drop audio no later frame needs (its history starts at least here)
        keep_from = self._start(max(0, last + 1 - self.history_frames))
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :]
            self._buf_start = keep_from
        return self._rows.pop(frame)


def check_streamable(model_name: str, plugin: Any) -> None:
    """Refuse, before loading, a model that generates several frames at once (LatentSync: 16)."""
    info = plugin.info
    chunk = int(getattr(info, "chunk_frames", 1) or 1)
    reason = getattr(plugin, "stream_refusal", None)
    if chunk > 1 or reason:
        why = reason or (
            f"it generates {chunk} frames at a time, so its first frame needs {chunk} frames of audio "
            "(plus context) before it can start"
        )
        raise StreamingUnsupportedError(
            f"model {model_name!r} cannot stream: {why}",
            stage="stream",
            remedy="use wav2lip, musetalk or viseme for real time, or lsk.sync() on whole files",
        )


def features_for(model: Any, fps: float, history_s: float | None) -> StreamFeatures:
    """The streaming features of a loaded model (its own, or a sliding window over ``audio_features``)."""
    own = getattr(model, "stream_features", None)
    if own is not None:
        feats = own(fps, history_s)
        if not isinstance(feats, StreamFeatures):
            raise LipSyncError(
                f"{model.info.name}.stream_features returned {type(feats).__name__}", stage="stream"
            )
        return feats
    log.debug("%s: streaming its audio_features on a sliding window", model.info.name)
    return WindowedFeatures(
        model, fps, model.info.audio_sample_rate, history_s if history_s is not None else 2.0, 0.25
    )
