"""resample(): torchaudio's windowed-sinc algorithm, checked against scipy on real speech and on tones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from lipsynckit.media import load_audio, resample
from lipsynckit.types import AudioClip


def _snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - x) ** 2)))


def _tone(freq: float, sr: int, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(sr * seconds), dtype=torch.float64) / sr
    return torch.sin(2 * math.pi * freq * t).to(torch.float32)[None]


def _spectrum_db(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    win = np.hanning(len(x))
    mag = np.abs(np.fft.rfft(x * win))
    return np.fft.rfftfreq(len(x), 1 / sr), 20 * np.log10(mag / mag.max() + 1e-12)


@pytest.mark.parametrize("new_sr", [22050, 24000, 44100, 48000])
def test_upsampling_speech_matches_scipy_polyphase(speech_wav: Path, new_sr: int) -> None:
    x, sr = sf.read(str(speech_wav), dtype="float32")
    y = resample(torch.from_numpy(x)[None], sr, new_sr)[0].numpy()
    g = math.gcd(sr, new_sr)
    ref = scipy.signal.resample_poly(x.astype(np.float64), new_sr // g, sr // g)
    assert len(y) == math.ceil(len(x) * new_sr / sr) == len(ref)
    edge = new_sr // 10  # filters differ only in their start-up, keep 0.1 s away from the ends
    assert _snr_db(ref[edge:-edge], y[edge:-edge]) > 40.0


def test_downsampling_speech_matches_scipy_in_band(speech_wav: Path) -> None:
    """16 -> 8 kHz: both filters keep the band below 3 kHz alike (their transition bands differ near 4 kHz)."""
    x, sr = sf.read(str(speech_wav), dtype="float32")
    y = resample(torch.from_numpy(x)[None], sr, 8000)[0].numpy().astype(np.float64)
    ref = scipy.signal.resample_poly(x.astype(np.float64), 1, 2)
    sos = scipy.signal.butter(8, 3000, fs=8000, output="sos")
    a, b = scipy.signal.sosfiltfilt(sos, ref), scipy.signal.sosfiltfilt(sos, y)
    assert len(y) == len(x) // 2
    assert _snr_db(a[800:-800], b[800:-800]) > 40.0


def test_tone_keeps_its_frequency_and_amplitude() -> None:
    y = resample(_tone(1000.0, 16000, 2.0), 16000, 44100)[0].numpy()
    freqs, db = _spectrum_db(y[4410:-4410], 44100)
    assert abs(freqs[np.argmax(db)] - 1000.0) < 2.0
    assert abs(np.abs(y[4410:-4410]).max() - 1.0) < 0.01  # unit pass-band gain


def test_aliasing_is_suppressed_when_downsampling() -> None:
    """A 12 kHz component cannot exist at 16 kHz; it must be filtered, not folded to 4 kHz."""
    x = _tone(1000.0, 48000, 2.0) + _tone(12000.0, 48000, 2.0)
    y = resample(x, 48000, 16000)[0].numpy()
    freqs, db = _spectrum_db(y[1600:-1600], 16000)
    assert abs(freqs[np.argmax(db)] - 1000.0) < 2.0
    alias = db[(freqs > 3900) & (freqs < 4100)].max()
    assert alias < -45.0, alias  # Hann window, 6 zero crossings: about -55 dB here, as torchaudio gives
    # Without the low-pass (plain decimation) the alias is as loud as the tone: the check can fail.
    naive_freqs, naive_db = _spectrum_db(x[0, ::3].numpy()[1600:-1600], 16000)
    assert naive_db[(naive_freqs > 3900) & (naive_freqs < 4100)].max() > -10.0


def test_shapes_rates_and_dtypes() -> None:
    x = torch.randn(2, 1000)
    assert resample(x, 16000, 16000) is x
    assert resample(x, 16000, 48000).shape == (2, 3000)
    assert resample(x, 44100, 16000).shape == (2, math.ceil(1000 * 16000 / 44100))
    assert resample(x[0], 16000, 8000).shape == (500,)
    assert resample(x.double(), 16000, 22050).dtype == torch.float64
    assert resample((x * 1000).to(torch.int16), 16000, 8000).dtype == torch.float32
    # Channels are independent.
    both = resample(x, 16000, 22050)
    assert torch.allclose(both[1], resample(x[1:], 16000, 22050)[0], atol=1e-6)
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


def test_audioclip_resample_uses_it(speech_wav: Path) -> None:
    clip = load_audio(speech_wav)
    out = clip.resample(22050)
    assert isinstance(out, AudioClip) and out.sample_rate == 22050
    assert torch.equal(out.samples, resample(clip.samples, 16000, 22050))
    assert load_audio(speech_wav, sample_rate=22050).samples.shape == out.samples.shape
