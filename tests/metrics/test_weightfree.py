"""Weight-free metrics on real speech and real photos: they must tell good lip sync from bad.

The synced references are built independently of the metric: the mouth opening comes from the
built-in ``viseme`` model's own audio analysis (its output video, or its per-frame opening feature),
never from the metric's envelopes; the metric reads the mouth back from the pixels.
"""

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
    audio_mouth_agreement,
    mouth_box_from_face,
    mouth_openness,
    mouth_patches,
    speech_band_envelope,
    ssim,
    weightfree_metrics,
)
from lipsynckit.types import AudioClip

FPS = 25.0
SHIFTS = [s * k for k in range(2, 11) for s in (1, -1)]  # audio shifts that must score below sync


def load_photo(photo: Path) -> tuple[np.ndarray, np.ndarray]:
    """Grace Hopper at half size and her Haar face box (x1, y1, x2, y2)."""
    bgr = cv2.imread(str(photo))
    assert bgr is not None, photo
    img = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (256, 300), interpolation=cv2.INTER_AREA)
    cascade = cv2.CascadeClassifier(
        str(Path(cv2.__file__).parent / "data" / "haarcascade_frontalface_default.xml")
    )
    found = cascade.detectMultiScale(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(60, 60))
    assert len(found) == 1, found
    x, y, w, h = (int(v) for v in found[0])
    return img, np.array([x, y, x + w, y + h], dtype=np.float64)


def load_speech(path: Path) -> AudioClip:
    wav, sr = sf.read(str(path), dtype="float32")
    return AudioClip(torch.from_numpy(wav), sr)


def shifted_audio(audio: AudioClip, frames: int) -> AudioClip:
    """The same speech ``frames`` video frames later (negative: earlier), same length, zero-filled."""
    sr = audio.sample_rate
    x = audio.samples[0]
    s = int(round(abs(frames) * sr / FPS))
    z = torch.zeros(s)
    y = torch.cat([z, x])[: len(x)] if frames >= 0 else torch.cat([x[s:], z])
    return AudioClip(y, sr)


def viseme_output(img: np.ndarray, face: np.ndarray, audio: AudioClip) -> np.ndarray:
    import lipsynckit as lsk
    from lipsynckit.api import sync_frames
    from lipsynckit.types import Face, FaceTrack

    return sync_frames(lsk.load_model("viseme"), img, audio, fps=FPS, track=FaceTrack([Face(face)]))


class Clip:
    """Grace Hopper (half size) with a mouth that opens with the ``viseme`` model's opening of real speech."""

    def __init__(self, photo: Path, speech: Path) -> None:
        import lipsynckit as lsk

        self.img, self.face = load_photo(photo)
        self.mouth = mouth_box_from_face(self.face)
        self.audio = load_speech(speech)
        self.n = int(self.audio.num_samples / self.audio.sample_rate * FPS)
        opening = lsk.load_model("viseme").audio_features(self.audio, FPS)[:, 0].numpy()
        self.openness = np.clip(opening[: self.n] / max(float(opening.max()), 1e-6), 0.0, 1.0)

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


@pytest.fixture(scope="module")
def clip(grace_hopper_jpg: Path, speech_wav: Path) -> Clip:
    return Clip(grace_hopper_jpg, speech_wav)


@pytest.fixture(scope="module")
def synced(clip: Clip) -> np.ndarray:
    return clip.render(clip.openness)


@pytest.fixture(scope="module")
def synced_metrics(clip: Clip, synced: np.ndarray) -> WeightFreeMetrics:
    return weightfree_metrics(clip.img, synced, clip.audio, FPS, clip.mouth)


def test_sync_metric_holds_on_every_librivox_clip(grace_hopper_jpg: Path, speech_wavs: list[Path]) -> None:
    """On every sentence of the package: the viseme model's output video (its own audio analysis, not
    the metric's) is read back from the pixels; the lag search finds the true lag within one frame,
    for the synced clip and for every audio shift of 2-10 frames either way, and the synced clip
    scores above every such shift."""
    assert len(speech_wavs) == 5
    img, face = load_photo(grace_hopper_jpg)
    mouth = mouth_box_from_face(face)
    failures = []
    for wav in speech_wavs:
        audio = load_speech(wav)
        out = viseme_output(img, face, audio)
        openness = mouth_openness(mouth_patches(out, mouth))
        synced = audio_mouth_agreement(openness, speech_band_envelope(audio, FPS, len(out)))
        assert synced.at_zero is not None and synced.best_lag is not None and synced.margin is not None
        if abs(synced.best_lag) > 1:
            failures.append(f"{wav.name}: synced clip picked lag {synced.best_lag}")
        if synced.margin < 0.2:
            failures.append(f"{wav.name}: ambiguous lag (margin {synced.margin:.3f})")
        for k in SHIFTS:
            shifted = audio_mouth_agreement(
                openness, speech_band_envelope(shifted_audio(audio, k), FPS, len(out))
            )
            assert shifted.best_lag is not None and shifted.at_zero is not None
            # audio k frames late = the video leads = offset -k (SyncNet's sign)
            if abs(shifted.best_lag + k) > 1:
                failures.append(f"{wav.name}: audio shifted {k:+d}, picked lag {shifted.best_lag}")
            if shifted.at_zero >= synced.at_zero - 0.05:
                failures.append(
                    f"{wav.name}: shift {k:+d} scores {shifted.at_zero:.3f} >= synced {synced.at_zero:.3f}"
                )
    assert not failures, "\n".join(failures)


