"""Issue: the plugin's protocol methods reproduce official inference.py main() end to end
(golden_pipeline: pads + smoothing, mel chunks, 96x96 crops, generator output, pasted frames), plus
the same path on real media and the options that deviate on purpose."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.errors import LipSyncError, NoFaceError
from lipsynckit.model import LipSyncModel
from lipsynckit.types import AudioClip, Face, FaceTrack, ModelBatch, WorkItem
from lipsynckit_wav2lip.options import Wav2LipOptions
from lipsynckit_wav2lip.plugin import plugin
from lipsynckit_wav2lip.runtime import Wav2LipModel, smooth_boxes

from w2l_helpers import golden, load_model, save_training_checkpoint


@pytest.fixture(scope="module")
def ckpt(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_training_checkpoint(tmp_path_factory.mktemp("w2l_pipe") / "wav2lip.pth")


@pytest.fixture(scope="module")
def model(ckpt: Path) -> Wav2LipModel:
    m = load_model(plugin, weights=ckpt, device="cpu")
    assert isinstance(m, Wav2LipModel)
    return m


@pytest.fixture(scope="module")
def gp(reference_dir: Path) -> dict[str, np.ndarray]:
    return golden("golden_pipeline")


def _run(
    model: Wav2LipModel, frames_rgb: list[np.ndarray], track: FaceTrack, feats: torch.Tensor, batch: int = 16
):
    """Drive the protocol as the pipeline does: adjust → prepare → generate in batches → composite."""
    h, w = frames_rgb[0].shape[:2]
    adj = model.adjust_track(track, (h, w))
    prepared = [
        model.prepare(f, face) if face is not None else None
        for f, face in zip(frames_rgb, adj.faces, strict=True)
    ]
    n_src = len(frames_rgb)
    items = [WorkItem(0, i, prepared[i % n_src], feats[i]) for i in range(len(feats))]  # type: ignore[arg-type]
    generated: list[np.ndarray] = []
    for s in range(0, len(items), batch):
        generated += model.generate(ModelBatch(items[s : s + batch]))
    out = [model.composite(frames_rgb[i % n_src], items[i].face, generated[i]) for i in range(len(items))]
    return adj, prepared, generated, out


def test_protocol_reproduces_official_main(
    model: Wav2LipModel, gp: dict[str, np.ndarray], monkeypatch
) -> None:  # noqa: ANN001
    as_protocol: object = model
    assert isinstance(as_protocol, LipSyncModel)
    clip = AudioClip(torch.from_numpy(gp["pcm16"].astype(np.float32) / 32768.0), 16000)
    feats = model.audio_features(clip, float(gp["fps"]))
    assert feats.shape == (47, 1, 80, 16)  # 47 output frames from 20 input frames: the audio decides
    np.testing.assert_allclose(feats[:, 0].numpy(), gp["mel_chunks"], atol=2e-6, rtol=0)

    frames_rgb = [np.ascontiguousarray(f[..., ::-1]) for f in gp["frames_in"]]
    track = FaceTrack([Face(box=b.astype(np.float32)) for b in gp["raw_boxes_x1y1x2y2"]], detector="golden")
    preds: list[torch.Tensor] = []
    forward = model._forward_on_device  # generate's compute stage: the generator's float output

    def spy(faces: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        out = forward(faces, mels)
        preds.append(out.cpu())
        return out

    monkeypatch.setattr(model, "_forward_on_device", spy)
    adj, prepared, generated, out = _run(
        model, frames_rgb, track, feats, batch=16
    )  # official batches 16/16/15

    coords = np.array([[f.box[1], f.box[3], f.box[0], f.box[2]] for f in adj.faces if f is not None])
    assert np.array_equal(coords.astype(np.int64), gp["coords_y1y2x1x2"])  # frame 7 is clipped at the bottom
    crops_bgr = np.stack([p.crop[..., ::-1] for p in prepared if p is not None])
    assert np.array_equal(crops_bgr, gp["face_crops96_bgr"])
    assert [len(p) for p in preds] == [16, 16, 15]
    pred = torch.cat(preds).numpy()
    np.testing.assert_allclose(pred, gp["pred"], atol=1e-5, rtol=0)
    # generate(): floor(pred*255) as uint8, returned RGB
    want_faces = (gp["pred"].transpose(0, 2, 3, 1) * np.float32(255)).astype(np.uint8)[..., ::-1]
    face_diff = np.abs(np.stack(generated).astype(int) - want_faces.astype(int))
    assert face_diff.max() <= 1 and (face_diff > 0).mean() <= 1e-4
    got = np.stack(out)[..., ::-1]
    diff = np.abs(got.astype(int) - gp["frames_out"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-4, (diff > 0).mean()


def test_official_smoothing_quirks() -> None:
    # SPEC worked example (n = 3 < T: the negative slice start keeps only the last 2 rows)
    boxes = np.array([(0, 100, 50, 200), (10, 101, 57, 203), (20, 102, 64, 206)])
    assert smooth_boxes(boxes).tolist() == [[15, 101, 60, 204], [15, 101, 60, 204], [17, 101, 62, 205]]
    assert smooth_boxes(boxes[:1]).tolist() == [[0, 100, 50, 200]]  # a still image: unchanged
    # in place: the tail windows (i + 5 > n) see rows that were already smoothed
    seq = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [9, 9, 9, 9]])
    # (a copy-based mean would give [0, 1, 1, 1, 1, 1]: rows 1..5 of the input average 1.8)
    assert smooth_boxes(seq)[:, 0].tolist() == [0, 1, 2, 2, 2, 3]


def test_adjust_track_pads_clips_and_keeps_gaps(model: Wav2LipModel) -> None:
    faces: list[Face | None] = (
        [Face(box=np.array([10.7, -3.0, 60.2, 95.9]))] * 3
        + [None]
        + [Face(box=np.array([40.0, 40.0, 90.0, 90.0]))] * 2
    )
    adj = model.adjust_track(FaceTrack(faces, detector="x"), (100, 80))
    assert adj.faces[3] is None and adj.detector == "x"
    # clip at 0, truncate, pads (0,10,0,0) clamped to H=100 / W=80; each run smoothed on its own
    assert adj.faces[0] is not None and adj.faces[0].box.tolist() == [10, 0, 60, 100]
    assert adj.faces[4] is not None and adj.faces[4].box.tolist() == [40, 40, 80, 100]
    off = Face(box=np.array([90.0, 10.0, 120.0, 50.0]))  # entirely right of a 80-wide frame
    assert model.adjust_track(FaceTrack([off]), (100, 80)).faces == [None]
    with pytest.raises(NoFaceError):
        model.prepare(np.zeros((100, 80, 3), np.uint8), off)


@pytest.fixture(scope="module")
def carphone(carphone_mp4: Path) -> list[np.ndarray]:
    from lipsynckit.media import read_video_frames

    return list(read_video_frames(carphone_mp4)[:6])


def test_real_video_and_speech_official_and_feathered(
    ckpt: Path, model: Wav2LipModel, carphone: list[np.ndarray], speech_wav: Path
) -> None:
    data, sr = sf.read(speech_wav, dtype="float32")
    feats = model.audio_features(AudioClip(torch.from_numpy(data[: sr // 2]), sr), 29.97)
    # 0.5 s = 41 mel frames; windows start at int(i*80/29.97) <= 25 for i <= 9, then the tail window
    assert feats.shape[0] == 11
    box = np.array([52.0, 28.0, 124.0, 110.0])  # the driver's face in carphone (176x144)
    track = FaceTrack([Face(box=box) for _ in carphone])
    adj, prepared, generated, out = _run(model, carphone, track, feats[:6], batch=4)
    feathered = load_model(plugin, weights=ckpt, options={"paste": "feathered"})
    for i, frame in enumerate(carphone):
        pf = prepared[i]
        assert pf is not None and pf.crop.shape == (96, 96, 3) and pf.crop.dtype == np.uint8
        assert generated[i].shape == (96, 96, 3) and generated[i].dtype == np.uint8
        x1, y1, x2, y2 = pf.box
        assert (x1, y1, x2, y2) == (52, 28, 124, 120)  # bottom pad of 10
        outside = np.ones(frame.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(out[i][outside], frame[outside])  # official paste touches only the box
        assert not np.array_equal(out[i][y1:y2, x1:x2], frame[y1:y2, x1:x2])
        soft = feathered.composite(frame, pf, generated[i])
        assert np.array_equal(soft[outside], frame[outside])
        # feathered edges stay closer to the source than the hard paste does
        edge = (slice(y1, y1 + 2), slice(x1, x2))
        assert (
            np.abs(soft[edge].astype(int) - frame[edge]).mean()
            < np.abs(out[i][edge].astype(int) - frame[edge]).mean()
        )
    # different audio windows give different mouths on the same frame
    a = model.generate(
        ModelBatch([WorkItem(0, 0, prepared[0], feats[0]), WorkItem(0, 1, prepared[0], feats[10])])
    )  # type: ignore[arg-type]
    assert not np.array_equal(a[0], a[1])


def test_still_image_is_one_frame_reused(
    model: Wav2LipModel, grace_hopper_jpg: Path, speech_wav: Path
) -> None:
    from lipsynckit.media import read_video_frames

    stills = read_video_frames(grace_hopper_jpg)  # a still image is a one-frame video
    assert len(stills) == 1
    rgb = stills[0]
    data, sr = sf.read(speech_wav, dtype="float32")
    feats = model.audio_features(AudioClip(torch.from_numpy(data[: sr // 2]), sr), 25.0)  # 0.5 s
    track = model.adjust_track(FaceTrack([Face(box=np.array([170.0, 90.0, 360.0, 330.0]))]), rgb.shape[:2])
    _adj, _prep, generated, out = _run(model, [rgb], track, feats)
    assert len(out) == feats.shape[0] == 10  # int(i*3.2) + 16 <= 41 for i <= 8, plus the tail window
    assert all(o.shape == rgb.shape for o in out)


def test_reduced_precision_and_channels_last_on_cpu(ckpt: Path, gp: dict[str, np.ndarray]) -> None:
    faces = gp["face_crops96_bgr"][:2]
    mels = torch.from_numpy(gp["mel_chunks"][:2]).unsqueeze(1)
    cl = load_model(plugin, weights=ckpt, options={"channels_last": True})
    np.testing.assert_allclose(cl.predict(mels, faces).numpy(), gp["pred"][:2], atol=1e-5, rtol=0)
    bf = load_model(plugin, weights=ckpt, dtype=torch.bfloat16)
    assert bf.precision == "bf16"
    got = bf.predict(mels, faces)
    assert got.dtype == torch.float32
    err = float((got - torch.from_numpy(gp["pred"][:2])).abs().max())
    assert 0.0 < err < 0.05, err  # bf16 really ran, and stays close to fp32
    half = load_model(plugin, weights=ckpt, dtype=torch.float16)
    assert half.precision == "fp16"
    # fp16 autocast is ~5x slower than fp32 on a CPU: the CPU keeps fp32 (and says so)
    np.testing.assert_allclose(half.predict(mels, faces).numpy(), gp["pred"][:2], atol=1e-5, rtol=0)


@pytest.mark.gpu
def test_cuda_fp16_channels_last_compile(ckpt: Path, gp: dict[str, np.ndarray]) -> None:
    faces = gp["face_crops96_bgr"][:16]
    mels = torch.from_numpy(gp["mel_chunks"][:16]).unsqueeze(1)
    fp32 = load_model(plugin, weights=ckpt, device="cuda")
    np.testing.assert_allclose(fp32.predict(mels, faces).numpy(), gp["pred"][:16], atol=1e-4, rtol=0)
    fast = load_model(
        plugin,
        weights=ckpt,
        device="cuda",
        dtype=torch.float16,
        options={"channels_last": True, "compile": True},
    )
    assert fast.precision == "fp16"
    np.testing.assert_allclose(fast.predict(mels, faces).numpy(), gp["pred"][:16], atol=2e-2, rtol=0)


def test_options_are_validated_and_default_to_official() -> None:
    d = Wav2LipOptions()
    assert (d.pads, d.smooth, d.smooth_window, d.paste) == ((0, 10, 0, 0), True, 5, "official")
    assert Wav2LipOptions(pads="0 0 0 0").pads == (0, 0, 0, 0)  # type: ignore[arg-type]
    with pytest.raises(LipSyncError, match="steps"):
        load_model(plugin, weights="/nonexistent", options={"steps": 20})


def test_plugin_module_is_light_and_licence_is_announced(
    ckpt: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = (
        "import sys, lipsynckit_wav2lip.plugin, lipsynckit_wav2lip.s3fd_plugin as s;"
        "heavy=[m for m in ('cv2','lipsynckit_wav2lip.network','lipsynckit_wav2lip.runtime','lipsynckit_wav2lip.s3fd')"
        " if m in sys.modules]; print(heavy)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout
    info = plugin.info
    assert info.non_commercial and info.face_size == 96 and info.default_detector == "s3fd"
    gen = [w for w in info.weights if w.key == "generator"][0]
    assert gen.non_commercial and gen.sources and gen.filename == "wav2lip.pth"
    import lipsynckit.weights as lw

    monkeypatch.setattr(lw, "_announced", set())
    with caplog.at_level(logging.WARNING):
        load_model(plugin, weights=ckpt)
    assert any("NON-COMMERCIAL" in r.getMessage() for r in caplog.records)


def test_scheduler_runs_the_generator_in_three_overlapping_stages(
    model: Wav2LipModel, gp: dict[str, np.ndarray], cuda_stand_ins: list[str]
) -> None:
    """The pipeline hands Wav2Lip to the scheduler as to_device / compute / to_host; driven through the
    CUDA-streams path (stand-in streams on this CPU) the 47 golden frames come back in order and equal
    generate()'s, which the golden test above pins to the official output."""
    from lipsynckit.pipeline import scheduler_target
    from lipsynckit.scheduler import BatchScheduler, SchedulerOptions

    assert scheduler_target(model) is model
    clip = AudioClip(torch.from_numpy(gp["pcm16"].astype(np.float32) / 32768.0), 16000)
    feats = model.audio_features(clip, float(gp["fps"]))
    frames_rgb = [np.ascontiguousarray(f[..., ::-1]) for f in gp["frames_in"]]
    adj = model.adjust_track(
        FaceTrack([Face(box=b.astype(np.float32)) for b in gp["raw_boxes_x1y1x2y2"]]), frames_rgb[0].shape[:2]
    )
    prepared = [model.prepare(f, face) for f, face in zip(frames_rgb, adj.faces, strict=True)]  # type: ignore[arg-type]
    items = [WorkItem(0, i, prepared[i % len(prepared)], feats[i]) for i in range(len(feats))]
    ref = model.generate(ModelBatch(items))

    sched = BatchScheduler(model, SchedulerOptions(max_batch=16, max_wait_ms=20, queue_size=64))
    sched._cuda = True  # take the streams path with the stand-ins
    with sched:
        job = sched.open_job()
        for it in items:
            job.submit(WorkItem(job.id, it.index, it.face, it.audio))
        job.close()
        out = list(job.results())
        stats = sched.stats()
    assert [i for i, _ in out] == list(range(47))
    got_all = np.stack([got for _, got in out])
    assert got_all.shape == (47, 96, 96, 3) and got_all.dtype == np.uint8
    # the scheduler's batches (up to 16, as the frames arrive) are not the reference's one batch of 47, and
    # a convolution's float sums depend on the batch and thread count: a value may round one level apart
    diff = np.abs(got_all.astype(int) - np.stack(ref).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, (diff.max(), (diff > 0).sum())
    assert stats.batches >= 3 and cuda_stand_ins.count("sync") == stats.batches  # one wait per batch


@pytest.mark.gpu
def test_cuda_scheduler_streams_match_the_golden_generator(ckpt: Path, gp: dict[str, np.ndarray]) -> None:
    """On a GPU: the three stages on real CUDA streams give floor(pred·255) of the golden, ±1 level."""
    from lipsynckit.scheduler import BatchScheduler, SchedulerOptions

    m = load_model(plugin, weights=ckpt, device="cuda")
    faces = gp["face_crops96_bgr"]
    from lipsynckit.types import PreparedFace

    items = [
        WorkItem(
            0,
            i,
            PreparedFace(box=(0, 0, 96, 96), crop=np.ascontiguousarray(faces[i][..., ::-1])),
            torch.from_numpy(gp["mel_chunks"][i][None]),
        )
        for i in range(len(faces))
    ]
    with BatchScheduler(m, SchedulerOptions(device="cuda", max_batch=8, queue_size=64)) as sched:
        job = sched.open_job()
        for it in items:
            job.submit(it)
        job.close()
        out = list(job.results())
        stats = sched.stats()
    want = (gp["pred"][: len(faces)].transpose(0, 2, 3, 1) * np.float32(255.0)).astype(np.uint8)[..., ::-1]
    got = np.stack([o for _, o in out])
    assert np.abs(got.astype(np.int16) - want.astype(np.int16)).max() <= 1
    assert 0.0 < stats.device_busy_fraction <= 1.0
