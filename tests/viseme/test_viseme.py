"""The built-in ``viseme`` model on real speech (LibriVox) and real photos (Grace Hopper, astronaut)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.errors import LipSyncError, NoFaceError
from lipsynckit.model import LipSyncModel
from lipsynckit.types import AudioClip, Face, ModelBatch, PreparedFace, WorkItem
from lipsynckit.viseme import VisemeOptions, plugin

log = logging.getLogger(__name__)
FPS = 25.0
SILENCE_S = 0.5


def _rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _haar_boxes(rgb: np.ndarray, min_size: int = 60, neighbours: int = 5) -> list[tuple[int, int, int, int]]:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = cascade.detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=neighbours, minSize=(min_size, min_size)
    )
    return [tuple(int(v) for v in r) for r in found]  # type: ignore[misc]


def _haar_face(rgb: np.ndarray) -> Face:
    """The largest frontal face found by OpenCV's Haar cascade (independent of the model)."""
    found = _haar_boxes(rgb)
    assert len(found) >= 1, "the Haar cascade must find the face in this photo"
    x, y, w, h = max(found, key=lambda r: r[2] * r[3])
    return Face(np.array([x, y, x + w, y + h], dtype=np.float32))


def _render(model: LipSyncModel, frame: np.ndarray, pf: PreparedFace, feat: torch.Tensor) -> np.ndarray:
    gen = model.generate(ModelBatch([WorkItem(0, 0, pf, feat)]))[0]
    assert gen.shape == pf.crop.shape and gen.dtype == np.uint8
    return model.composite(frame, pf, gen)


@pytest.fixture(scope="module")
def model() -> LipSyncModel:
    return plugin.load()


@pytest.fixture(scope="module")
def speech_with_pause(speech_wavs: list[Path]) -> tuple[np.ndarray, int, float]:
    """Two real LibriVox sentences with 0.5 s of digital silence between them; returns the silence start."""
    a, sr = sf.read(str(speech_wavs[0]), dtype="float32")
    b, sr_b = sf.read(str(speech_wavs[1]), dtype="float32")
    assert sr == sr_b
    x = np.concatenate([a, np.zeros(int(SILENCE_S * sr), np.float32), b])
    return x, int(sr), len(a) / float(sr)


@pytest.fixture(scope="module")
def features(model: LipSyncModel, speech_with_pause: tuple[np.ndarray, int, float]) -> np.ndarray:
    x, sr, _ = speech_with_pause
    return model.audio_features(AudioClip(torch.from_numpy(x), sr), FPS).numpy()


def _frame_rms(x: np.ndarray, sr: int, n: int, fps: float) -> np.ndarray:
    """Linear RMS of the audio shown during each video frame, straight from the waveform."""
    return np.array(
        [
            math.sqrt(float(np.mean(x[int(i / fps * sr) : int((i + 1) / fps * sr)] ** 2) + 1e-20))
            for i in range(n)
        ]
    )


def test_registered_and_usable() -> None:
    from lipsynckit.registry import list_models, load_model

    rows = {r.name: r for r in list_models()}
    assert rows["viseme"].usable, rows["viseme"].reason
    assert rows["viseme"].info is not None and not rows["viseme"].info.needs_weights
    m = load_model("viseme", device="cpu")
    assert isinstance(m, LipSyncModel)
    assert m.info.name == "viseme" and m.info.license == "Apache-2.0" and not m.info.non_commercial
    assert m.info.chunk_frames == 1


def test_options_validated() -> None:
    assert plugin.load(options={"gain": 2.0}).options.gain == 2.0  # type: ignore[attr-defined]
    with pytest.raises(LipSyncError, match="gain"):
        plugin.load(options={"gain": -1.0})
    with pytest.raises(LipSyncError, match="no_such_option"):
        plugin.load(options={"no_such_option": 1})
    assert VisemeOptions.model_validate(VisemeOptions().model_dump()) == VisemeOptions()


