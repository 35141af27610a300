"""Whisper's log-mel front end and audio encoder, shared by the MuseTalk and LatentSync plugins.

Plain torch + numpy (no transformers, no openai-whisper). The encoder keeps openai-whisper's
parameter names (``blocks.N.attn.query`` ...); transformers checkpoints (``encoder.layers.N.
self_attn.q_proj`` ...) are renamed on load. The plugins reproduce different upstream stacks, whose
rounding differs, so the numerics are chosen per encoder rather than fixed here:

- ``numerics="transformers"``: ``scaled_dot_product_attention`` (one 1/sqrt(d) scale) and
  LayerNorms in the activations' dtype, as transformers' Whisper runs (MuseTalk).
- ``numerics="openai"``: q and k each scaled by d**-0.25, softmax in float32, LayerNorms computed
  in float32, as openai-whisper runs (LatentSync).

The mel filterbank likewise comes in two roundings (see :func:`mel_filters`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lipsynckit.errors import WeightsError

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
SEGMENT_FRAMES = 3000  # 30 s of mel frames per encoder call
FEATURES_PER_SECOND = 50  # encoder frames per second

WhisperNumerics = Literal["transformers", "openai"]

# ----------------------------------------------------------------------------------------------
# Log-mel front end


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    f = np.asarray(f, dtype=np.float64)
    step = 200.0 / 3
    knee_hz = 1000.0
    knee_mel = knee_hz / step
    log_step = math.log(6.4) / 27.0
    above = knee_mel + np.log(np.maximum(f, 1e-10) / knee_hz) / log_step
    return np.where(f >= knee_hz, above, f / step)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    step = 200.0 / 3
    knee_hz = 1000.0
    knee_mel = knee_hz / step
    log_step = math.log(6.4) / 27.0
    return np.where(m >= knee_mel, knee_hz * np.exp(log_step * (m - knee_mel)), step * m)


@lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int, librosa_rounding: bool) -> np.ndarray:
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sample_rate / 2.0)), n_mels + 2)
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    tri = np.maximum(0.0, np.minimum(rising, falling))
    area = 2.0 / (edges[2 : n_mels + 2] - edges[:n_mels])
    if librosa_rounding:
        weights = tri.astype(np.float32)
        weights *= area[:, None]  # float64 product, rounded into the float32 array
        return weights
    return (tri * area[:, None]).astype(np.float32)


def mel_filters(
    sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, *, librosa_rounding: bool = True
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters on the Slaney mel scale, area-normalised.

    ``librosa_rounding=True`` rounds the triangles to float32 before the normalisation, as
    ``librosa.filters.mel`` does (openai-whisper's ``mel_filters.npz``, LatentSync);
    ``False`` computes everything in float64 and rounds once (MuseTalk). They differ by ~1 ulp.
    """
    return _mel_filters(sample_rate, n_fft, n_mels, librosa_rounding).copy()


_FILTER_TENSORS: dict[tuple[str, bool], torch.Tensor] = {}


