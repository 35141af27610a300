"""Issue 12: streaming audio features equal (Wav2Lip, resampling) or stay within a stated tolerance of
(viseme) the file path's, on real speech pushed in 20-40 ms chunks; LatentSync is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from stream_helpers import chunks, speech

import lipsynckit as lsk
from lipsynckit.errors import AudioError
from lipsynckit.media.resample import resample
from lipsynckit.streaming import StreamingUnsupportedError
from lipsynckit.streaming.audio import StreamResampler, as_pcm
from lipsynckit.types import AudioClip
from lipsynckit_wav2lip.audio import mel_chunks, melspectrogram
from lipsynckit_wav2lip.streaming import Wav2LipStreamFeatures


def _stream_rows(feats, x: np.ndarray, sr: int, n_frames: int, seed: int = 0) -> np.ndarray:  # noqa: ANN001
    """Push ``x`` in 20-40 ms chunks, taking each row as soon as its look-ahead is in; then finish."""
    rows: list[np.ndarray] = []
    have = 0
    for c in chunks(x, sr, seed=seed):
        feats.push(c)
        have += len(c)
        while len(rows) < n_frames and feats.needed_samples(len(rows)) <= have:
            rows.append(feats.row(len(rows)).numpy())
    feats.finish()
    while len(rows) < n_frames:
        rows.append(feats.row(len(rows)).numpy())
    return np.stack(rows)


def test_wav2lip_stream_windows_equal_the_file_windows(speech_wavs: list[Path]) -> None:
    for k, path in enumerate(speech_wavs[:3]):
        x, sr = speech(path)
        ref = mel_chunks(melspectrogram(x), 25.0)  # the file path (golden-tested against librosa 0.7)
        n = int(np.ceil(len(x) / 640))
        got = _stream_rows(Wav2LipStreamFeatures(25.0), x, sr, n, seed=k)
        assert got.shape == (n, 1, 80, 16) and n >= len(ref)
        # every frame the file has, to float32 rounding of the mel product (the columns are computed
        # in blocks of a different size): 1e-5 on values in [-4, 4]
        np.testing.assert_allclose(got[: len(ref), 0], ref, atol=1e-5, rtol=0)
        # frames past the file's last one reuse its right-aligned tail window
        np.testing.assert_array_equal(
            got[len(ref) :, 0], np.broadcast_to(got[len(ref) - 1, 0], got[len(ref) :, 0].shape)
        )


def test_wav2lip_look_ahead_is_the_16_mel_window(speech_wav: Path) -> None:
    f = Wav2LipStreamFeatures(25.0)
    # frame j's window starts at column int(3.2 j): it needs ~170 ms of audio past the frame's end
    ahead = [(f.needed_samples(j) - (j + 1) * 640) / 16000 for j in range(10, 60)]
    assert 0.15 <= min(ahead) and max(ahead) <= 0.18
    x, sr = speech(speech_wav, 1.0)
    f.push(x[: f.needed_samples(3) - 1])
    with pytest.raises(lsk.LipSyncError, match="before its audio arrived"):
        f.row(3)


def test_stream_resampler_equals_whole_file_resampling(speech_wav: Path) -> None:
    """soxr's stream resampler, fed 20-40 ms chunks, gives exactly soxr's whole-signal resampling."""
    import soxr

    x16, _ = speech(speech_wav, 2.0)
    for rate in (24000, 44100, 48000, 8000):  # the speech at another rate, streamed back to 16 kHz
        x = resample(torch.from_numpy(x16)[None], 16000, rate)[0].numpy()
        whole = soxr.resample(x, rate, 16000, quality="HQ").astype(np.float32)
        r = StreamResampler(rate, 16000)
        got = np.concatenate([r.push(c) for c in chunks(x, rate, seed=7)] + [r.finish()])
        assert got.shape == whole.shape == (len(x16),)
        np.testing.assert_array_equal(got, whole)
        if rate > 16000:  # and a faithful one: the round trip through a higher rate keeps the speech
            err = got[800:-800] - x16[800:-800]
            assert np.sqrt(np.mean(err**2)) < 0.05 * np.sqrt(np.mean(x16**2))


def test_pushed_audio_is_checked() -> None:
    with pytest.raises(AudioError, match="dtype int32"):
        as_pcm(np.zeros(10, dtype=np.int32), 16000)
    with pytest.raises(AudioError, match="NaN"):
        as_pcm(np.array([0.0, np.nan], dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="whole number"):
        as_pcm(b"\x00\x01\x02", 16000)
    with pytest.raises(AudioError, match="sample_rate"):
        as_pcm(np.zeros(10, dtype=np.float32), 0)
    assert as_pcm(np.zeros((10, 2), dtype=np.float64), 16000).dtype == np.float32


def test_viseme_stream_features_stay_within_tolerance_of_the_file(speech_wavs: list[Path]) -> None:
    """The file path normalises by the whole clip's noise floor and speech peak; a stream can only use
    the last 3 s and the next ~0.2 s. Stated tolerance, per clip: mean |opening difference| <= 0.07
    (openings are in [0, 1]), voiced/unvoiced agreeing on >= 88 % of frames, and closer to the file
    than the file itself shifted by two frames (so a misaligned stream fails)."""
    model = lsk.load_model("viseme")
    for k, path in enumerate(speech_wavs[:4]):
        x, sr = speech(path)
        ref = model.audio_features(AudioClip(torch.from_numpy(x), sr), 25.0).numpy()
        got = _stream_rows(model.stream_features(25.0), x, sr, len(ref), seed=k)
        err = np.abs(got[:, 0] - ref[:, 0]).mean()
        shifted = np.abs(ref[2:, 0] - ref[:-2, 0]).mean()
        agree = ((got[:, 2] > 0.5) == (ref[:, 2] > 0.5)).mean()
        assert err <= 0.07, (path.name, err)
        assert agree >= 0.88, (path.name, agree)
        assert err < shifted, (path.name, err, shifted)


def test_latentsync_is_refused_before_it_loads(astronaut_png: Path) -> None:
    with pytest.raises(StreamingUnsupportedError) as info:
        lsk.stream(astronaut_png, model="latentsync", weights="/nonexistent")
    msg = str(info.value)
    assert "16-frame chunks" in msg and "20 DDIM steps" in msg and "lsk.sync()" in msg