def test_silence_closed_voice_open(
    features: np.ndarray, speech_with_pause: tuple[np.ndarray, int, float]
) -> None:
    """(a) exactly 0 in silence (found from the waveform), > 0 wherever the speech is loud."""
    x, sr, pause_start = speech_with_pause
    n = len(features)
    opening = features[:, 0]
    assert features.dtype == np.float32 and opening.min() >= 0.0 and opening.max() <= 1.0
    # the inserted digital silence: every frame shown entirely inside it is closed
    inside = [i for i in range(n) if i / FPS >= pause_start and (i + 1) / FPS <= pause_start + SILENCE_S]
    assert len(inside) >= 10
    assert np.all(opening[inside] == 0.0), opening[inside]
    # silence found independently from the waveform energy: quiet in a +-2-frame neighbourhood
    db = 20.0 * np.log10(_frame_rms(x, sr, n, FPS))
    ref = float(np.percentile(db, 95))
    quiet = np.array([db[max(0, i - 2) : i + 3].max() < ref - 30.0 for i in range(n)])
    assert quiet.sum() >= len(inside) - 4  # the +-2-frame neighbourhood trims each end
    assert np.all(opening[quiet] == 0.0)
    voiced = db > ref - 12.0
    assert voiced.sum() > 0.4 * n
    assert np.all(opening[voiced] > 0.0), np.flatnonzero(voiced & (opening == 0))
    assert opening[voiced].mean() > 0.3
    # the mouth also closes between sentences and opens across a range (not a constant)
    assert np.percentile(opening[voiced], 90) - np.percentile(opening[voiced], 10) > 0.25


def test_level_independent(
    model: LipSyncModel, speech_with_pause: tuple[np.ndarray, int, float], features: np.ndarray
) -> None:
    """The same speech 20 dB quieter moves the mouth the same way (everything is clip-relative)."""
    x, sr, _ = speech_with_pause
    quiet = model.audio_features(AudioClip(torch.from_numpy(x * 0.1), sr), FPS).numpy()
    np.testing.assert_allclose(quiet[:, 0], features[:, 0], atol=1e-3)


def test_all_silent_audio_is_all_closed(model: LipSyncModel) -> None:
    feats = model.audio_features(AudioClip(torch.zeros(1, 16000), 16000), FPS)
    assert feats.shape[0] == 25 and torch.all(feats[:, 0] == 0)


@pytest.mark.parametrize("fps", [25.0, 29.97])
def test_length_follows_audio(model: LipSyncModel, speech_wav: Path, fps: float) -> None:
    """(e) n_out = round(duration * fps): the video lasts as long as the audio within one frame."""
    x, sr = sf.read(str(speech_wav), dtype="float32")
    for seconds in (None, 3.3, 1.01, 0.02):
        y = x if seconds is None else x[: int(seconds * sr)]
        clip = AudioClip(torch.from_numpy(y), int(sr))
        feats = model.audio_features(clip, fps)
        assert feats.shape[0] == round(clip.duration * fps)
        assert abs(feats.shape[0] / fps - clip.duration) <= 0.5 / fps + 1e-9
        assert feats.ndim == 2 and feats.shape[1] >= 1


def test_mouth_motion_follows_audio(
    model: LipSyncModel,
    features: np.ndarray,
    speech_with_pause: tuple[np.ndarray, int, float],
    grace_hopper_jpg: Path,
) -> None:
    """(b)(c)(d) on a real photo: mouth-region change tracks the RMS envelope; nothing else moves."""
    x, sr, _ = speech_with_pause
    img = _rgb(grace_hopper_jpg)
    face = _haar_face(img)
    pf = model.prepare(img, face)
    x1, y1, x2, y2 = pf.box
    assert 0 <= x1 < x2 <= img.shape[1] and 0 <= y1 < y2 <= img.shape[0]
    assert np.array_equal(pf.crop, img[y1:y2, x1:x2])
    # the mouth region measured in the test from the Haar box alone (lower-middle of the face)
    fx1, fy1, fx2, fy2 = face.box
    fw, fh = fx2 - fx1, fy2 - fy1
    mouth = (
        slice(int(fy1 + 0.68 * fh), int(fy1 + 0.98 * fh)),
        slice(int(fx1 + 0.3 * fw), int(fx1 + 0.7 * fw)),
    )
    outside = np.ones(img.shape[:2], dtype=bool)
    outside[y1:y2, x1:x2] = False
    change = np.empty(len(features))
    for i, feat in enumerate(features):
        out = _render(model, img, pf, torch.from_numpy(feat))
        assert np.array_equal(out[outside], img[outside])  # (c)
        if feat[0] == 0.0:
            assert np.array_equal(out, img)  # (d) closed frames are the source frame, bit for bit
        change[i] = float(np.abs(out[mouth].astype(np.float32) - img[mouth]).mean())
    rms = _frame_rms(x, sr, len(features), FPS)
    r = float(np.corrcoef(change, rms)[0, 1])
    log.info("Pearson r(mouth-region change, audio RMS) = %.3f over %d frames", r, len(features))
    assert r > 0.5, r
    assert change.max() > 8.0  # a visible opening, in grey levels averaged over the mouth box
    assert (features[:, 0] == 0).sum() >= 10


