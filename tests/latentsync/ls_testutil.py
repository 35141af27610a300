"""Shared builders for the LatentSync tests: the reference folder's small configs with the shared
deterministic weights, written in the official file containers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from lipsynckit.testing import deterministic_state_dict, load_manifest


def ref(reference_dir: Path, name: str) -> Path:
    return reference_dir / "latentsync" / name


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def golden_unet_config(reference_dir: Path) -> dict[str, Any]:
    return json.loads(ref(reference_dir, "golden_unet_config.json").read_text())


def golden_unet_state(reference_dir: Path) -> dict[str, torch.Tensor]:
    """Deterministic weights of the shrunken UNet; the computed pos_encoder.pe buffers are left out
    (the module's own values stand, as in the golden)."""
    man = load_manifest(ref(reference_dir, "golden_unet_manifest.json"))
    return deterministic_state_dict({k: v for k, v in man.items() if not k.endswith("pos_encoder.pe")})


def save_official_unet(path: Path, state: dict[str, torch.Tensor], step: int = 12345) -> Path:
    """The released container: ``torch.save({"state_dict": ..., "global_step": ...})``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "global_step": step}, path)
    return path


def golden_vae(reference_dir: Path) -> Any:
    from diffusers import AutoencoderKL

    cfg = json.loads(ref(reference_dir, "golden_pipeline_vae_config.json").read_text())
    vae = AutoencoderKL(**cfg)
    vae.load_state_dict(
        deterministic_state_dict(load_manifest(ref(reference_dir, "golden_pipeline_vae_manifest.json")))
    )
    return vae.eval()


TINY_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51865,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}


def save_openai_whisper_tiny(path: Path) -> Path:
    """An openai-whisper-format tiny.pt with deterministic encoder weights (the decoder half is a
    token stand-in: our loader must ignore it)."""
    from lipsynckit_latentsync.audio import WhisperEncoder

    enc = WhisperEncoder()
    man = {f"encoder.{k}": tuple(v.shape) for k, v in enc.state_dict().items()}
    sd = deterministic_state_dict(man)
    sd["encoder.positional_embedding"] = enc.state_dict()["positional_embedding"].clone()
    sd["decoder.token_embedding.weight"] = torch.zeros(4, 384)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": TINY_DIMS, "model_state_dict": sd}, path)
    return path


def save_diffusers_vae(path: Path, vae: Any) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(path))
    return path


def make_small_checkpoints(root: Path, reference_dir: Path) -> Path:
    """The official ``checkpoints/`` layout holding the reference folder's small architectures:
    ``latentsync_unet.pt``, ``whisper/tiny.pt``, ``sd-vae-ft-mse/diffusion_pytorch_model.safetensors``
    with its diffusers ``config.json``, and ``unet_config.yaml`` in the structure of the official
    ``configs/unet/stage2*.yaml`` (``data.resolution`` 64, the shrunken ``model:`` section)."""
    import yaml

    save_official_unet(root / "latentsync_unet.pt", golden_unet_state(reference_dir))
    save_openai_whisper_tiny(root / "whisper" / "tiny.pt")
    vae_dir = root / "sd-vae-ft-mse"
    save_diffusers_vae(vae_dir / "diffusion_pytorch_model.safetensors", golden_vae(reference_dir))
    vae_cfg = json.loads(ref(reference_dir, "golden_pipeline_vae_config.json").read_text())
    (vae_dir / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **vae_cfg}))
    stage2 = {"data": {"num_frames": 16, "resolution": 64}, "model": golden_unet_config(reference_dir)}
    (root / "unet_config.yaml").write_text(yaml.safe_dump(stage2))
    return root


def haar_face(rgb: np.ndarray, min_size: int = 60) -> tuple[int, int, int, int]:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = cascade.detectMultiScale(gray, 1.1, 5, minSize=(min_size, min_size))
    assert len(found) >= 1
    x, y, w, h = max(found, key=lambda b: b[2] * b[3])
    return int(x), int(y), int(w), int(h)


def landmarks_from_box(x: int, y: int, w: int, h: int) -> np.ndarray:
    """106 points with the three anchors LatentSync uses placed on the face (brows, nose)."""
    lm = np.tile([x + w / 2, y + h / 2], (106, 1)).astype(np.float32)
    lm[[43, 48, 49, 51, 50]] = [x + 0.3 * w, y + 0.3 * h]
    lm[101:106] = [x + 0.7 * w, y + 0.3 * h]
    lm[[74, 77, 83, 86]] = [x + 0.5 * w, y + 0.6 * h]
    return lm
