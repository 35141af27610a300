"""Accuracy of the weight-free audio/mouth agreement on every LibriVox sentence of pocketsphinx-testdata.

The synced reference is the built-in ``viseme`` model's output video on a real photo (its mouth follows
its own audio analysis, not the metric's); the metric reads the mouth back from the pixels. Each clip
is scored as made and with the audio shifted by 2..10 frames either way. Prints the markdown table
recorded in docs/metrics.md, including the metric before issue 11 (mouth motion against the RMS
envelope) for comparison. Usage:

    python benchmarks/sync_metric_accuracy.py            # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import torch

import lipsynckit as lsk
from lipsynckit.api import sync_frames
from lipsynckit.metrics import (
    audio_mouth_agreement,
    mouth_box_from_face,
    mouth_openness,
    mouth_patches,
    speech_band_envelope,
    speech_envelope,
)
from lipsynckit.types import AudioClip, Face, FaceTrack

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
FPS = 25.0
SHIFTS = [s * k for k in range(2, 11) for s in (1, -1)]
TUNE = ("0870", "0880")  # the clips the design choices were made on; the others are held out


def photos() -> dict[str, np.ndarray]:
    import matplotlib.cbook
    import skimage.data

    bgr = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    grace = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (256, 300), interpolation=cv2.INTER_AREA)
    return {"grace_hopper": grace, "astronaut": skimage.data.astronaut()}


def haar_face(img: np.ndarray) -> np.ndarray:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = cascade.detectMultiScale(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(60, 60))
    x, y, w, h = max(found, key=lambda b: b[2] * b[3])
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def shifted(x: np.ndarray, sr: int, k: int) -> np.ndarray:
    s = int(round(abs(k) * sr / FPS))
    z = np.zeros(s, x.dtype)
    return np.concatenate([z, x])[: len(x)] if k >= 0 else np.concatenate([x[s:], z])


def old_metric(patches: np.ndarray, audio: AudioClip, n: int) -> dict[int, float]:
    """The agreement before issue 11: mouth-patch motion against the RMS envelope, plain Pearson r."""
    motion = np.zeros(n)
    motion[1:] = np.mean(np.abs(np.diff(patches, axis=0)), axis=(1, 2))
    motion[0] = motion[1]
    env = speech_envelope(audio, FPS, n)
    out = {}
    for lag in range(-15, 16):
        lo, hi = max(0, lag), min(n, n + lag)
        out[lag] = float(np.corrcoef(motion[lo:hi], env[lo - lag : hi - lag])[0, 1])
    return out


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    model = lsk.load_model("viseme")
    rows = []
    for pname, img in photos().items():
        face = haar_face(img)
        mouth = mouth_box_from_face(face)
        for wav in sorted(LIBRIVOX.glob("*.wav")):
            x, sr = sf.read(str(wav), dtype="float32")
            audio = AudioClip(torch.from_numpy(x), sr)
            out = sync_frames(model, img, audio, fps=FPS, track=FaceTrack([Face(face)]))
            n = len(out)
            patches = mouth_patches(out, mouth)
            openness = mouth_openness(patches)
            res = {}
            old = {}
            for k in [0, *SHIFTS]:
                a = AudioClip(torch.from_numpy(shifted(x, sr, k)), sr)
                res[k] = audio_mouth_agreement(openness, speech_band_envelope(a, FPS, n))
                o = old_metric(patches, a, n)
                old[k] = (max(o, key=lambda q: o[q]), o[0])
            s0 = res[0]
            worst = max(abs(int(res[k].best_lag) + k) for k in SHIFTS)  # type: ignore[arg-type]
            kbest = max(SHIFTS, key=lambda k: res[k].at_zero)  # type: ignore[arg-type,return-value]
            old_worst = max(abs(old[k][0] + k) for k in SHIFTS)
            old_kbest = max(SHIFTS, key=lambda k: old[k][1])
            split = "tune" if wav.stem[-4:] in TUNE else "held out"
            rows.append(
                f"| {pname} | {wav.stem[-4:]} ({split}) | {n} | 0 | {s0.best_lag:+d} | {worst} | "
                f"{s0.at_zero:.3f} | {res[kbest].at_zero:.3f} ({kbest:+d}) | {s0.margin:.3f} | "
                f"{old[0][0]:+d} | {old_worst} | {old[0][1]:.3f} | {old[old_kbest][1]:.3f} ({old_kbest:+d}) |"
            )
    print(
        "| photo | clip | frames | true lag | picked lag | worst lag error over shifts | synced score | "
        "best shifted score (shift) | margin | before: picked lag | before: worst lag error | "
        "before: synced | before: best shifted (shift) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
