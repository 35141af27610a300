"""Model folders in the official layouts, filled with the shared deterministic weights.

Each writer lays files out exactly as the official download does, so a benchmark goes through the
user-facing loaders and pays the real cost (real sizes, real arithmetic, meaningless pixels):

- Wav2Lip: ``wav2lip.pth``, the training-checkpoint container (``module.`` keys under ``state_dict``).
- MuseTalk: ``models/`` of ``download_weights.sh`` (``musetalkV15/unet.pth`` + ``musetalk.json``,
  ``sd-vae/`` with the 0.4-era attention names, ``whisper/`` in the transformers layout,
  ``face-parse-bisent/79999_iter.pth``).
- LatentSync: ``checkpoints/`` of the Hugging Face repos (``latentsync_unet.pt``, ``whisper/tiny.pt``,
  ``sd-vae-ft-mse/diffusion_pytorch_model.safetensors``).

The logic is the tests' (``tests/*/mt_helpers.py``, ``ls_testutil.py``, ``w2l_helpers.py``), duplicated
here because benchmark code must not import tests. ``reference`` is the folder holding the per-model
manifests (``tests/reference`` in the repository); the weights follow ``lipsynckit.testing.detweights``.
"""

from __future__ import annotations

import gc
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

Manifest = dict[str, tuple[int, ...]]


def _detweights(
    reference: Path,
) -> tuple[Callable[[Manifest], dict[str, torch.Tensor]], Callable[..., Manifest]]:
    """``deterministic_state_dict`` and ``load_manifest`` (the convention lives in lipsynckit.testing)."""
    from lipsynckit.testing import deterministic_state_dict, load_manifest

    return deterministic_state_dict, load_manifest


def _state(reference: Path, manifest: Path, skip_suffix: str | None = None) -> dict[str, torch.Tensor]:
    det, load = _detweights(reference)
    man = load(manifest)
    if skip_suffix is not None:
        man = {k: v for k, v in man.items() if not k.endswith(skip_suffix)}
    return det(man)


# -- Wav2Lip -------------------------------------------------------------------------------------------


def wav2lip_checkpoint(path: Path, reference: Path) -> Path:
    """``wav2lip.pth`` as released: DataParallel ``module.`` keys in the training container."""
    sd = _state(reference, reference / "wav2lip" / "manifest_wav2lip.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "global_step": 0}, path)
    return path


# -- MuseTalk ------------------------------------------------------------------------------------------

_NEW_TO_OLD = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}

# openai whisper-tiny's encoder in transformers' config terms (the released whisper/config.json, trimmed)
WHISPER_TINY_CONFIG = {
    "d_model": 384,
    "encoder_attention_heads": 6,
    "encoder_layers": 4,
    "encoder_ffn_dim": 1536,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "model_type": "whisper",
}


def _old_vae_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Current diffusers attention keys -> the names sd-vae-ft-mse's .bin (diffusers 0.4) uses."""
    out = {}
    for k, v in sd.items():
        if ".attentions." in k:
            for new, old in _NEW_TO_OLD.items():
                k = k.replace(f".{new}.", f".{old}.")
        out[k] = v
    return out


def musetalk_models(root: Path, reference: Path, version: str = "v1.5") -> Path:
    """The official MuseTalk ``models/`` folder at the released sizes (about 3.6 GB in float32)."""
    from lipsynckit_musetalk.bisenet import BiSeNet

    mt = reference / "musetalk"
    folder, fname = ("musetalkV15", "unet.pth") if version == "v1.5" else ("musetalk", "pytorch_model.bin")
    (root / folder).mkdir(parents=True, exist_ok=True)
    torch.save(_state(reference, mt / "manifest_unet.json"), root / folder / fname)
    gc.collect()  # the UNet's 3.4 GB go before the next file is built
    shutil.copyfile(mt / f"unet_config_{version}.json", root / folder / "musetalk.json")

    (root / "sd-vae").mkdir(parents=True, exist_ok=True)
    vae = _old_vae_names(_state(reference, mt / "manifest_vae_sd-vae-ft-mse.json"))
    torch.save(vae, root / "sd-vae" / "diffusion_pytorch_model.bin")
    shutil.copyfile(mt / "vae_config_sd-vae-ft-mse.json", root / "sd-vae" / "config.json")

    (root / "whisper").mkdir(parents=True, exist_ok=True)
    enc = _state(reference, mt / "manifest_whisper_tiny_encoder.json")
    torch.save({f"model.{k}": v for k, v in enc.items()}, root / "whisper" / "pytorch_model.bin")
    (root / "whisper" / "config.json").write_text(json.dumps(WHISPER_TINY_CONFIG))

    det, _ = _detweights(reference)
    names = {k: tuple(v.shape) for k, v in BiSeNet().state_dict().items()}
    (root / "face-parse-bisent").mkdir(parents=True, exist_ok=True)
    torch.save(det(names), root / "face-parse-bisent" / "79999_iter.pth")
    return root


# -- LatentSync ----------------------------------------------------------------------------------------

# openai-whisper's ModelDimensions of tiny (the decoder half is never used by LatentSync)
_TINY_DIMS = {
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


def latentsync_checkpoints(root: Path, reference: Path) -> Path:
    """The official LatentSync ``checkpoints/`` folder (UNet 1.27 G parameters, 5.1 GB in float32).

    1.5 and 1.6 share the UNet architecture; the plugin (``latentsync`` or ``latentsync_15``) decides the
    face resolution. The computed ``pos_encoder.pe`` buffers are left out, as the loader allows.
    """
    from safetensors.torch import save_file

    from lipsynckit_latentsync.audio import WhisperEncoder

    det, _ = _detweights(reference)
    root.mkdir(parents=True, exist_ok=True)
    unet = _state(reference, reference / "latentsync" / "manifest_unet.json", skip_suffix="pos_encoder.pe")
    torch.save({"state_dict": unet, "global_step": 0}, root / "latentsync_unet.pt")
    del unet
    gc.collect()

    enc = WhisperEncoder()
    sd = det({f"encoder.{k}": tuple(v.shape) for k, v in enc.state_dict().items()})
    sd["encoder.positional_embedding"] = enc.state_dict()["positional_embedding"].clone()  # sinusoids
    sd["decoder.token_embedding.weight"] = torch.zeros(4, 384)  # a stand-in the loader must ignore
    (root / "whisper").mkdir(parents=True, exist_ok=True)
    torch.save({"dims": _TINY_DIMS, "model_state_dict": sd}, root / "whisper" / "tiny.pt")

    # sd-vae-ft-mse: the same parameter names as MuseTalk's manifest (current diffusers names)
    vae = _state(reference, reference / "musetalk" / "manifest_vae_sd-vae-ft-mse.json")
    (root / "sd-vae-ft-mse").mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in vae.items()},
        str(root / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors"),
    )
    return root
