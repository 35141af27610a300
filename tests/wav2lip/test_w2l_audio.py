"""Issue: the audio front end equals the official one (golden_audio, pinned librosa 0.7 stack) without
librosa, and the per-frame windows follow the official rule at any fps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.errors import AudioError
from lipsynckit.model import ModelInfo
from lipsynckit.types import AudioClip
from lipsynckit_wav2lip.audio import chunk_starts, mel_chunks, mel_filterbank, melspectrogram
from lipsynckit_wav2lip.network import Wav2LipNet
from lipsynckit_wav2lip.runtime import Wav2LipModel

from w2l_helpers import golden


@pytest.fixture(scope="module")
def g(reference_dir: Path) -> dict[str, np.ndarray]:
    return golden("golden_audio")


@pytest.fixture(scope="module")
def model() -> Wav2LipModel:
    # audio_features does not touch the network's weights
    return Wav2LipModel(ModelInfo(name="wav2lip", display_name="Wav2Lip", face_size=96), Wav2LipNet())


def test_mel_filterbank_is_bit_identical(g: dict[str, np.ndarray]) -> None:
    basis = mel_filterbank()
    assert basis.dtype == np.float32 and basis.shape == (80, 401)
    assert np.array_equal(basis, g["mel_basis"])


def test_mel_matches_the_pinned_librosa_stack(g: dict[str, np.ndarray]) -> None:
    mel = melspectrogram(g["waveform"])
    assert mel.shape == (80, 161) and mel.dtype == np.float32
    np.testing.assert_allclose(mel, g["mel"], atol=2e-6, rtol=0)
    # the edge frames are where constant (librosa >= 0.10) padding would be off by ~1
    np.testing.assert_allclose(mel[:, [0, 1, -2, -1]], g["mel"][:, [0, 1, -2, -1]], atol=2e-6, rtol=0)
    assert (mel[:, 102:119] == -4.0).all()  # digital silence maps to the floor


@pytest.mark.parametrize("fps,key", [(25.0, "fps25"), (24.0, "fps24"), (30.0, "fps30"), (29.97, "fps29_97")])
def test_chunk_starts_at_common_frame_rates(g: dict[str, np.ndarray], fps: float, key: str) -> None:
    assert np.array_equal(chunk_starts(161, fps), g[f"chunk_starts_{key}"])


def test_mel_chunks_fps25(g: dict[str, np.ndarray]) -> None:
    chunks = mel_chunks(g["mel"], 25.0)
    assert np.array_equal(chunks, g["mel_chunks_fps25"])  # pure slicing of the same mel


def test_audio_features_from_a_16bit_wav_file(
    g: dict[str, np.ndarray], model: Wav2LipModel, tmp_path: Path
) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, g["pcm16"], 16000, subtype="PCM_16")
    data, sr = sf.read(wav, dtype="float32")  # int16/32768, what librosa.load gives
    feats = model.audio_features(AudioClip(torch.from_numpy(data), sr), 25.0)
    assert feats.shape == (47, 1, 80, 16) and feats.dtype == torch.float32
    want = mel_chunks(golden("golden_pipeline")["mel"], 25.0)  # official main() on this 16-bit WAV
    np.testing.assert_allclose(feats[:, 0].numpy(), want, atol=2e-6, rtol=0)


def test_stereo_is_averaged_and_other_rates_resampled(speech_wav: Path, model: Wav2LipModel) -> None:
    data, sr = sf.read(speech_wav, dtype="float32")
    assert sr == 16000
    mono = model.audio_features(AudioClip(torch.from_numpy(data), sr), 25.0)
    stereo = model.audio_features(AudioClip(torch.from_numpy(np.stack([data, data])), sr), 25.0)
    assert torch.equal(mono, stereo)
    n_mel = 1 + len(data) // 200
    assert mono.shape[0] == len(chunk_starts(n_mel, 25.0))
    # real speech reaches well above the silence floor
    assert float(mono.max()) > 0.0 and float(mono.min()) >= -4.0
    from scipy.signal import resample_poly

    up = resample_poly(data.astype(np.float64), 3, 1).astype(np.float32)  # 48 kHz copy of the same speech
    feats48 = model.audio_features(AudioClip(torch.from_numpy(up), 48000), 25.0)
    assert abs(feats48.shape[0] - mono.shape[0]) <= 1
    n = min(feats48.shape[0], mono.shape[0]) - 1
    # band-limited round trip: the features agree closely away from the edges (measured 0.005; the same
    # speech shifted by 50 ms differs by 0.8)
    assert float((feats48[1:n] - mono[1:n]).abs().mean()) < 0.02


def test_too_short_audio_and_bad_fps_are_clear_errors(model: Wav2LipModel) -> None:
    with pytest.raises(AudioError, match="too short"):
        model.audio_features(AudioClip(torch.zeros(1, 2000), 16000), 25.0)  # 11 mel frames
    with pytest.raises(AudioError, match="frame rate"):
        chunk_starts(161, 0.0)
    with pytest.raises(AudioError, match="NaN"):
        melspectrogram(np.full(4000, np.nan, dtype=np.float32))
