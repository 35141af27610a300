"""MuseTalk audio path against the official goldens (HEAD and legacy), through the user-facing loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lipsynckit.media import load_audio
from lipsynckit_musetalk import audio as A
from lipsynckit_musetalk.whisper import load_whisper_encoder

from mt_helpers import write_whisper_hf, write_whisper_openai
from refdata import load_npz


@pytest.fixture(scope="module")
def windows(reference_dir: Path) -> dict[str, np.ndarray]:
    return load_npz(reference_dir / "musetalk" / "golden_audio_windows.npz")


@pytest.fixture(scope="module")
def pipeline(reference_dir: Path) -> dict[str, np.ndarray]:
    return load_npz(reference_dir / "musetalk" / "golden_audio_pipeline.npz")


@pytest.mark.parametrize("case", ["2s", "2p5s"])
def test_head_windows_exact(windows: dict[str, np.ndarray], case: str) -> None:
    feats = torch.from_numpy(windows[f"{case}_features"].astype(np.float32))
    idx = A.head_window_indices(int(windows[f"{case}_num_samples_16k"]), 25)
    np.testing.assert_array_equal(idx, windows[f"{case}_current_indices"])
    chunks = A.gather_windows(feats, idx).numpy()
    np.testing.assert_array_equal(chunks, windows[f"{case}_current_chunks"].astype(np.float32))


@pytest.mark.parametrize("case", ["2s", "2p5s"])
def test_legacy_windows_exact(windows: dict[str, np.ndarray], case: str) -> None:
    feats = torch.from_numpy(windows[f"{case}_features"].astype(np.float32))
    idx = A.legacy_window_indices(feats.shape[0], 25)
    np.testing.assert_array_equal(idx, windows[f"{case}_v10_legacy_indices"])
    chunks = A.gather_windows(feats, idx).numpy()
    np.testing.assert_array_equal(chunks, windows[f"{case}_v10_legacy_chunks"].astype(np.float32))


def test_frame_count_rules() -> None:
    # HEAD truncates fps to int (29.97 -> 29) and takes floor(N / 16000 * fps) frames
    assert len(A.head_window_indices(32000, 29.97)) == 58
    assert len(A.head_window_indices(32000, 25)) == 50
    # legacy yields L/2 + 2 chunks at 25 fps
    assert len(A.legacy_window_indices(100, 25)) == 52


@pytest.fixture(scope="module", params=["hf_folder", "openai_tiny_pt"])
def encoder(request: pytest.FixtureRequest, reference_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    manifest = reference_dir / "musetalk" / "manifest_whisper_tiny_encoder.json"
    d = tmp_path_factory.mktemp("whisper")
    if request.param == "hf_folder":
        return load_whisper_encoder(write_whisper_hf(d / "whisper", manifest))
    return load_whisper_encoder(write_whisper_openai(d / "whisper" / "tiny.pt", manifest))


def test_head_pipeline_golden(encoder, pipeline: dict[str, np.ndarray]) -> None:
    wave = torch.from_numpy(pipeline["pcm_int16"].astype(np.float32) / 32768)
    mel = A.head_mel_segments(wave)[0]
    np.testing.assert_allclose(mel.numpy(), pipeline["current_mel"], atol=1e-4, rtol=0)
    hidden = A.head_hidden_states(encoder, wave)
    assert hidden.shape == (100, 5, 384)
    np.testing.assert_allclose(hidden.numpy(), pipeline["current_hidden_first100"], atol=1e-4, rtol=0)
    chunks = A.gather_windows(hidden, A.head_window_indices(wave.numel(), int(pipeline["fps"])))
    assert chunks.shape[0] == int(pipeline["current_num_chunks"])
    sel = chunks[pipeline["current_chunk_frames"]].numpy()
    np.testing.assert_allclose(sel, pipeline["current_chunks_sel"], atol=1e-4, rtol=0)


def test_legacy_pipeline_golden(encoder, pipeline: dict[str, np.ndarray]) -> None:
    wave = torch.from_numpy(pipeline["pcm_int16"].astype(np.float32) / 32768)
    np.testing.assert_allclose(A.log_mel(wave).numpy(), pipeline["legacy_mel"], atol=1e-4, rtol=0)
    feats = A.legacy_hidden_states(encoder, wave)
    np.testing.assert_allclose(feats.numpy(), pipeline["legacy_features"], atol=1e-4, rtol=0)
    chunks = A.gather_windows(feats, A.legacy_window_indices(feats.shape[0], int(pipeline["fps"])))
    assert chunks.shape[0] == int(pipeline["legacy_num_chunks"])
    sel = chunks[pipeline["legacy_chunk_frames"]].numpy()
    np.testing.assert_allclose(sel, pipeline["legacy_chunks_sel"], atol=1e-4, rtol=0)


def test_real_speech_windows(encoder, speech_wav: Path) -> None:
    """Real LibriVox speech: frame count by the HEAD rule, windows differ over time, no NaN."""
    clip = load_audio(speech_wav, sample_rate=16000)
    n = clip.num_samples
    hidden = A.head_hidden_states(encoder, clip.samples[0])
    assert hidden.shape[0] == int(n / 16000 * 50)
    chunks = A.gather_windows(hidden, A.head_window_indices(n, 25))
    assert chunks.shape == (int(n / 16000 * 25), 50, 384)
    assert torch.isfinite(chunks).all()
    # first window starts with 4 zero-padded whisper frames (20 tokens), the middle ones are full
    assert chunks[0, :20].abs().max() == 0
    mid = chunks.shape[0] // 2
    assert chunks[mid].abs().min(dim=-1).values.max() > 0
    assert not torch.equal(chunks[mid], chunks[mid + 1])
