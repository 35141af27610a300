"""A small Whisper audio encoder in torch that loads both transformers and openai-whisper checkpoints.

MuseTalk only needs the encoder's five hidden states; depending on transformers for that would pull
a large dependency, so the encoder is written here (module names follow transformers' encoder,
openai names are renamed on load).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from lipsynckit.errors import WeightsError


class WhisperDims(BaseModel):
    """Encoder dimensions (whisper-tiny defaults)."""

    n_mels: int = 80
    n_ctx: int = 1500
    d_model: int = 384
    n_heads: int = 6
    n_layers: int = 4
    ffn_dim: int = 1536


class _Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class _Layer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = _Attention(d, heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder; ``forward`` returns the 5 hidden states MuseTalk stacks."""

    def __init__(self, dims: WhisperDims | None = None) -> None:
        super().__init__()
        self.dims = dims = dims or WhisperDims()
        self.conv1 = nn.Conv1d(dims.n_mels, dims.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.d_model, dims.d_model, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(dims.n_ctx, dims.d_model)
        self.layers = nn.ModuleList(
            _Layer(dims.d_model, dims.n_heads, dims.ffn_dim) for _ in range(dims.n_layers)
        )
        self.layer_norm = nn.LayerNorm(dims.d_model)

    def forward(self, mel: torch.Tensor, final_norm: bool = True) -> tuple[torch.Tensor, ...]:
        """(B, 80, 3000) log-mel -> (stem + positions, layer 1, ..., last layer).

        ``final_norm`` applies the encoder's final LayerNorm to the last state (transformers'
        ``hidden_states``, HEAD) or not (openai-whisper ``include_embeddings``, legacy).
        """
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        x = x + self.embed_positions.weight[: x.shape[1]].to(x.dtype)
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        if final_norm:
            states[-1] = self.layer_norm(x)
        return tuple(states)


_OPENAI_RENAMES = [
    (r"^positional_embedding$", "embed_positions.weight"),
    (r"^blocks\.(\d+)\.attn\.query\.", r"layers.\1.self_attn.q_proj."),
    (r"^blocks\.(\d+)\.attn\.key\.", r"layers.\1.self_attn.k_proj."),
    (r"^blocks\.(\d+)\.attn\.value\.", r"layers.\1.self_attn.v_proj."),
    (r"^blocks\.(\d+)\.attn\.out\.", r"layers.\1.self_attn.out_proj."),
    (r"^blocks\.(\d+)\.attn_ln\.", r"layers.\1.self_attn_layer_norm."),
    (r"^blocks\.(\d+)\.mlp\.0\.", r"layers.\1.fc1."),
    (r"^blocks\.(\d+)\.mlp\.2\.", r"layers.\1.fc2."),
    (r"^blocks\.(\d+)\.mlp_ln\.", r"layers.\1.final_layer_norm."),
    (r"^ln_post\.", "layer_norm."),
]


def encoder_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the encoder tensors of a full Whisper checkpoint, in this module's (transformers) names.

    Accepts transformers names (``model.encoder.*`` / ``encoder.*``) and openai-whisper names
    (``encoder.blocks.*``); decoder tensors are dropped.
    """
    out: dict[str, torch.Tensor] = {}
    openai = any(".blocks." in k or k.startswith("blocks.") for k in sd)
    for key, value in sd.items():
        k = key
        if k.startswith("model."):
            k = k[len("model.") :]
        if k.startswith("decoder.") or k.startswith("proj_out"):
            continue
        if k.startswith("encoder."):
            k = k[len("encoder.") :]
        elif not openai:
            continue
        if openai:
            for pat, rep in _OPENAI_RENAMES:
                k = re.sub(pat, rep, k)
        out[k] = value
    return out


def dims_from(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None) -> WhisperDims:
    """Encoder dimensions from the tensors, heads from the config (openai ``dims`` or HF config.json)."""
    d_model = int(sd["conv1.weight"].shape[0])
    heads = 6
    if config:
        heads = int(config.get("encoder_attention_heads", config.get("n_audio_head", heads)))
    n_layers = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    return WhisperDims(
        n_mels=int(sd["conv1.weight"].shape[1]),
        n_ctx=int(sd["embed_positions.weight"].shape[0]),
        d_model=d_model,
        n_heads=heads,
        n_layers=n_layers,
        ffn_dim=int(sd["layers.0.fc1.weight"].shape[0]),
    )


def load_whisper_encoder(path: str | Path) -> WhisperEncoder:
    """Load from an HF folder (config.json + pytorch_model.bin / model.safetensors), an HF weight
    file, or an openai-whisper ``tiny.pt`` (``dims`` + ``model_state_dict``)."""
    from lipsynckit.weights import load_checkpoint, load_strict

    p = Path(path)
    config: dict[str, Any] | None = None
    if p.is_dir():
        cfg = p / "config.json"
        if cfg.is_file():
            config = json.loads(cfg.read_text())
        for name in ("pytorch_model.bin", "model.safetensors", "tiny.pt"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise WeightsError(
                "no whisper weights in this folder",
                path=path,
                stage="weights",
                remedy="put openai/whisper-tiny's config.json + pytorch_model.bin (or tiny.pt) there",
            )
    elif (p.parent / "config.json").is_file():
        config = json.loads((p.parent / "config.json").read_text())
    raw = load_checkpoint(p)
    if isinstance(raw, Mapping) and "model_state_dict" in raw:
        dims = raw.get("dims")
        config = dict(dims) if isinstance(dims, Mapping) else config
        raw = raw["model_state_dict"]
    if not isinstance(raw, Mapping):
        raise WeightsError("not a whisper checkpoint", path=p, stage="weights")
    sd = {k: v.float() for k, v in encoder_state_dict(raw).items()}
    if "conv1.weight" not in sd:
        raise WeightsError(
            "no whisper encoder tensors found (expected encoder.conv1.weight ...)",
            path=p,
            stage="weights",
            remedy="pass openai/whisper-tiny (transformers folder) or openai-whisper tiny.pt",
        )
    model = WhisperEncoder(dims_from(sd, config))
    load_strict(model, sd, path=p, what="whisper encoder")
    return model.eval()
