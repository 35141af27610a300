"""resample(): torchaudio's windowed-sinc algorithm, checked against scipy on real speech and on tones."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from lipsynckit.media import load_audio, resample
from lipsynckit.media.resample import (
    DIRECT_BLOCK_BYTES,
    KERNEL_BUDGET_BYTES,
    resample_plan,
    resample_soxr,
    sinc_resample_kernel,
)
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


# --------------------------------------------------------------------------------------------------
# bounded memory (issue 18): any pair of rates, the bank only where it is small
# --------------------------------------------------------------------------------------------------

_R = importlib.import_module("lipsynckit.media.resample")


def test_gcd_one_rates_never_build_the_2_8_gb_bank() -> None:
    """44101 -> 16000: torchaudio's bank is 16000 x (2*17 + 44101) float32 = 2.8 GB; we allocate 16 MiB."""
    plan = resample_plan(44101, 16000)
    assert (plan.orig, plan.new, plan.width) == (44101, 16000, 17)
    assert plan.kernel_bytes == 16000 * (2 * 17 + 44101) * 4 == 2_824_640_000
    assert plan.method == "direct" and plan.work_bytes <= DIRECT_BLOCK_BYTES
    with pytest.raises(MemoryError, match="2694 MiB"):
        sinc_resample_kernel(44101, 16000)
    # the usual rates keep the bank (fast, and what the goldens were made with)
    for orig, new in [(44100, 16000), (48000, 16000), (22050, 16000), (16000, 48000), (8000, 16000)]:
        p = resample_plan(orig, new)
        assert p.method == "bank" and p.kernel_bytes <= KERNEL_BUDGET_BYTES


@pytest.mark.parametrize("new_sr", [8000, 22050, 44100, 48000])
def test_direct_path_equals_the_bank(speech_wav: Path, new_sr: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same filter evaluated tap by tap: equal to the bank within 1e-5 (float32 sums in another order)."""
    x, sr = sf.read(str(speech_wav), dtype="float32")
    stereo = torch.from_numpy(np.stack([x, 0.5 * x[::-1].copy()]))
    bank = resample(stereo, sr, new_sr)
    assert resample_plan(sr, new_sr, 2).method == "bank"
    monkeypatch.setattr(_R, "KERNEL_BUDGET_BYTES", 0)
    assert resample_plan(sr, new_sr, 2).method == "direct"
    direct = resample(stereo, sr, new_sr)
    assert direct.shape == bank.shape
    assert float((direct - bank).abs().max()) < 1e-5
    # and back down from the new rate (44100 -> 16000 has 441 input phases)
    down_direct = resample(bank, new_sr, sr)
    monkeypatch.setattr(_R, "KERNEL_BUDGET_BYTES", 32 * 2**20)
    assert float((down_direct - resample(bank, new_sr, sr)).abs().max()) < 1e-5


def test_44101_hz_round_trip_matches_scipy(speech_wav: Path) -> None:
    x, sr = sf.read(str(speech_wav), dtype="float32")
    up = resample(torch.from_numpy(x)[None], sr, 44101)[0].numpy()
    ref = scipy.signal.resample_poly(x.astype(np.float64), 44101, 16000)
    assert len(up) == math.ceil(len(x) * 44101 / 16000) == len(ref)
    assert _snr_db(ref[4410:-4410], up[4410:-4410]) > 45.0
    down = resample(torch.from_numpy(up)[None], 44101, sr)[0].numpy()
    assert len(down) == math.ceil(len(up) * 16000 / 44101)
    assert _snr_db(x[1600:-1600], down[1600 : len(x) - 1600]) > 45.0


@pytest.mark.parametrize(("orig", "new"), [(7, 16000), (1, 16000), (16000, 7)])
def test_tiny_rates_resample_in_bounded_memory(orig: int, new: int) -> None:
    """Rates no file should have still resample (the library function); a file at them is refused."""
    x = _tone(0.1 * min(orig, new), orig, 3.0)  # a slow tone: well inside both bands
    y = resample(x, orig, new)
    assert y.shape == (1, math.ceil(x.shape[1] * new / orig))
    assert resample_plan(orig, new).work_bytes <= KERNEL_BUDGET_BYTES
    assert torch.isfinite(y).all() and float(y.abs().max()) < 1.1


@pytest.mark.parametrize("rate", [7, 1, 1_000_000])
def test_audio_files_at_unusable_rates_are_refused_in_one_line(
    rate: int, tmp_path: Path, carphone_mp4: Path
) -> None:
    from lipsynckit.errors import AudioError
    from lipsynckit.inputs import check_run

    wav = tmp_path / f"at_{rate}.wav"
    sf.write(str(wav), np.full(max(7, rate // 100), 0.5, np.float32), rate)
    with pytest.raises(AudioError, match=f"sample rate {rate} Hz is outside 4000-768000 Hz") as e:
        load_audio(wav, sample_rate=16000)
    assert str(wav) in str(e.value) and "Traceback" not in str(e.value)
    with pytest.raises(AudioError, match="sample rate"):  # the same line before any model loads
        check_run(carphone_mp4, wav, None)


@pytest.mark.parametrize("new_sr", [8000, 22050, 48000])
def test_soxr_for_output_audio_matches_the_exact_path_in_band(speech_wav: Path, new_sr: int) -> None:
    """libsoxr (the output's sound track) and the exact filter agree below 3 kHz to 55 dB (measured 61-69)."""
    x, sr = sf.read(str(speech_wav), dtype="float32")
    a = resample(torch.from_numpy(x)[None], sr, new_sr)[0].numpy().astype(np.float64)
    b = resample_soxr(torch.from_numpy(x)[None], sr, new_sr)[0].numpy().astype(np.float64)
    assert len(a) == len(b)
    sos = scipy.signal.butter(8, 3000, fs=new_sr, output="sos")
    e = new_sr // 10
    band = _snr_db(scipy.signal.sosfiltfilt(sos, a)[e:-e], scipy.signal.sosfiltfilt(sos, b)[e:-e])
    assert band > 55.0
    assert _snr_db(a[e:-e], b[e:-e]) > (20.0 if new_sr < sr else 50.0)  # 8 kHz: the transition bands differ
    assert torch.equal(
        AudioClip(torch.from_numpy(x)[None], sr).resample(new_sr, exact=False).samples[0],
        torch.from_numpy(b.astype(np.float32)),
    )