def test_opening_zero_is_identity(model: LipSyncModel, astronaut_png: Path) -> None:
    """(d) opening 0 returns the crop and the frame bit for bit, whatever the other columns say."""
    img = _rgb(astronaut_png)
    pf = model.prepare(img, _haar_face(img))
    feat = torch.tensor([0.0, 0.7, 1.0, 0.5])
    gen = model.generate(ModelBatch([WorkItem(3, 7, pf, feat)]))[0]
    assert np.array_equal(gen, pf.crop)
    assert np.array_equal(model.composite(img, pf, gen), img)
    opened = _render(model, img, pf, torch.tensor([0.8, 0.0, 1.0, 1.0]))
    assert not np.array_equal(opened, img)
    with pytest.raises(LipSyncError, match="audio features"):
        model.generate(ModelBatch([WorkItem(0, 0, pf, torch.tensor([float("nan"), 0.0]))]))


def test_batch_matches_single_items(model: LipSyncModel, astronaut_png: Path) -> None:
    img = _rgb(astronaut_png)
    pf = model.prepare(img, _haar_face(img))
    feats = [torch.tensor([o, w, 1.0, o]) for o, w in ((0.2, -0.5), (0.0, 0.0), (1.0, 0.8))]
    batch = model.generate(ModelBatch([WorkItem(0, i, pf, f) for i, f in enumerate(feats)]))
    for f, g in zip(feats, batch, strict=True):
        assert np.array_equal(g, model.generate(ModelBatch([WorkItem(1, 0, pf, f)]))[0])
    # more opening, more change
    d = [float(np.abs(g.astype(np.int16) - pf.crop).mean()) for g in batch]
    assert d[1] == 0.0 < d[0] < d[2]


def _five_points(face: Face) -> np.ndarray:
    """Eyes, nose and mouth corners at the usual proportions of a frontal face box."""
    x1, y1, x2, y2 = face.box
    w, h = x2 - x1, y2 - y1
    rel = np.array([[0.32, 0.4], [0.68, 0.4], [0.5, 0.6], [0.36, 0.8], [0.64, 0.8]], dtype=np.float32)
    return np.stack([x1 + rel[:, 0] * w, y1 + rel[:, 1] * h], axis=1)


