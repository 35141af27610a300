"""golden_step (shrunken UNet + small VAE) through plugin.load on an official models/ layout, and the
runtime (prepare / generate / composite / avatar round trip) on real photos."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lipsynckit.errors import NoFaceError, WeightsError
from lipsynckit.types import Face, ModelBatch, WorkItem
from lipsynckit_musetalk import blending, networks
from lipsynckit_musetalk.plugin import plugin, plugin_v10
from lipsynckit_musetalk.runtime import MuseTalkModel

from mt_helpers import build_models_dir, read_rgb
from refdata import load_npz


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, np.ndarray]:
    return load_npz(reference_dir / "musetalk" / "golden_step.npz")


@pytest.fixture(scope="module")
def small_models(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_models_dir(tmp_path_factory.mktemp("mt_small") / "models", reference_dir, small=True)


@pytest.fixture(scope="module")
def model(small_models: Path) -> MuseTalkModel:
    m = plugin.load(weights=small_models, device="cpu")
    assert isinstance(m, MuseTalkModel)
    return m


def test_step_golden(model: MuseTalkModel, golden: dict[str, np.ndarray]) -> None:
    crops = golden["crop_bgr_uint8"]
    masked, ref = networks.crops_to_vae_input(crops)
    np.testing.assert_array_equal(masked.numpy(), golden["vae_input_masked"])
    np.testing.assert_array_equal(ref.numpy(), golden["vae_input_ref"])
    assert (masked[:, :, 128:] == -1).all()

    pm, pr = networks.vae_posterior(model.vae, masked), networks.vae_posterior(model.vae, ref)
    for name, t in [
        ("mean_masked", pm.mean),
        ("std_masked", pm.std),
        ("mean_ref", pr.mean),
        ("std_ref", pr.std),
    ]:
        np.testing.assert_allclose(t.numpy(), golden[f"posterior_{name}"], atol=1e-4, rtol=0)

    # the runtime draws eps exactly as the official code does after torch.manual_seed(seed)
    latents = []
    for i, seed in enumerate(golden["rng_seeds"]):
        model.generator = torch.Generator().manual_seed(int(seed))
        latents.append(model.encode_reference(crops[i : i + 1, :, :, ::-1]))
    model.generator = None
    np.testing.assert_allclose(torch.cat(latents).numpy(), golden["unet_input_latents"], atol=1e-4, rtol=0)

    from lipsynckit_musetalk.audio import positional_encoding

    pe = positional_encoding(torch.from_numpy(golden["whisper_batch"]))
    np.testing.assert_allclose(pe.numpy(), golden["audio_pe"], atol=1e-4, rtol=0)

    out = model.step(
        torch.from_numpy(golden["unet_input_latents"]), torch.from_numpy(golden["whisper_batch"])
    )
    np.testing.assert_allclose(out.numpy(), golden["unet_output_latents"], atol=1e-4, rtol=0)

    decoded, rgb = networks.decode_latents(model.vae, torch.from_numpy(golden["unet_output_latents"]))
    np.testing.assert_allclose(decoded.numpy(), golden["vae_decoded_float"], atol=5e-4, rtol=0)
    bgr = rgb[..., ::-1].astype(np.int16)
    diff = np.abs(bgr - golden["output_bgr_uint8"].astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3


def test_generate_any_batch_matches_golden(model: MuseTalkModel, golden: dict[str, np.ndarray]) -> None:
    """generate() on PreparedFaces holding the golden latents gives the official faces, per item."""
    from lipsynckit.types import PreparedFace

    items = []
    for i in range(2):
        face = PreparedFace(
            box=(0, 0, 256, 256),
            crop=golden["crop_bgr_uint8"][i, :, :, ::-1].copy(),
            data={"latents": torch.from_numpy(golden["unet_input_latents"][i])},
        )
        items.append(WorkItem(0, i, face, torch.from_numpy(golden["whisper_batch"][i])))
    both = model.generate(ModelBatch(items))
    single = model.generate(ModelBatch(items[1:]))
    for i in range(2):
        assert both[i].shape == (256, 256, 3) and both[i].dtype == np.uint8
        d = np.abs(both[i][..., ::-1].astype(np.int16) - golden["output_bgr_uint8"][i].astype(np.int16))
        assert d.max() <= 1 and (d > 0).mean() <= 1e-3
    assert np.abs(single[0].astype(np.int16) - both[1].astype(np.int16)).max() <= 1


def test_scheduler_runs_musetalk_in_three_overlapping_stages(
    model: MuseTalkModel, golden: dict[str, np.ndarray], cuda_stand_ins: list[str]
) -> None:
    """MuseTalk goes to the scheduler as to_device / compute / to_host; through the CUDA-streams path
    (stand-in streams on this CPU) six frames from two jobs come back per job, in order, each the
    official face of its golden latents."""
    from lipsynckit.pipeline import scheduler_target
    from lipsynckit.scheduler import BatchScheduler, SchedulerOptions
    from lipsynckit.types import PreparedFace

    assert scheduler_target(model) is model
    sched = BatchScheduler(model, SchedulerOptions(max_batch=4, max_wait_ms=20, queue_size=16))
    sched._cuda = True
    with sched:
        jobs = [sched.open_job(), sched.open_job()]
        for j, job in enumerate(jobs):
            for k in range(3):
                i = (j + k) % 2
                face = PreparedFace(
                    box=(0, 0, 256, 256),
                    crop=golden["crop_bgr_uint8"][i, :, :, ::-1].copy(),
                    data={"latents": torch.from_numpy(golden["unet_input_latents"][i])},
                )
                job.submit(WorkItem(job.id, k, face, torch.from_numpy(golden["whisper_batch"][i])))
            job.close()
        outs = [list(job.results()) for job in jobs]
        stats = sched.stats()
    for j, out in enumerate(outs):
        assert [k for k, _ in out] == [0, 1, 2]
        for k, face in out:
            want = golden["output_bgr_uint8"][(j + k) % 2].astype(np.int16)
            d = np.abs(face[..., ::-1].astype(np.int16) - want)
            assert d.max() <= 1 and (d > 0).mean() <= 1e-3
    assert cuda_stand_ins.count("sync") == stats.batches >= 2


def test_prepare_generate_composite_real_photo(model: MuseTalkModel, grace_hopper_jpg: Path) -> None:
    frame = read_rgb(grace_hopper_jpg)
    h, w = frame.shape[:2]
    face = Face(box=np.array([170, 120, 350, 330], dtype=np.float32))  # the face in grace_hopper.jpg
    prepared = model.prepare(frame, face)
    x1, y1, x2, y2 = prepared.box
    assert (x1, y1, x2) == (170, 120, 350) and y2 == min(330 + 10, h)  # v1.5 extra margin
    assert prepared.crop.shape == (256, 256, 3)
    expected_crop = cv2.resize(frame[y1:y2, x1:x2], (256, 256), interpolation=cv2.INTER_LANCZOS4)
    np.testing.assert_array_equal(prepared.crop, expected_crop)
    assert tuple(prepared.data["latents"].shape) == (8, 32, 32)
    assert prepared.data["parsed"] is True

    # avatar mode: the prepared face survives torch.save / torch.load(weights_only=True)
    buf = io.BytesIO()
    torch.save({"box": list(prepared.box), "data": prepared.data}, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)
    assert torch.equal(back["data"]["latents"], prepared.data["latents"])

    audio = torch.randn(2, 50, 384, generator=torch.Generator().manual_seed(0))
    out = model.generate(ModelBatch([WorkItem(0, i, prepared, audio[i]) for i in range(2)]))
    assert not np.array_equal(out[0], out[1])  # the audio window conditions the face
    result = model.composite(frame, prepared, out[0])
    assert result.shape == frame.shape and result.dtype == np.uint8
    bx1, by1, bx2, by2 = prepared.data["blend_box"]
    outside = np.ones((h, w), dtype=bool)
    outside[max(0, by1) : by2, max(0, bx1) : bx2] = False
    np.testing.assert_array_equal(result[outside], frame[outside])
    # the upper half of the expanded box is never blended
    top = by1 + (by2 - by1) // 2 - blending.blur_kernel(bx2 - bx1, 0.05) // 2 - 1
    np.testing.assert_array_equal(result[max(0, by1) : top], frame[max(0, by1) : top])
    assert np.any(result != frame)


def test_v10_unet_not_confused_with_whisper_bin(small_models: Path) -> None:
    # v1.0 needs musetalk/pytorch_model.bin; whisper/pytorch_model.bin must not be taken for it
    with pytest.raises(WeightsError, match="musetalk/pytorch_model.bin"):
        plugin_v10.find_weights(small_models)


def test_feathered_fallback_without_parsing(
    reference_dir: Path, tmp_path: Path, astronaut_png: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = build_models_dir(tmp_path / "models", reference_dir, small=True, parsing=False)
    with caplog.at_level(logging.WARNING):
        m = plugin.load(weights=models, device="cpu", options={"latent_sampling": "mode"})
    assert "feathered" in caplog.text
    frame = read_rgb(astronaut_png)
    prepared = m.prepare(frame, Face(box=np.array([180, 40, 290, 190])))
    assert prepared.data["parsed"] is False
    mask = prepared.data["blend_mask"]
    k = blending.blur_kernel(mask.shape[1], 0.05)
    assert mask.max() == 255 and mask[: mask.shape[0] // 2 - k // 2 - 1].max() == 0
    # mode sampling is deterministic
    again = m.prepare(frame, Face(box=np.array([180, 40, 290, 190])))
    assert torch.equal(again.data["latents"], prepared.data["latents"])
    with pytest.raises(NoFaceError):
        m.prepare(frame, Face(box=np.array([600, 600, 700, 700])))


@pytest.mark.gpu
def test_step_golden_fp16_cuda(small_models: Path, golden: dict[str, np.ndarray]) -> None:
    """fp16 on CUDA (--use_float16): same step within fp16 tolerance."""
    m = plugin.load(weights=small_models, device="cuda", dtype=torch.float16)
    assert isinstance(m, MuseTalkModel) and m.dtype == torch.float16
    out = m.step(torch.from_numpy(golden["unet_input_latents"]), torch.from_numpy(golden["whisper_batch"]))
    ref = golden["unet_output_latents"]
    assert np.abs(out.float().cpu().numpy() - ref).max() <= 1e-2 * np.abs(ref).max()
    faces = m.decode(torch.from_numpy(golden["unet_output_latents"]))
    diff = np.abs(faces[..., ::-1].astype(np.int16) - golden["output_bgr_uint8"].astype(np.int16))
    assert diff.mean() < 2.0


def test_single_file_resolves_the_rest_of_the_layout(small_models: Path) -> None:
    files = plugin.find_weights(small_models / "musetalkV15" / "unet.pth")
    assert files["unet"] == small_models / "musetalkV15" / "unet.pth"
    assert files["vae"] == small_models / "sd-vae" / "diffusion_pytorch_model.bin"
    assert files["whisper"] == small_models / "whisper" / "pytorch_model.bin"
    assert files["face_parse"] == small_models / "face-parse-bisent" / "79999_iter.pth"


def test_v10_legacy_layout_and_audio(
    reference_dir: Path, tmp_path: Path, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 2024 layout (sd-vae-ft-mse/, whisper/tiny.pt) with v1.0 and the legacy audio front end.

    MuseTalk follows the one verification rule of every model: a file the user points at is trusted on
    load and checked by `lipsynckit weights verify`; a file in the lipsynckit cache is verified on load.
    """
    import shutil

    from lipsynckit.cli import main
    from lipsynckit.media import load_audio
    from lipsynckit_musetalk import audio as A

    from mt_helpers import write_unet, write_vae, write_whisper_openai

    mt = reference_dir / "musetalk"
    root = tmp_path / "models"
    write_unet(
        root / "musetalk",
        mt / "golden_step_manifest_unet.json",
        mt / "golden_step_unet_config.json",
        "pytorch_model.bin",
    )
    write_vae(
        root / "sd-vae-ft-mse", mt / "golden_step_manifest_vae.json", mt / "golden_step_vae_config.json"
    )
    write_whisper_openai(root / "whisper" / "tiny.pt", mt / "manifest_whisper_tiny_encoder.json")
    opts = {"audio_frontend": "legacy", "latent_sampling": "mode"}
    # tiny.pt has a known sha256: `weights verify` refuses our deterministic stand-in ...
    assert main(["weights", "verify", "musetalk_v10", "--weights", str(root)]) == 2
    out = capsys.readouterr().out
    assert "BAD: sha256 mismatch for tiny.pt" in out
    assert f"vae          found    {root / 'sd-vae-ft-mse' / 'diffusion_pytorch_model.bin'}" in out
    # ... and the same file in the lipsynckit cache is refused on load (we put it there: it must be the release)
    cached = tmp_path / "lsk_home" / "weights" / "musetalk_v10" / "whisper" / "tiny.pt"
    cached.parent.mkdir(parents=True)
    shutil.move(root / "whisper" / "tiny.pt", cached)
    with pytest.raises(WeightsError, match="sha256 mismatch for tiny.pt"):
        plugin_v10.load(weights=root, device="cpu", options=opts)
    # pointed at by the user, it loads (verification is `weights verify`'s job)
    shutil.move(cached, root / "whisper" / "tiny.pt")
    m = plugin_v10.load(weights=root, device="cpu", options=opts)
    assert isinstance(m, MuseTalkModel)
    assert m.options.version == "v1.0" and m.options.resolved_parsing_mode() == "legacy"
    clip = load_audio(speech_wav, sample_rate=16000)
    feats = m.audio_features(clip, 25)
    kept = (clip.num_samples // 160) // 2  # whisper frames the legacy path keeps (one segment)
    assert feats.shape == (kept // 2 + 2 if kept % 2 == 0 else (kept + 1) // 2 + 1, 50, 384)
    # clamped edges: the first window repeats whisper frame 0 in its first slots
    assert torch.equal(feats[0, :5], feats[0, 5:10])
    head = MuseTalkModel(
        m.info, m.unet, m.vae, m.whisper, None, m.options.model_copy(update={"audio_frontend": "head"})
    )
    assert head.audio_features(clip, 25).shape[0] == int(clip.num_samples / 16000 * 25)
    assert A.SAMPLE_RATE == m.info.audio_sample_rate


def test_missing_whisper_is_one_clear_error(small_models: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    for rel in ["musetalkV15/unet.pth", "sd-vae/diffusion_pytorch_model.bin", "sd-vae/config.json"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(small_models / rel)
    with pytest.raises(WeightsError) as err:
        plugin.find_weights(root)
    # one error naming both forms Whisper-tiny comes in, and where to get each
    assert "none of 'whisper/pytorch_model.bin', 'whisper/tiny.pt' for model 'musetalk' found" in str(
        err.value
    )
    assert "hf://openai/whisper-tiny/pytorch_model.bin" in (err.value.remedy or "")
    assert "openaipublic.azureedge.net" in (err.value.remedy or "")
    ok, reason = plugin.status(root)
    assert not ok and "whisper/tiny.pt" in reason
