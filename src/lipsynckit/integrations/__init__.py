"""Voice-agent frameworks driving a streaming session: Pipecat and LiveKit Agents.

Each module imports its framework when it is imported itself, so ``import lipsynckit`` never needs them:

- :mod:`lipsynckit.integrations.pipecat` (``pip install "lipsynckit[pipecat]"``):
  :class:`~lipsynckit.integrations.pipecat.LipSyncVideoService`, a frame processor placed after TTS.
- :mod:`lipsynckit.integrations.livekit` (``pip install "lipsynckit[livekit]"``):
  :class:`~lipsynckit.integrations.livekit.LipSyncVideoGenerator`, a ``VideoGenerator`` for an
  ``AvatarRunner``.

Both only use the public session API (``push_audio``/``flush``/``interrupt``/``frames``/``close``), so
they run with any streaming model; each frame's own audio travels with its image.
"""

from __future__ import annotations

import numpy as np

from lipsynckit.errors import LipSyncError


def missing_extra(framework: str, extra: str, error: ImportError) -> LipSyncError:
    """The one error for a framework that is not installed."""
    return LipSyncError(
        f"{framework} is not installed ({error})",
        stage="integration",
        remedy=f'pip install "lipsynckit[{extra}]"',
    )


def pcm16(audio: np.ndarray) -> bytes:
    """Interleaved int16 bytes (what Pipecat and LiveKit carry) from a frame's audio."""
    if audio.dtype != np.int16:
        audio = np.clip(np.rint(audio.astype(np.float32) * 32767.0), -32768, 32767).astype(np.int16)
    return np.ascontiguousarray(audio).tobytes()


def from_pcm16(data: bytes | memoryview, channels: int) -> np.ndarray:
    """Interleaved int16 PCM (what both frameworks carry) as ``(samples,)`` or ``(samples, channels)``:
    the shapes :meth:`~lipsynckit.streaming.StreamSession.push_audio` takes."""
    pcm = np.frombuffer(data, dtype=np.int16)
    return pcm.reshape(-1, channels) if channels > 1 else pcm
