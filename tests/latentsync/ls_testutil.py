"""Shared builders for the LatentSync tests: the reference folder's small configs with the shared
deterministic weights, written in the official file containers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detweights import deterministic_state_dict, load_manifest


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
