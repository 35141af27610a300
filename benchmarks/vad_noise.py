"""Does the gate hear pauses in real noise? VAD frame agreement with forced alignment, by SNR.

Clips: two LibriVox sentences of Debian's pocketsphinx-testdata joined by a pause of recorded room
tone (``tests/gate_speech.py``: 0.15 s from the start of each of 8 sentences, 1.2 s), with real
recorded noise from the ``livekit-agents`` wheel (crowded room, city, office, forest, keyboard;
Apache-2.0 / CC-BY 4.0, see its resources/NOTICE) mixed in at a given SNR (speech power over the
aligned words against the noise's power). Ground truth: pocketsphinx's forced alignment of the
package's own transcripts (independent of lipsynckit's VAD).

Per detector and SNR: ``pause_rest`` = share of 10 ms hops inside pauses >= 1 s (0.1 s clear of any
word) that the VAD calls silence (the gate shows the mouth at rest there); ``words_heard`` = share of
hops inside words that it calls speech. ``python benchmarks/vad_noise.py`` (needs the dev extra).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from lipsynckit.types import AudioClip
from lipsynckit.vad import silero_available, speech_spans

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gate_speech import LIBRIVOX, load_noise, mix, pause_truth, sentences_with_pause  # noqa: E402

NOISES = ("crowded-room", "city-ambience", "office-ambience", "forest-ambience", "keyboard-typing")
PAIRS = ((0, 2), (1, 4), (3, 0), (2, 3), (4, 1))
# Silero's adaptive thresholds were tuned on these; every other clip is held out
TUNED_PAIRS, TUNED_NOISES = ((0, 2), (1, 4), (3, 0)), ("crowded-room", "keyboard-typing")


def score(spans: list[tuple[float, float]], in_word: np.ndarray, pause: np.ndarray) -> tuple[float, float]:
    t = (np.arange(in_word.size) + 0.5) * 0.01
    speech = np.zeros(t.size, bool)
    for a, b in spans:
        speech |= (t >= a) & (t < b)
    return float((~speech[pause]).mean()), float(speech[in_word].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snr", type=float, nargs="+", default=[20.0, 10.0, 5.0])
    ap.add_argument("--vad", nargs="+", default=["energy", "silero"] if silero_available() else ["energy"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    files = sorted(LIBRIVOX.glob("*.wav"))
    rows: dict[tuple[str, float, bool], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for (i, j), noise_name in itertools.product(PAIRS, NOISES):
            out = Path(tmp) / f"{i}{j}.wav"
            tone = (files * 2)[:8]
            words = sentences_with_pause(files[i], files[j], tone, out, 2.0, 1.5)
            speech, _ = sf.read(out, dtype="float32")
            in_word, pause = pause_truth(words, len(speech) / 16000)
            for snr in args.snr:
                noisy = mix(speech, words, load_noise(noise_name, len(speech)), snr)
                clip = AudioClip(torch.from_numpy(noisy), 16000)
                for vad in args.vad:
                    held = (i, j) not in TUNED_PAIRS or noise_name not in TUNED_NOISES
                    sc = score(speech_spans(clip, vad), in_word, pause)
                    rows.setdefault((vad, snr, held), []).append(sc)
    print(
        "| VAD | SNR (dB) | clips | pause hops at rest: mean / worst clip | word hops heard: mean / worst |"
    )
    print("|---|---|---|---|---|")
    for (vad, snr, held), r in sorted(rows.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2])):
        a = np.array(r)
        print(
            f"| {vad} | {snr:g} | {len(a)} {'held out' if held else 'tuning'} "
            f"| {a[:, 0].mean():.3f} / {a[:, 0].min():.3f} "
            f"| {a[:, 1].mean():.3f} / {a[:, 1].min():.3f} |"
        )


if __name__ == "__main__":
    main()