def log_mel(wave: torch.Tensor, *, librosa_rounding: bool = True) -> torch.Tensor:
    """Whisper's normalised log-mel of a 16 kHz mono waveform: (80, len // 160) float32.

    Hann 400 / hop 160 centred reflect STFT on ``wave``'s device, last frame dropped, power through
    the mel filters, log10 clipped at 8 below the maximum of the whole input, then (x + 4) / 4.
    """
    wave = wave.to(torch.float32).reshape(-1)
    key = (str(wave.device), librosa_rounding)
    if key not in _FILTER_TENSORS:
        filters = mel_filters(librosa_rounding=librosa_rounding)
        _FILTER_TENSORS[key] = torch.from_numpy(filters).to(wave.device)
    window = torch.hann_window(N_FFT, device=wave.device)
    spec = torch.stft(wave, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = spec[..., :-1].abs() ** 2
    logspec = torch.clamp(_FILTER_TENSORS[key] @ power, min=1e-10).log10()
    logspec = torch.maximum(logspec, logspec.max() - 8.0)
    return (logspec + 4.0) / 4.0


# ----------------------------------------------------------------------------------------------
# Encoder


@dataclass(frozen=True)
class WhisperDims:
    """Encoder dimensions (whisper-tiny defaults)."""

    n_mels: int = 80
    n_ctx: int = 1500
    d_model: int = 384
    n_heads: int = 6
    n_layers: int = 4
    ffn_dim: int = 1536


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's fixed sinusoidal position table, (length, channels): sines then cosines."""
    inc = np.log(max_timescale) / (channels // 2 - 1)
    freqs = torch.exp(-inc * torch.arange(channels // 2))
    angles = torch.arange(length)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class _LayerNorm(nn.LayerNorm):
    def __init__(self, d: int, float32: bool) -> None:
        super().__init__(d)
        self.float32 = float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.float32:
            return super().forward(x.float()).type(x.dtype)
        return super().forward(x)


class _Attention(nn.Module):
    def __init__(self, d: int, heads: int, numerics: WhisperNumerics) -> None:
        super().__init__()
        self.heads = heads
        self.numerics = numerics
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.query(x), self.key(x), self.value(x)
        if self.numerics == "openai":
            s = (d // h) ** -0.25
            qh = q.view(b, n, h, -1).permute(0, 2, 1, 3) * s
            kt = k.view(b, n, h, -1).permute(0, 2, 3, 1) * s
            vh = v.view(b, n, h, -1).permute(0, 2, 1, 3)
            w = F.softmax((qh @ kt).float(), dim=-1).to(qh.dtype)
            return self.out((w @ vh).permute(0, 2, 1, 3).flatten(start_dim=2))

        def heads_first(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, h, d // h).transpose(1, 2)

        o = F.scaled_dot_product_attention(heads_first(q), heads_first(k), heads_first(v))
        return self.out(o.transpose(1, 2).reshape(b, n, d))


class _Block(nn.Module):
    def __init__(self, dims: WhisperDims, numerics: WhisperNumerics) -> None:
        super().__init__()
        f32 = numerics == "openai"
        self.attn = _Attention(dims.d_model, dims.n_heads, numerics)
        self.attn_ln = _LayerNorm(dims.d_model, f32)
        self.mlp = nn.Sequential(
            nn.Linear(dims.d_model, dims.ffn_dim), nn.GELU(), nn.Linear(dims.ffn_dim, dims.d_model)
        )
        self.mlp_ln = _LayerNorm(dims.d_model, f32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder (openai-whisper parameter names); returns every hidden state."""

    def __init__(self, dims: WhisperDims | None = None, numerics: WhisperNumerics = "openai") -> None:
        super().__init__()
        self.dims = dims = dims or WhisperDims()
        self.numerics = numerics
        self.n_state = dims.d_model
        self.conv1 = nn.Conv1d(dims.n_mels, dims.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.d_model, dims.d_model, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(dims.n_ctx, dims.d_model))
        self.blocks = nn.ModuleList(_Block(dims, numerics) for _ in range(dims.n_layers))
        self.ln_post = _LayerNorm(dims.d_model, numerics == "openai")

    def forward(self, mel: torch.Tensor, final_norm: bool = False) -> tuple[torch.Tensor, ...]:
        """(B, n_mels, 2 * T) log-mel -> (stem + positions, block 1, ..., last block), each (B, T, C).

        ``final_norm`` passes the last state through ``ln_post`` (transformers' ``hidden_states``)
        or not (openai-whisper's block outputs).
        """
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        pos: torch.Tensor = self.positional_embedding  # type: ignore[assignment]
        pos = pos[: x.shape[1]]
        x = (x + pos).to(x.dtype) if self.numerics == "openai" else x + pos.to(x.dtype)
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        if final_norm:
            states[-1] = self.ln_post(x)
        return tuple(states)

    def hidden_states(self, mel: torch.Tensor, final_norm: bool = False) -> torch.Tensor:
        """The states of :meth:`forward` stacked: (B, T, n_layers + 1, C)."""
        return torch.stack(self(mel, final_norm), dim=2)


@torch.no_grad()
def segment_states(
    encoder: WhisperEncoder,
    mel: torch.Tensor,
    dtype: torch.dtype | None = None,
    final_norm: bool = False,
) -> torch.Tensor:
    """Encode a whole clip's log-mel (n_mels, N) as openai-whisper's transcribe loop cuts it.

    3000-frame segments, the last zero-padded in log-mel space; each keeps int(frames / 2)
    encoder rows. Returns (L, n_layers + 1, C) in ``dtype`` (default: the encoder's) on its device.
    """
    p = next(encoder.parameters())
    dtype = dtype or p.dtype
    total = mel.shape[-1]
    parts = []
    for seek in range(0, total, SEGMENT_FRAMES):
        end = min(seek + SEGMENT_FRAMES, total)
        seg = mel[:, seek : seek + SEGMENT_FRAMES]
        seg = F.pad(seg, (0, SEGMENT_FRAMES - seg.shape[-1]))
        states = encoder.hidden_states(seg[None].to(p.device, dtype), final_norm)[0]
        parts.append(states[: int((end - seek) / 2)])
    if not parts:
        return torch.zeros(0, len(encoder.blocks) + 1, encoder.n_state, device=p.device, dtype=dtype)
    return torch.cat(parts, dim=0)


# ----------------------------------------------------------------------------------------------
# Loading

_HF_TO_OPENAI = [
    (r"^embed_positions\.weight$", "positional_embedding"),
    (r"^layers\.(\d+)\.self_attn\.q_proj\.", r"blocks.\1.attn.query."),
    (r"^layers\.(\d+)\.self_attn\.k_proj\.", r"blocks.\1.attn.key."),
    (r"^layers\.(\d+)\.self_attn\.v_proj\.", r"blocks.\1.attn.value."),
    (r"^layers\.(\d+)\.self_attn\.out_proj\.", r"blocks.\1.attn.out."),
    (r"^layers\.(\d+)\.self_attn_layer_norm\.", r"blocks.\1.attn_ln."),
    (r"^layers\.(\d+)\.fc1\.", r"blocks.\1.mlp.0."),
    (r"^layers\.(\d+)\.fc2\.", r"blocks.\1.mlp.2."),
    (r"^layers\.(\d+)\.final_layer_norm\.", r"blocks.\1.mlp_ln."),
    (r"^layer_norm\.", "ln_post."),
]


def encoder_state_dict(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The encoder tensors of a full Whisper checkpoint, in this module's (openai-whisper) names.

    Accepts transformers names (``model.encoder.*`` / ``encoder.*``) and openai-whisper names
    (``encoder.blocks.*`` or bare ``blocks.*``); decoder tensors are dropped.
    """
    openai = any(".blocks." in k or k.startswith("blocks.") for k in sd)
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            continue
        k = key[len("model.") :] if key.startswith("model.") else key
        if k.startswith(("decoder.", "proj_out")):
            continue
        if k.startswith("encoder."):
            k = k[len("encoder.") :]
        elif not openai:
            continue
        if not openai:
            for pattern, repl in _HF_TO_OPENAI:
                k = re.sub(pattern, repl, k)
        out[k] = value
    return out


def _dims(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None) -> WhisperDims:
    """Dimensions from the config (openai ``dims`` or transformers config.json), else the tensors."""
    cfg = dict(config or {})
    base = WhisperDims()

    def pick(names: tuple[str, ...], key: str, axis: int, default: int) -> int:
        for name in names:
            if name in cfg:
                return int(cfg[name])
        return int(sd[key].shape[axis]) if key in sd else default

    layers = {k.split(".")[1] for k in sd if k.startswith("blocks.")}
    n_layers = int(cfg.get("n_audio_layer", cfg.get("encoder_layers", len(layers) or base.n_layers)))
    return WhisperDims(
        n_mels=pick(("n_mels", "num_mel_bins"), "conv1.weight", 1, base.n_mels),
        n_ctx=pick(("n_audio_ctx", "max_source_positions"), "positional_embedding", 0, base.n_ctx),
        d_model=pick(("n_audio_state", "d_model"), "conv1.weight", 0, base.d_model),
        n_heads=int(cfg.get("n_audio_head", cfg.get("encoder_attention_heads", base.n_heads))),
        n_layers=n_layers,
        ffn_dim=pick(("encoder_ffn_dim",), "blocks.0.mlp.0.weight", 0, base.ffn_dim),
    )


def encoder_from_state_dict(
    sd: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    *,
    numerics: WhisperNumerics = "openai",
    path: str | Path | None = None,
    what: str = "whisper encoder",
) -> WhisperEncoder:
    """Build the encoder for a Whisper checkpoint's tensors (either naming) and load it strictly."""
    from lipsynckit.weights import load_strict

    enc_sd = {k: v.float() for k, v in encoder_state_dict(sd).items()}
    if "conv1.weight" not in enc_sd:
        raise WeightsError(
            "no whisper encoder tensors found (expected encoder.conv1.weight ...)",
            path=path,
            stage="weights",
            remedy="pass openai/whisper-tiny (transformers folder) or openai-whisper tiny.pt",
        )
    model = WhisperEncoder(_dims(enc_sd, config), numerics=numerics)
    load_strict(model, enc_sd, path=path, what=what)
    return model.eval()


def load_whisper_encoder(path: str | Path, numerics: WhisperNumerics = "openai") -> WhisperEncoder:
    """Load from a transformers folder (config.json + pytorch_model.bin / model.safetensors), a
    transformers weight file, or an openai-whisper ``tiny.pt`` (``dims`` + ``model_state_dict``)."""
    from lipsynckit.weights import load_checkpoint

    p = Path(path)
    config: dict[str, Any] | None = None
    if p.is_dir():
        if (p / "config.json").is_file():
            config = json.loads((p / "config.json").read_text())
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
    raw: Any = load_checkpoint(p)
    if isinstance(raw, Mapping) and "model_state_dict" in raw:
        dims = raw.get("dims")
        config = dict(dims) if isinstance(dims, Mapping) else config
        raw = raw["model_state_dict"]
    if not isinstance(raw, Mapping):
        raise WeightsError("not a whisper checkpoint", path=p, stage="weights")
    return encoder_from_state_dict(raw, config, numerics=numerics, path=p)