def test_still_mouth_agrees_with_nothing(clip: Clip) -> None:
    still = weightfree_metrics(clip.img, np.repeat(clip.img[None], clip.n, 0), clip.audio, FPS, clip.mouth)
    assert still.mouth_motion == 0.0
    assert still.av_correlation is None and still.av_best_lag_frames is None
    assert still.av_lag_margin is None and still.silence_motion_ratio is None


def test_audio_mouth_agreement_orders_synced_and_late(
    clip: Clip, synced: np.ndarray, synced_metrics: WeightFreeMetrics
) -> None:
    """The whole metric on a drawn mouth that follows the viseme opening: lag, ordering, silences."""
    good = synced_metrics
    late = weightfree_metrics(clip.img, synced, shifted_audio(clip.audio, 10), FPS, clip.mouth)
    assert good.num_frames == clip.n > 150
    assert good.av_correlation is not None and late.av_correlation is not None
    assert good.av_correlation > 0.5
    assert good.av_correlation > late.av_correlation + 0.3
    assert good.av_best_lag_frames is not None and abs(good.av_best_lag_frames) <= 1
    assert late.av_best_lag_frames is not None and abs(late.av_best_lag_frames + 10) <= 1
    assert good.av_lag_margin is not None and good.av_lag_margin > 0.2
    # the mouth rests in the silences only when in sync
    assert good.silent_frames >= 5
    assert good.silence_motion_ratio is not None and late.silence_motion_ratio is not None
    assert good.silence_motion_ratio < 0.75 * late.silence_motion_ratio
    assert good.mouth_motion > 1.0


def test_band_envelope_has_no_delay_and_ignores_level(speech_wav: Path) -> None:
    """Zero-phase filtering: delaying the audio by whole frames delays the envelope by exactly that;
    a quieter recording gives the same envelope (it is relative to the clip's own loud frames)."""
    audio = load_speech(speech_wav)
    n = int(audio.num_samples / audio.sample_rate * FPS)
    env = speech_band_envelope(audio, FPS, n)
    late = speech_band_envelope(shifted_audio(audio, 3), FPS, n)
    quiet = speech_band_envelope(AudioClip(audio.samples[0] * 0.05, audio.sample_rate), FPS, n)
    assert env.max() > -3.0 and env.min() == pytest.approx(-40.0)  # speech peaks and floored pauses
    np.testing.assert_allclose(late[3 + 5 : n - 5], env[5 : n - 8], atol=0.5)
    np.testing.assert_allclose(quiet, env, atol=1e-6)


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


def test_builtin_viseme_output_is_told_apart_from_shifted(clip: Clip) -> None:
    """The whole metric on what the built-in ``viseme`` model makes of the photo and the speech."""
    out = viseme_output(clip.img, clip.face, clip.audio)
    assert out.shape[1:] == clip.img.shape and abs(len(out) - clip.n) <= 1
    good = weightfree_metrics(clip.img, out, clip.audio, FPS, clip.mouth)
    late = weightfree_metrics(clip.img, out, shifted_audio(clip.audio, 10), FPS, clip.mouth)
    early = weightfree_metrics(clip.img, out, shifted_audio(clip.audio, -4), FPS, clip.mouth)
    assert good.av_correlation is not None and late.av_correlation is not None
    assert early.av_correlation is not None
    assert good.av_correlation > max(late.av_correlation, early.av_correlation) + 0.2
    assert good.av_best_lag_frames is not None and abs(good.av_best_lag_frames) <= 1
    assert late.av_best_lag_frames is not None and abs(late.av_best_lag_frames + 10) <= 1
    assert early.av_best_lag_frames is not None and abs(early.av_best_lag_frames - 4) <= 1
    assert good.silence_motion_ratio is not None and late.silence_motion_ratio is not None
    assert good.silence_motion_ratio < late.silence_motion_ratio
    # it repaints the lower face: identity drops a little, but stays high
    assert 25.0 < good.identity_psnr < 100.0 and 0.9 < good.identity_ssim < 1.0
