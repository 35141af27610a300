"""Audio windows against golden_audio (exact) and the Whisper front end on real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.errors import WeightsError
from lipsynckit_latentsync.audio import (
    crop_overlap_window,
    feature_chunks,
    load_whisper_encoder,
    log_mel_spectrogram,
    mel_filters,
    num_features,
    whisper_features,
    window_indices,
)

from ls_testutil import npz, ref, save_openai_whisper_tiny


def test_windows_match_golden_exactly(reference_dir: Path) -> None:
    g = npz(ref(reference_dir, "golden_audio.npz"))
    feats = torch.from_numpy(g["features"])
    chunks = feature_chunks(feats, 25)
    assert chunks.shape == g["chunks_fps25"].shape == (53, 50, 384)
    np.testing.assert_array_equal(chunks.numpy(), g["chunks_fps25"])
    idx = np.array([window_indices(i, len(feats), 25) for i in range(len(chunks))])
    np.testing.assert_array_equal(idx, g["chunk_indices_fps25"])
    np.testing.assert_array_equal(crop_overlap_window(feats, 16).numpy(), g["window_start16"])


def test_mel_filterbank_is_slaney() -> None:
    f = mel_filters()
    assert f.shape == (80, 201) and f.dtype == np.float32
    assert (f >= 0).all()
    peaks = f.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[0] <= 2 and peaks[-1] >= 190
    # values read from the official latentsync/whisper/whisper/assets/mel_filters.npz (our array was
    # compared with it element by element: identical)
    assert f[0, 1] == pytest.approx(0.024862595, abs=1e-9)
    assert f[40].max() == pytest.approx(0.014735566, abs=1e-9)
    assert f.sum() == pytest.approx(1.9990242, abs=1e-6)


def test_whisper_on_real_speech(tmp_path: Path, speech_wav: Path) -> None:
    path = save_openai_whisper_tiny(tmp_path / "whisper" / "tiny.pt")
    enc = load_whisper_encoder(path)
    wav, sr = sf.read(str(speech_wav), dtype="float32")
    assert sr == 16000
    audio = torch.from_numpy(wav)
    mel = log_mel_spectrogram(audio)
    assert mel.shape == (80, len(wav) // 160)
    assert float(mel.max()) <= 1.5 + 1e-6 and float(mel.max() - mel.min()) <= 2.0 + 1e-6
    feats = whisper_features(enc, audio)
    assert feats.shape == (num_features(len(wav)), 5, 384)
    assert feats.shape[0] == len(wav) // 160 // 2
    # the first state is conv features + positions, later states differ (blocks ran)
    assert not torch.allclose(feats[:, 0], feats[:, 4])
    windows = feature_chunks(feats, 25.0)
    seconds = len(wav) / sr
    assert abs(windows.shape[0] - seconds * 25) <= 3


def test_whisper_loader_is_strict(tmp_path: Path) -> None:
    path = save_openai_whisper_tiny(tmp_path / "tiny.pt")
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model_state_dict"]["encoder.blocks.3.mlp.2.bias"]
    torch.save(ckpt, path)
    with pytest.raises(WeightsError, match=r"blocks\.3\.mlp\.2\.bias"):
        load_whisper_encoder(path)
    bad = tmp_path / "x.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(WeightsError, match="openai-whisper"):
        load_whisper_encoder(bad)
