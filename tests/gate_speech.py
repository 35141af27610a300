"""Real speech with a real pause, and where its words are (pocketsphinx forced alignment, offline).

The word timings come from pocketsphinx's acoustic model aligned to the package's own transcription:
they are independent of lipsynckit's voice-activity detector, so tests can use them as ground truth.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from lipsynckit.types import AudioClip

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


@functools.cache
def transcripts() -> dict[str, str]:
    out = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        m = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        if m:
            out[m.group(2)] = m.group(1)
    return out


@functools.cache
def word_spans(wav: Path) -> tuple[tuple[float, float], ...]:
    """(start, end) seconds of each spoken word of a LibriVox sentence (silences and fillers left out)."""
    from pocketsphinx import Decoder

    pcm, sr = sf.read(wav, dtype="int16")
    dec = Decoder(samprate=sr, bestpath=False, loglevel="FATAL")
    dec.set_align_text(transcripts()[wav.stem])
    for first in (True, False):  # word pass, then the phone-level alignment pass
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), full_utt=True)
        dec.end_utt()
        if first:
            dec.set_alignment()
    return tuple(
        (w.start / 100.0, (w.start + w.duration) / 100.0)
        for w in dec.get_alignment()
        if not w.name.startswith("<")
    )


def sentences_with_pause(
    first: Path,
    second: Path,
    room_tone: list[Path],
    out: Path,
    first_from_s: float = 0.0,
    second_until_s: float | None = None,
) -> list[tuple[float, float]]:
    """Write ``first[first_from_s:]`` + a pause + ``second[:second_until_s]`` (16 kHz) to ``out``;
    return the spans of the words in it (cut words keep the part that is in).

    The pause is recorded room tone, not digital silence: the first 0.15 s of each ``room_tone``
    sentence (before its first word: every LibriVox sentence here starts after 0.2 s)."""
    a, sr = sf.read(first, dtype="float32")
    b, sr_b = sf.read(second, dtype="float32")
    assert sr == sr_b == 16000
    a = a[int(first_from_s * sr) :]
    if second_until_s is not None:
        b = b[: int(second_until_s * sr)]
    tone = []
    for p in room_tone:
        x, _ = sf.read(p, dtype="float32")
        assert word_spans(p)[0][0] >= 0.15, p
        tone.append(x[: int(0.15 * sr)])
    pause = np.concatenate(tone)
    sf.write(out, np.concatenate([a, pause, b]), sr, subtype="PCM_16")
    shift = (len(a) + len(pause)) / sr
    end_b = len(b) / sr
    words = [(max(0.0, s - first_from_s), e - first_from_s) for s, e in word_spans(first) if e > first_from_s]
    words += [(s + shift, min(e, end_b) + shift) for s, e in word_spans(second) if s < end_b]
    return words


def silent_frames(words: list[tuple[float, float]], fps: float, n: int, margin_s: float) -> np.ndarray:
    """Frames whose interval lies more than ``margin_s`` from every word."""
    t0 = np.arange(n) / fps
    t1 = t0 + 1.0 / fps
    quiet = np.ones(n, bool)
    for s, e in words:
        quiet &= (t1 <= s - margin_s) | (t0 >= e + margin_s)
    return quiet


def noise_file(name: str) -> Path:
    """A recording shipped in the livekit-agents wheel (located, not imported: the package is heavy)."""
    import importlib.util

    spec = importlib.util.find_spec("livekit.agents")
    assert spec is not None and spec.origin is not None, "livekit-agents is part of dev"
    return Path(spec.origin).parent / "resources" / f"{name}.ogg"


def load_noise(name: str, n: int, offset_s: float = 1.0) -> np.ndarray:
    """``n`` samples of the recording at 16 kHz mono (looped if short), from ``offset_s`` on."""
    x, sr = sf.read(noise_file(name), dtype="float32", always_2d=True)
    clip = AudioClip(torch.from_numpy(np.ascontiguousarray(x.mean(axis=1))), sr).resample(16000)
    y = clip.numpy()[int(offset_s * 16000) :]
    reps = int(np.ceil(n / max(1, len(y))))
    return np.tile(y, reps)[:n]


def mix(speech: np.ndarray, words: list[tuple[float, float]], noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + g * noise`` with ``g`` set so the words' power is ``snr_db`` over the noise's."""
    inside = np.zeros(len(speech), bool)
    for s, e in words:
        inside[int(s * 16000) : int(e * 16000)] = True
    p_speech = float(np.mean(speech[inside] ** 2))
    p_noise = float(np.mean(noise**2)) + 1e-20
    g = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10.0)))
    return (speech + g * noise).astype(np.float32)


def pause_truth(words: list[tuple[float, float]], duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Per 10 ms hop: in a word; in a pause >= 1 s, 0.1 s clear of the words around it."""
    t = (np.arange(int(duration / 0.01)) + 0.5) * 0.01
    in_word = np.zeros(t.size, bool)
    for s, e in words:
        in_word |= (t >= s) & (t < e)
    edges = [0.0] + [x for w in sorted(words) for x in w] + [duration]
    pause = np.zeros(t.size, bool)
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a >= 1.0:
            pause |= (t >= a + 0.1) & (t < b - 0.1)
    return in_word, pause
