"""The plugin through its user-facing loader: official checkpoints/ layout, options, real media end
to end (small stand-in architectures from the reference folder), and once at the real 1.5 size."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lipsynckit.errors import WeightsError
from lipsynckit.media import load_audio
from lipsynckit.types import Face, FaceTrack, ModelBatch, WorkItem
from lipsynckit_latentsync.plugin import plugin, plugin_15

from ls_testutil import haar_face, landmarks_from_box, make_small_checkpoints, ref


def test_plugin_import_is_light() -> None:
    code = (
        "import sys, lipsynckit_latentsync.plugin as p; print(p.plugin.info.name, 'diffusers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["latentsync", "False"]


def test_model_info() -> None:
    assert plugin.info.face_size == 512 and plugin_15.info.face_size == 256
    for p, repo in ((plugin, "ByteDance/LatentSync-1.6"), (plugin_15, "ByteDance/LatentSync-1.5")):
        assert p.info.chunk_frames == 16 and p.info.audio_sample_rate == 16000
        rec = {w.key: w for w in p.info.weights}
        assert rec["unet"].relpath == "latentsync_unet.pt" and rec["whisper"].relpath == "whisper/tiny.pt"
        assert rec["unet"].sources[0].hf_repo == repo
        assert rec["vae"].sources[0].hf_repo == "stabilityai/sd-vae-ft-mse"
        assert "licen" in p.info.weights_license.lower()


def test_missing_weights_say_where_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as err:
        plugin_15.find_weights(tmp_path)
    assert "latentsync_unet.pt" in str(err.value) and "ByteDance/LatentSync-1.5" in str(err.value)
    ok, reason = plugin_15.status(tmp_path)
    assert not ok and "weights not found" in reason


def test_unet_config_file_is_read_or_refused_clearly(tmp_path: Path, reference_dir: Path) -> None:
    """unet_config.yaml: the official stage2*.yaml structure; anything else is one error naming it."""
    import yaml

    from lipsynckit_latentsync.loader import read_unet_config, read_vae_config

    model = json.loads(ref(reference_dir, "golden_unet_config.json").read_text())
    good = tmp_path / "unet_config.yaml"
    good.write_text(yaml.safe_dump({"data": {"resolution": 64, "num_frames": 16, "fps": 25}, "model": model}))
    cfg, res = read_unet_config(good)
    assert res == 64 and cfg.block_out_channels == [32, 64, 64, 64]
    cases = {
        "no_model.yaml": ({"data": {"resolution": 64}}, "no 'model:' section"),
        "frames.yaml": ({"data": {"num_frames": 8}, "model": model}, "num_frames is 8"),
        "res.yaml": ({"data": {"resolution": 100}, "model": model}, "multiple of 8"),
    }
    for name, (data, msg) in cases.items():
        f = tmp_path / name
        f.write_text(yaml.safe_dump(data))
        with pytest.raises(WeightsError, match=msg) as err:
            read_unet_config(f)
        assert str(f) in str(err.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed")
    with pytest.raises(WeightsError, match="not a LatentSync UNet config"):
        read_unet_config(broken)
    # the VAE: no config.json beside the weights = the built-in sd-vae-ft-mse architecture
    vae_file = tmp_path / "vae" / "diffusion_pytorch_model.safetensors"
    vae_file.parent.mkdir()
    assert read_vae_config(vae_file)["block_out_channels"] == [128, 256, 512, 512]
    (vae_file.parent / "config.json").write_text(
        json.dumps({"_class_name": "AutoencoderKL", "layers_per_block": 1})
    )
    cfg_vae = read_vae_config(vae_file)
    assert (
        cfg_vae["layers_per_block"] == 1
        and "_class_name" not in cfg_vae
        and cfg_vae["scaling_factor"] == 0.18215
    )


def test_official_layout_end_to_end_on_real_media(
    reference_dir: Path,
    tmp_path: Path,
    speech_wav: Path,
    astronaut_png: Path,
) -> None:
    # the shrunken architectures of the reference folder stand in for the released sizes: the
    # folder carries them (unet_config.yaml, sd-vae-ft-mse/config.json) as a user's folder would
    ckpt = make_small_checkpoints(tmp_path / "checkpoints", reference_dir)
    model = plugin_15.load(weights=ckpt, options={"steps": 2, "seed": 5, "deepcache": True})
    assert model.info.face_size == 64

    clip = load_audio(speech_wav).slice(0.0, 0.7)
    windows = model.audio_features(clip, 25.0)
    assert windows.shape == (19, 50, 384)  # 35 feature rows -> the official rule gives 19 frames

    img = cv2.cvtColor(cv2.imread(str(astronaut_png)), cv2.COLOR_BGR2RGB)
    lm = landmarks_from_box(*haar_face(img))
    track = model.adjust_track(FaceTrack([Face(box=[0, 0, 1, 1], landmarks=lm)]), img.shape[:2])
    face = track.faces[0]
    assert face is not None
    prepared = model.prepare(img, face)
    assert prepared.crop.shape == (64, 64, 3) and set(prepared.data) >= {"affine", "mask"}

    def run_job(job: int) -> list[np.ndarray]:
        outs: list[np.ndarray] = []
        for start in (0, 16):  # one full chunk, then the shorter last chunk (3 frames)
            items = [WorkItem(job, i, prepared, windows[i]) for i in range(start, min(19, start + 16))]
            outs += model.generate(ModelBatch(items))
        return outs

    first, second = run_job(1), run_job(2)
    # the default output path: the float decoder output (the official restoration's input)
    assert len(first) == 19 and all(o.shape == (64, 64, 3) and o.dtype == np.float32 for o in first)
    for a, b in zip(first, second, strict=True):  # the seed makes runs repeatable
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(first[0], o) for o in first[1:])  # the audio drives the frames
    # outside the mouth mask the generated face is the input face (the official paste-back)
    keep = prepared.data["mask"] == 255
    np.testing.assert_allclose((first[0][keep] + 1) * 127.5, prepared.crop[keep], atol=1e-3)

    out = model.composite(img, prepared, first[0])
    x1, y1, x2, y2 = prepared.box
    outside = np.ones(img.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    np.testing.assert_array_equal(out[outside], img[outside])
    assert not np.array_equal(out, img)


def test_sync_a_real_talking_face_video(
    reference_dir: Path, tmp_path: Path, speech_wav: Path, carphone_mp4: Path
) -> None:
    """lipsynckit.sync end to end (core pipeline and scheduler) on carphone with exact landmarks
    given through --face-boxes JSON, the small stand-in networks loaded from the official layout."""
    import lipsynckit
    from lipsynckit.media import read_video_frames

    ckpt = make_small_checkpoints(tmp_path / "checkpoints", reference_dir)
    model = plugin_15.load(weights=ckpt, options={"steps": 2})
    src = read_video_frames(carphone_mp4)
    boxes, marks = [], []
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    last = None
    for frame in src[:23]:  # the frames the 0.7 s of audio needs
        found = cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(30, 30))
        last = tuple(int(v) for v in max(found, key=lambda b: b[2] * b[3])) if len(found) else last
        assert last is not None
        x, y, w, h = last
        boxes.append([x, y, x + w, y + h])
        marks.append(landmarks_from_box(x, y, w, h).tolist())
    faces_json = tmp_path / "faces.json"
    faces_json.write_text(json.dumps({"boxes": boxes, "landmarks": marks}))
    clip = load_audio(speech_wav).slice(0.0, 0.7)
    out = tmp_path / "out.mkv"  # lossless: the suffix picks the container
    res = lipsynckit.sync(
        carphone_mp4, clip, model, out, face_boxes=faces_json, progress=False, output_mode="ffv1"
    )
    # 35 feature rows at 29.97 fps: the official rule yields 23 frames (one past the end)
    assert res.frames == 23 and res.frames_with_face == 23 and not res.failed_frames
    got = read_video_frames(out)
    assert got.shape == (23, 144, 176, 3)
    diff = np.abs(got.astype(int) - src[:23].astype(int)).max(axis=-1)
    assert (diff[:, :20, :] == 0).all()  # the top rows are far from every face: untouched
    assert diff.max() > 20  # the mouth region was regenerated


_MAKE_REAL_SIZE = """
import sys
from pathlib import Path
sys.path[:0] = sys.argv[3:]
from lipsynckit.testing import deterministic_state_dict, load_manifest
from diffusers import AutoencoderKL
from ls_testutil import save_diffusers_vae, save_official_unet, save_openai_whisper_tiny
from lipsynckit_latentsync.options import VAE_CONFIG
root = Path(sys.argv[1])
man = load_manifest(sys.argv[2])
state = deterministic_state_dict({k: v for k, v in man.items() if not k.endswith("pos_encoder.pe")})
save_official_unet(root / "latentsync_unet.pt", state)
del state
save_openai_whisper_tiny(root / "whisper" / "tiny.pt")
vae = AutoencoderKL(**VAE_CONFIG)
vae.load_state_dict(deterministic_state_dict({k: tuple(v.shape) for k, v in vae.state_dict().items()}))
save_diffusers_vae(root / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors", vae)
"""


@pytest.mark.slow
@pytest.mark.timeout(2400)  # ~4 CPU-min of compute plus 5 GB of weights written; room for a loaded machine
def test_real_size_15_checkpoints_run_end_to_end_from_the_cli(
    reference_dir: Path, tmp_path: Path, astronaut_png: Path, speech_wav: Path
) -> None:
    """Issue: `lipsynckit sync photo speech --model latentsync_15 --weights checkpoints/ --steps 2` on CPU.

    1.27 G-parameter UNet, sd-vae-ft-mse and Whisper-tiny at the released sizes, deterministic weights
    in the official layout (written by a child process, so this process's peak memory is the model's),
    one 16-frame chunk of real speech on a real photo; only the mouth region changes.
    """
    from lipsynckit.cli import main

    root = tmp_path / "checkpoints"
    here = str(Path(__file__).parent)
    subprocess.run(
        [
            sys.executable,
            "-c",
            _MAKE_REAL_SIZE,
            str(root),
            str(ref(reference_dir, "manifest_unet.json")),
            here,
            str(reference_dir),
        ],
        check=True,
    )
    img = cv2.cvtColor(cv2.imread(str(astronaut_png)), cv2.COLOR_BGR2RGB)
    x, y, w, h = haar_face(img)
    faces_json = tmp_path / "faces.json"
    faces_json.write_text(
        json.dumps({"boxes": [[x, y, x + w, y + h]], "landmarks": [landmarks_from_box(x, y, w, h).tolist()]})
    )
    wav = tmp_path / "speech.wav"
    import soundfile as sf

    sf.write(wav, load_audio(speech_wav, sample_rate=16000).numpy()[16000 : 16000 + 10240], 16000)  # 0.64 s
    out = tmp_path / "out.mkv"
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
    rc = main(
        [
            "-q",
            "sync",
            str(astronaut_png),
            str(wav),
            "-o",
            str(out),
            "--model",
            "latentsync_15",
            "--weights",
            str(root),
            "--steps",
            "2",
            "--face-boxes",
            str(faces_json),
            "--no-progress",
            "--device",
            "cpu",
            "-O",
            "deepcache=false",
        ]
    )
    wall, cpu = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_utime - c0
    assert rc == 0
    from lipsynckit.media import read_video_frames

    got = read_video_frames(out)
    assert got.shape[1:] == img.shape and 16 <= len(got) <= 18  # the official frame-count rule
    diff = np.abs(got.astype(int) - img[None].astype(int)).max(axis=-1).max(axis=0)  # (H, W)
    mouth = diff[y + h // 2 : y + h + h // 6, x + w // 5 : x + w - w // 5]
    upper = diff[: y + h // 4]  # everything above the eyes
    assert mouth.mean() > 5  # the mouth region was regenerated
    # above the eyes only the float16 affine round trip of the official AlignRestore shows (a few levels)
    assert upper.mean() < 0.1 * mouth.mean() and upper.max() <= 12, (upper.mean(), upper.max(), mouth.mean())
    # far from the face (more than a face width to the side) nothing changes at all
    assert (diff[:, : max(0, x - w)] == 0).all() and (diff[:, x + 2 * w :] == 0).all()
    print(
        f"\nLatentSync 1.5 size from the CLI, CPU ({torch.get_num_threads()} threads): {len(got)} frames, "
        f"2 steps: wall {wall:.1f} s, CPU {cpu:.1f} s ({cpu / len(got):.1f} CPU s/frame), "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB"
    )
