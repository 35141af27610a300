"""Static int8 quantisation of the exported Wav2Lip generator (``onnxruntime.quantization``).

Calibration uses real media shipped inside the package (never the test goldens): faces cropped from
skimage's astronaut photo (``lipsynckit/data/astronaut.jpg``) with the box shifted and scaled as a
detector's boxes move, mirrored too, each paired with a mel window of the packaged LibriVox sentence
(``speech.wav``), fed exactly as :class:`~lipsynckit_wav2lip.runtime.Wav2LipModel` feeds the generator
(``[masked, reference]`` BGR/255). Activations are calibrated per tensor (MinMax), weights per
channel, in the QDQ format ONNX Runtime fuses into integer convolutions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from lipsynckit_wav2lip.network import INPUT_NAMES

log = logging.getLogger(__name__)

ASTRONAUT_FACE = (170, 55, 265, 175)  # x1, y1, x2, y2 of the face in the 512x512 photo, bottom padded
CALIBRATION_SIZE = 32


def calibration_inputs(n: int = CALIBRATION_SIZE) -> list[dict[str, np.ndarray]]:
    """``n`` generator inputs (batch 1) from the packaged photo and speech, deterministic."""
    import soundfile as sf

    from lipsynckit.samples import sample_media
    from lipsynckit_wav2lip.audio import SAMPLE_RATE, mel_chunks, melspectrogram

    photo, speech = sample_media()
    img = cv2.imread(str(photo))  # BGR, as the generator sees faces
    if img is None:
        raise FileNotFoundError(photo)
    pcm, sr = sf.read(str(speech), dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE, f"{speech} is shipped at 16 kHz"
    mels = mel_chunks(melspectrogram(pcm[:, 0]), 25.0)
    rng = np.random.default_rng(0)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    w, h = x2 - x1, y2 - y1
    out: list[dict[str, np.ndarray]] = []
    for i in range(n):
        s = 1.0 + rng.uniform(-0.12, 0.12)
        cx, cy = (x1 + x2) / 2 + rng.uniform(-8, 8), (y1 + y2) / 2 + rng.uniform(-8, 8)
        bx1, by1 = int(max(0, cx - w * s / 2)), int(max(0, cy - h * s / 2))
        bx2, by2 = int(min(img.shape[1], cx + w * s / 2)), int(min(img.shape[0], cy + h * s / 2))
        crop = cv2.resize(np.ascontiguousarray(img[by1:by2, bx1:bx2]), (96, 96))
        if i % 2:
            crop = np.ascontiguousarray(crop[:, ::-1])
        full = (crop / 255.0).astype(np.float32)
        masked = full.copy()
        masked[48:] = 0
        face = np.concatenate([masked, full], axis=2).transpose(2, 0, 1)[None]
        mel = mels[(i * len(mels)) // n][None, None].astype(np.float32)
        out.append({INPUT_NAMES[0]: np.ascontiguousarray(mel), INPUT_NAMES[1]: np.ascontiguousarray(face)})
    return out


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader`` over :func:`calibration_inputs`."""

    def __init__(self, items: list[dict[str, np.ndarray]]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(items)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_int8(source: Path, dest: Path) -> None:
    """Write the static int8 (QDQ, per-channel weights) quantisation of ``source`` to ``dest``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dest.with_name(dest.name + ".pre.onnx")
    try:
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dest),
            _Reader(calibration_inputs()),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    finally:
        pre.unlink(missing_ok=True)
