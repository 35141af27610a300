"""SyncNet input preparation: syncnet_python's face crop, 25 fps mapping, 16 kHz PCM, real video end to end."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.metrics import SyncNetOptions, SyncNetScorer, audio_to_pcm16, crop_faces_from_track
from lipsynckit.metrics.syncnet import jpeg_roundtrip_bgr, resample_frames_to_25fps
from lipsynckit.testing import deterministic_state_dict, load_manifest
from lipsynckit.types import AudioClip, Face, FaceTrack


def _official_crop(frame: np.ndarray, box: np.ndarray, cs: float = 0.4) -> np.ndarray:
    """run_pipeline.py's crop written out for one frame with a fixed box (test oracle)."""
    bs = max(box[2] - box[0], box[3] - box[1]) / 2
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    bsi = int(bs * (1 + 2 * cs))
    big = np.full((frame.shape[0] + 2 * bsi, frame.shape[1] + 2 * bsi, 3), 110, np.uint8)
    big[bsi : bsi + frame.shape[0], bsi : bsi + frame.shape[1]] = frame
    my, mx = cy + bsi, cx + bsi
    face = big[int(my - bs) : int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs))]
    return cv2.resize(face, (224, 224))


def test_crop_matches_run_pipeline_formula_and_pads_grey() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (14, 200, 180, 3), dtype=np.uint8)
    box = np.array([50.0, 60.0, 110.0, 120.0])
    track = FaceTrack([Face(box) for _ in range(14)])
    crops = crop_faces_from_track(frames, track)
    assert crops.shape == (14, 224, 224, 3) and crops.dtype == np.uint8
    for i in (0, 7, 13):
        np.testing.assert_array_equal(crops[i], _official_crop(frames[i], box))
    # near the edge the crop runs off the frame into grey 110
    edge = np.array([0.0, 120.0, 60.0, 200.0])
    crops = crop_faces_from_track(frames, FaceTrack([Face(edge) for _ in range(14)]))
    np.testing.assert_array_equal(crops[3], _official_crop(frames[3], edge))
    assert (crops[3][-5:, :5] == 110).all()


def test_crop_interpolates_missing_faces() -> None:
    frames = np.zeros((15, 120, 120, 3), np.uint8)
    faces: list[Face | None] = [
        Face(np.array([20.0, 20.0, 60.0, 60.0])) if i % 3 == 0 else None for i in range(15)
    ]
    faces[-1] = Face(np.array([20.0, 20.0, 60.0, 60.0]))
    crops = crop_faces_from_track(frames, FaceTrack(faces), SyncNetOptions(smooth_kernel=1))
    assert crops.shape == (15, 224, 224, 3)
    with pytest.raises(Exception, match="no face"):
        crop_faces_from_track(frames, FaceTrack([None] * 15))


def test_frame_rate_mapping() -> None:
    np.testing.assert_array_equal(resample_frames_to_25fps(10, 50.0), [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(resample_frames_to_25fps(6, 30.0), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(resample_frames_to_25fps(4, 25.0), [0, 1, 2, 3])
    idx = resample_frames_to_25fps(120, 30000 / 1001)
    assert len(idx) == 100 and idx[-1] == 118 and np.all(np.diff(idx) >= 1)


def test_pcm16_from_other_rates_and_channels() -> None:
    t48 = np.arange(48000) / 48000
    t16 = np.arange(16000) / 16000
    stereo = torch.from_numpy(np.stack([np.sin(2 * np.pi * 440 * t48)] * 2).astype(np.float32) * 0.5)
    pcm = audio_to_pcm16(AudioClip(stereo, 48000))
    assert pcm.dtype == np.int16 and len(pcm) == 16000
    expected = np.sin(2 * np.pi * 440 * t16) * 0.5 * 32768
    assert np.abs(pcm[200:-200] - expected[200:-200]).max() < 0.01 * 32768
    # full scale clips instead of wrapping around
    assert audio_to_pcm16(AudioClip(torch.tensor([[1.0, -1.0, 0.5]]), 16000)).tolist() == [
        32767,
        -32768,
        16384,
    ]


@pytest.fixture(scope="module")
def scorer(reference_dir: Path) -> SyncNetScorer:
    man = load_manifest(reference_dir / "wav2lip" / "manifest_syncnet_eval.json")
    return SyncNetScorer.from_state_dict(deterministic_state_dict(man))


def test_real_video_with_face_track_end_to_end(
    carphone_mp4: Path, speech_wav: Path, scorer: SyncNetScorer
) -> None:
    """A real talking face at 29.97 fps and real speech: crop from a Haar track, map to 25 fps, score.

    The weights are deterministic (not the released ones), so only the bookkeeping is checked.
    """
    with av.open(str(carphone_mp4)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    cascade = cv2.CascadeClassifier(
        str(Path(cv2.__file__).parent / "data" / "haarcascade_frontalface_default.xml")
    )
    faces: list[Face | None] = []
    for f in frames:
        found = cascade.detectMultiScale(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), 1.1, 4, minSize=(30, 30))
        if len(found):
            x, y, w, h = max(found, key=lambda b: b[2] * b[3])
            faces.append(Face(np.array([x, y, x + w, y + h], np.float32)))
        else:
            faces.append(None)
    track = FaceTrack(faces, detector="opencv-haar")
    assert track.num_found > 60
    wav, sr = sf.read(str(speech_wav), dtype="float32")
    audio = AudioClip(torch.from_numpy(wav[: int(2.4 * sr)]), sr)
    r = scorer.score_video(frames, audio, fps=30000 / 1001, face_track=track)
    # 120 frames at 29.97 fps -> 100 at 25 fps; 2.4 s of audio -> 60 frames; one window fewer than fit
    assert r.num_windows == min(100, int(2.4 * 16000) // 640) - 5 == 55
    assert r.dists_array().shape == (55, 31) and np.isfinite(r.dists_array()).all()
    assert -15 <= r.av_offset <= 15 and r.lse_c >= 0
    assert r.lse_d == pytest.approx(min(r.mean_dist))
    # whole-frame mode (LRS protocol; 176x144 resized to 224x224): a different input, a different score
    whole = scorer.score_video(frames[:36], audio.slice(0.0, 1.2), fps=30000 / 1001)
    assert whole.num_windows == 30 - 5
    assert abs(whole.mean_dist[15] - r.mean_dist[15]) > 1e-3
    # the JPEG round trip of the official scripts changes the input a little, and so the score
    lossless = SyncNetScorer(scorer.net, SyncNetOptions(jpeg_roundtrip=False))
    clean = lossless.score_video(frames[:36], audio.slice(0.0, 1.2), fps=30000 / 1001)
    assert clean.num_windows == 25 and clean.dists != whole.dists


def test_jpeg_roundtrip_on_real_frames(carphone_mp4: Path) -> None:
    with av.open(str(carphone_mp4)) as c:
        frames = np.stack(
            [f.to_ndarray(format="rgb24") for f, _ in zip(c.decode(video=0), range(20), strict=False)]
        )
    bgr = jpeg_roundtrip_bgr(frames)
    assert bgr.shape == frames.shape and bgr.dtype == np.uint8
    rgb16 = frames.astype(np.int16)
    err = np.abs(bgr[..., ::-1].astype(np.int16) - rgb16).mean(axis=(1, 2, 3))
    assert (err > 0.2).all() and (err < 15).all()  # lossy, but the same picture
    swapped = np.abs(bgr.astype(np.int16) - rgb16).mean()
    assert swapped > 2 * err.mean()  # channels come back in OpenCV's BGR order
