"""Weight-free metrics on real speech and a real photo: they must tell good lip sync from bad."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.errors import VideoError
from lipsynckit.metrics.weightfree import (
    WeightFreeMetrics,
    mouth_box_from_face,
    speech_envelope,
    ssim,
    weightfree_metrics,
)
from lipsynckit.types import AudioClip

FPS = 25.0


class Clip:
    """Grace Hopper (half size) with a mouth that opens with the loudness of real speech."""

    def __init__(self, photo: Path, speech: Path) -> None:
        bgr = cv2.imread(str(photo))
        assert bgr is not None, photo
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self.img = cv2.resize(img, (256, 300), interpolation=cv2.INTER_AREA)
        cascade = cv2.CascadeClassifier(
            str(Path(cv2.__file__).parent / "data" / "haarcascade_frontalface_default.xml")
        )
        found = cascade.detectMultiScale(cv2.cvtColor(self.img, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(60, 60))
        assert len(found) == 1, found
        x, y, w, h = (int(v) for v in found[0])
        self.face = np.array([x, y, x + w, y + h], dtype=np.float64)
        self.mouth = mouth_box_from_face(self.face)
        wav, sr = sf.read(str(speech), dtype="float32")
        self.audio = AudioClip(torch.from_numpy(wav), sr)
        self.n = int(len(wav) / sr * FPS)
        env = speech_envelope(self.audio, FPS, self.n)
        self.openness = np.clip(env / np.percentile(env, 95), 0.0, 1.0)

    def render(self, openness: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Darken an ellipse (the open mouth) whose height follows ``openness``; ``rng`` adds per-frame wobble."""
        x1, y1, x2, y2 = self.mouth
        out = np.empty((len(openness), *self.img.shape), dtype=np.uint8)
        for t, o in enumerate(openness):
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            if rng is not None:
                cx, cy = cx + rng.uniform(-3, 3), cy + rng.uniform(-3, 3)
            mask = np.zeros(self.img.shape[:2], np.float32)
            axes = (int(round((x2 - x1) * 0.35)), int(round(o * (y2 - y1) * 0.4)))
            if axes[1] > 0:
                cv2.ellipse(mask, (int(round(cx)), int(round(cy))), axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
            m = mask[..., None]
            out[t] = (self.img * (1 - m) + np.array([60.0, 20.0, 30.0]) * m).astype(np.uint8)
        return out

    def delayed_audio(self, frames: int) -> AudioClip:
        """The same speech starting ``frames`` video frames later (same length)."""
        sr = self.audio.sample_rate
        x = self.audio.samples[0]
        return AudioClip(torch.cat([torch.zeros(int(round(frames * sr / FPS))), x])[: len(x)], sr)


@pytest.fixture(scope="module")
def clip(grace_hopper_jpg: Path, speech_wav: Path) -> Clip:
    return Clip(grace_hopper_jpg, speech_wav)


@pytest.fixture(scope="module")
def synced(clip: Clip) -> np.ndarray:
    return clip.render(clip.openness)


@pytest.fixture(scope="module")
def synced_metrics(clip: Clip, synced: np.ndarray) -> WeightFreeMetrics:
    return weightfree_metrics(clip.img, synced, clip.audio, FPS, clip.mouth)


def test_audio_mouth_agreement_orders_synced_shifted_still(
    clip: Clip, synced: np.ndarray, synced_metrics: WeightFreeMetrics
) -> None:
    good = synced_metrics
    late = weightfree_metrics(clip.img, synced, clip.delayed_audio(10), FPS, clip.mouth)
    still = weightfree_metrics(clip.img, np.repeat(clip.img[None], clip.n, 0), clip.audio, FPS, clip.mouth)

    assert good.num_frames == clip.n > 150
    assert good.av_correlation is not None and late.av_correlation is not None
    assert good.av_correlation > 0.2
    assert good.av_correlation > late.av_correlation + 0.2
    # the lag search finds the shift: audio 10 frames late = video leads = negative offset
    assert good.av_best_lag_frames is not None and abs(good.av_best_lag_frames) <= 1
    assert late.av_best_lag_frames is not None and abs(late.av_best_lag_frames + 10) <= 1
    # the mouth rests in the silences only when in sync
    assert good.silent_frames >= 5
    assert good.silence_motion_ratio is not None and late.silence_motion_ratio is not None
    assert good.silence_motion_ratio < 0.75 * late.silence_motion_ratio
    # a still mouth: no motion, so no agreement at all
    assert still.mouth_motion == 0.0 and good.mouth_motion > 1.0
    assert still.av_correlation is None and still.silence_motion_ratio is None


def test_identity_outside_mouth(clip: Clip, synced: np.ndarray, synced_metrics: WeightFreeMetrics) -> None:
    assert synced_metrics.identity_psnr == 100.0 and synced_metrics.identity_ssim == pytest.approx(1.0)
    # a generator that also repaints the lower face (blur outside the mouth box) loses identity
    x1, y1, x2, y2 = clip.face.astype(int)
    blurred = synced.copy()
    for f in blurred:
        f[y1:y2, x1:x2] = cv2.GaussianBlur(f[y1:y2, x1:x2], (0, 0), 2.0)
    worse = weightfree_metrics(clip.img, blurred, clip.audio, FPS, clip.mouth)
    assert 20.0 < worse.identity_psnr < 45.0
    assert worse.identity_ssim < 0.97


def test_temporal_jitter_and_flicker(
    clip: Clip, synced: np.ndarray, synced_metrics: WeightFreeMetrics
) -> None:
    shaky = clip.render(clip.openness, rng=np.random.default_rng(0))
    m = weightfree_metrics(clip.img, shaky, clip.audio, FPS, clip.mouth)
    assert synced_metrics.temporal_jitter_source == 0.0  # a still source
    assert m.temporal_jitter > 1.2 * synced_metrics.temporal_jitter
    assert m.temporal_hf_ratio is not None and synced_metrics.temporal_hf_ratio is not None
    assert m.temporal_hf_ratio > synced_metrics.temporal_hf_ratio + 0.05


def test_seam_visibility_hard_paste_vs_clean(clip: Clip, synced: np.ndarray) -> None:
    paste = clip.face.astype(int) + np.array([10, 60, -10, 0])  # lower face box, away from the frame edge
    x1, y1, x2, y2 = paste
    clean = weightfree_metrics(clip.img, synced, clip.audio, FPS, clip.mouth, paste_boxes=paste)
    hard = synced.copy()
    hard[:, y1:y2, x1:x2] = np.clip(hard[:, y1:y2, x1:x2].astype(np.int16) + 25, 0, 255).astype(np.uint8)
    seamy = weightfree_metrics(clip.img, hard, clip.audio, FPS, clip.mouth, paste_boxes=paste)
    assert (
        clean.seam_ratio is not None and clean.seam_ratio_source is not None and seamy.seam_ratio is not None
    )
    assert clean.seam_ratio == pytest.approx(clean.seam_ratio_source, rel=0.05)
    assert seamy.seam_ratio > 1.5 * clean.seam_ratio
    assert seamy.seam_border_gradient > clean.seam_border_gradient + 10


def test_ssim_matches_skimage_on_real_photo(clip: Clip) -> None:
    from skimage.metrics import structural_similarity

    grey = cv2.cvtColor(clip.img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    noisy = np.clip(grey + np.random.default_rng(1).normal(0, 12, grey.shape), 0, 255)
    ref = structural_similarity(
        grey, noisy, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.0
    )
    got = ssim(grey, noisy)
    assert 0.2 < ref < 0.95
    assert got == pytest.approx(ref, abs=1e-9)


def test_bad_inputs_are_clear_errors(clip: Clip, synced: np.ndarray) -> None:
    with pytest.raises(VideoError, match="source frames"):
        weightfree_metrics(clip.img[:100], synced, clip.audio, FPS, clip.mouth)
    with pytest.raises(VideoError, match="mouth boxes"):
        weightfree_metrics(clip.img, synced, clip.audio, FPS, np.zeros((3, 4)))


def test_identity_ssim_equals_full_frame_computation(clip: Clip, synced: np.ndarray) -> None:
    """The change-bounded SSIM shortcut gives the same number as filtering whole frames."""
    from lipsynckit.metrics.weightfree import ssim_map

    x1, y1, x2, y2 = clip.face.astype(int)
    gen = synced[:12].copy()
    gen[:, y1:y2, x1:x2] = cv2.GaussianBlur(gen[0, y1:y2, x1:x2], (0, 0), 1.5)[None]
    got = weightfree_metrics(clip.img, gen, clip.audio.slice(0.0, 12 / FPS), FPS, clip.mouth)

    def grey(f: np.ndarray) -> np.ndarray:
        f = f.astype(np.float32)
        return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]

    h, w = clip.img.shape[:2]
    mx1, my1, mx2, my2 = np.rint(clip.mouth).astype(int)
    far = np.zeros((h, w), bool)
    far[5 : h - 5, 5 : w - 5] = True
    far[my1 - 5 : my2 + 5, mx1 - 5 : mx2 + 5] = False
    expected = np.mean([ssim_map(grey(g), grey(clip.img))[far].mean() for g in gen])
    assert got.identity_ssim == pytest.approx(expected, abs=1e-12)
    assert got.identity_ssim < 0.99


def test_builtin_viseme_output_is_told_apart_from_shifted_and_still(clip: Clip) -> None:
    """The same ordering on what the built-in ``viseme`` model makes of the photo and the speech."""
    import lipsynckit as lsk
    from lipsynckit.api import sync_frames
    from lipsynckit.types import Face, FaceTrack

    model = lsk.load_model("viseme")
    out = sync_frames(model, clip.img, clip.audio, fps=FPS, track=FaceTrack([Face(clip.face)]))
    assert out.shape[1:] == clip.img.shape and abs(len(out) - clip.n) <= 1
    good = weightfree_metrics(clip.img, out, clip.audio, FPS, clip.mouth)
    late = weightfree_metrics(clip.img, out, clip.delayed_audio(10), FPS, clip.mouth)
    assert good.av_correlation is not None and late.av_correlation is not None
    assert good.av_correlation > late.av_correlation + 0.1
    assert good.av_best_lag_frames is not None and abs(good.av_best_lag_frames) <= 1
    assert late.av_best_lag_frames is not None and abs(late.av_best_lag_frames + 10) <= 1
    assert good.silence_motion_ratio is not None and late.silence_motion_ratio is not None
    assert good.silence_motion_ratio < late.silence_motion_ratio
    # it repaints the lower face: identity drops a little, but stays high
    assert 25.0 < good.identity_psnr < 100.0 and 0.9 < good.identity_ssim < 1.0
