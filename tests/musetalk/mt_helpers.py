"""Writers for MuseTalk weight files in the official containers, filled with deterministic weights.

Each writer produces exactly what the official download lays out (flat torch.save'd UNet dict +
musetalk.json; diffusers VAE folder with the 0.4-era attention names; transformers whisper folder or
an openai-whisper ``tiny.pt``; ``79999_iter.pth``), so the tests go through the user-facing loaders.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch

from lipsynckit.testing import deterministic_state_dict, load_manifest


def read_rgb(path: Path) -> np.ndarray:
    """A photo as an RGB uint8 array (core's frame convention)."""
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


_NEW_TO_OLD = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def old_vae_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename current diffusers attention keys to the names sd-vae-ft-mse's .bin uses."""
    out = {}
    for k, v in sd.items():
        if ".attentions." in k:
            for new, old in _NEW_TO_OLD.items():
                k = k.replace(f".{new}.", f".{old}.")
        out[k] = v
    return out


def write_unet(folder: Path, manifest: Path, config: Path, filename: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sd = deterministic_state_dict(load_manifest(manifest))
    path = folder / filename
    torch.save(sd, path)
    del sd
    gc.collect()
    shutil.copyfile(config, folder / "musetalk.json")
    return path


def write_vae(folder: Path, manifest: Path, config: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(
        old_vae_names(deterministic_state_dict(load_manifest(manifest))),
        folder / "diffusion_pytorch_model.bin",
    )
    shutil.copyfile(config, folder / "config.json")
    return folder


WHISPER_TINY_CONFIG = {
    "d_model": 384,
    "encoder_attention_heads": 6,
    "encoder_layers": 4,
    "encoder_ffn_dim": 1536,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "model_type": "whisper",
}


def write_whisper_hf(folder: Path, manifest: Path) -> Path:
    """transformers layout as on the hub (WhisperForConditionalGeneration: ``model.encoder.*``)."""
    folder.mkdir(parents=True, exist_ok=True)
    sd = deterministic_state_dict(load_manifest(manifest))
    torch.save({f"model.{k}": v for k, v in sd.items()}, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(WHISPER_TINY_CONFIG))
    return folder


def to_openai_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        k = k.replace("encoder.embed_positions.weight", "encoder.positional_embedding")
        k = k.replace("encoder.layers.", "encoder.blocks.")
        for a, b in [
            ("self_attn.q_proj", "attn.query"),
            ("self_attn.k_proj", "attn.key"),
            ("self_attn.v_proj", "attn.value"),
            ("self_attn.out_proj", "attn.out"),
            ("self_attn_layer_norm", "attn_ln"),
            ("fc1", "mlp.0"),
            ("fc2", "mlp.2"),
            ("final_layer_norm", "mlp_ln"),
        ]:
            k = k.replace(f".{a}.", f".{b}.")
        k = k.replace("encoder.layer_norm.", "encoder.ln_post.")
        out[k] = v
    return out


def write_whisper_openai(path: Path, manifest: Path) -> Path:
    """openai-whisper container: {'dims': ..., 'model_state_dict': ...} (kept fp32 for the golden)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6, "n_audio_layer": 4}
    sd = to_openai_names(deterministic_state_dict(load_manifest(manifest)))
    torch.save({"dims": dims, "model_state_dict": sd}, path)
    return path


def write_bisenet(path: Path) -> Path:
    from lipsynckit_musetalk.bisenet import BiSeNet

    path.parent.mkdir(parents=True, exist_ok=True)
    names = {k: tuple(v.shape) for k, v in BiSeNet().state_dict().items()}
    torch.save(deterministic_state_dict(names), path)
    return path


def build_models_dir(
    root: Path, ref: Path, version: str = "v1.5", small: bool = False, parsing: bool = True
) -> Path:
    """The official ``models/`` folder (download_weights.sh layout) with deterministic weights."""
    mt = ref / "musetalk"
    folder, fname = ("musetalkV15", "unet.pth") if version == "v1.5" else ("musetalk", "pytorch_model.bin")
    if small:
        write_unet(
            root / folder, mt / "golden_step_manifest_unet.json", mt / "golden_step_unet_config.json", fname
        )
        write_vae(root / "sd-vae", mt / "golden_step_manifest_vae.json", mt / "golden_step_vae_config.json")
    else:
        write_unet(root / folder, mt / "manifest_unet.json", mt / f"unet_config_{version}.json", fname)
        write_vae(
            root / "sd-vae", mt / "manifest_vae_sd-vae-ft-mse.json", mt / "vae_config_sd-vae-ft-mse.json"
        )
    write_whisper_hf(root / "whisper", mt / "manifest_whisper_tiny_encoder.json")
    if parsing:
        write_bisenet(root / "face-parse-bisent" / "79999_iter.pth")
    return root