def test_landmarks_used_and_rotation_follows_face(model: LipSyncModel, astronaut_png: Path) -> None:
    """Mouth corners from 5-point landmarks place the mouth; a face turned 90 degrees opens along its own axis."""
    img = _rgb(astronaut_png)
    face = _haar_face(img)
    lm = _five_points(face)
    upright = Face(face.box, landmarks=lm)
    pf = model.prepare(img, upright)
    assert pf.data["geometry"] == "landmarks5"
    cx, cy = pf.data["mouth_centre"]
    assert abs(pf.box[0] + cx - lm[3:, 0].mean()) < 1e-3 and abs(pf.box[1] + cy - lm[3:, 1].mean()) < 1e-3
    assert abs(pf.data["mouth_width"] - (lm[4, 0] - lm[3, 0])) < 1e-3
    feat = torch.tensor([0.9, 0.0, 1.0, 1.0])
    out = _render(model, img, pf, feat)

    # the same photo turned 90 degrees clockwise: (x, y) -> (H - 1 - y, x)
    h = img.shape[0]
    rot = np.ascontiguousarray(cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE))
    lm_r = np.stack([h - 1 - lm[:, 1], lm[:, 0]], axis=1)
    bx1, by1, bx2, by2 = face.box
    box_r = np.array([h - 1 - by2, bx1, h - 1 - by1, bx2], dtype=np.float32)
    pf_r = model.prepare(rot, Face(box_r, landmarks=lm_r))
    assert abs(abs(pf_r.data["roll"]) - math.pi / 2) < 1e-3
    back = cv2.rotate(_render(model, rot, pf_r, feat), cv2.ROTATE_90_COUNTERCLOCKWISE)
    x1, y1, x2, y2 = pf.box
    region = (slice(y1, y2), slice(x1, x2))
    moved = np.abs(out[region].astype(np.float32) - img[region]).mean()
    disagree = np.abs(back[region].astype(np.float32) - out[region]).mean()
    log.info("rotation: mean change %.2f, disagreement after turning back %.3f", moved, disagree)
    assert moved > 0.5 and disagree < 0.2 * moved, (moved, disagree)


def test_box_off_frame_is_a_user_error(model: LipSyncModel, astronaut_png: Path) -> None:
    img = _rgb(astronaut_png)
    with pytest.raises(NoFaceError, match="face-boxes"):
        model.prepare(img, Face(np.array([5000, 5000, 5100, 5100], dtype=np.float32)))
    with pytest.raises(NoFaceError):
        model.prepare(img, Face(np.array([10, 10, 10, 10], dtype=np.float32)))


def test_coarse_field_matches_full_resolution(model: LipSyncModel, grace_hopper_jpg: Path) -> None:
    """Large faces compute the warp on a coarser grid; the result must stay close to the exact one."""
    img = _rgb(grace_hopper_jpg)
    face = _haar_face(img)
    feat = torch.tensor([0.8, 0.5, 1.0, 1.0])
    full = _render(model, img, model.prepare(img, face), feat)
    coarse_model = plugin.load(options={"field_max_side": 64})
    coarse = _render(coarse_model, img, coarse_model.prepare(img, face), feat)
    moved = np.abs(full.astype(np.float32) - img).sum()
    disagree = np.abs(coarse.astype(np.float32) - full).sum()
    assert moved > 0 and disagree < 0.25 * moved, (moved, disagree)


def test_real_video_frames(model: LipSyncModel, carphone_mp4: Path, speech_wav: Path) -> None:
    """A real talking-face video (small 176x144 frames, moving face): only the face region changes."""
    import av

    x, sr = sf.read(str(speech_wav), dtype="float32")
    with av.open(str(carphone_mp4)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate is not None
        fps = float(stream.average_rate)
        frames = [
            f.to_ndarray(format="rgb24") for _, f in zip(range(40), container.decode(stream), strict=False)
        ]
    feats = model.audio_features(AudioClip(torch.from_numpy(x), int(sr)), fps)
    changed = with_face = 0
    for frame, feat in zip(frames, feats, strict=False):
        boxes = _haar_boxes(frame, min_size=30, neighbours=3)
        if not boxes:
            continue  # the pipeline passes such frames through
        with_face += 1
        x, y, w, h = max(boxes, key=lambda r: r[2] * r[3])
        pf = model.prepare(frame, Face(np.array([x, y, x + w, y + h], dtype=np.float32)))
        out = _render(model, frame, pf, feat)
        x1, y1, x2, y2 = pf.box
        mask = np.ones(frame.shape[:2], dtype=bool)
        mask[y1:y2, x1:x2] = False
        assert np.array_equal(out[mask], frame[mask])
        if feat[0] == 0:
            assert np.array_equal(out, frame)
        else:
            changed += int(not np.array_equal(out, frame))
    assert with_face >= 30 and changed >= 20, (with_face, changed)
