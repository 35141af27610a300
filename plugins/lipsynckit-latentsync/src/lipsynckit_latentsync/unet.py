"""LatentSync's 3-D UNet: a Stable-Diffusion UNet run frame by frame, with audio cross-attention
and AnimateDiff-style temporal self-attention ("motion modules").

Written from the architecture of ``latentsync/models/{unet,unet_blocks,resnet,attention,motion_module}.py``
(bytedance/LatentSync, Apache-2.0). Module and parameter names follow the released
``latentsync_unet.pt`` exactly so that its state dict loads strictly; diffusers supplies the
feed-forward (GEGLU) and the timestep embedding, which are the same modules the official code imports.

Tensors are ``(batch, channels, frames, height, width)``. Every 2-D layer runs on ``(batch*frames)``
images; the ResNet group norms and the final norm see the whole 5-D tensor (statistics over all
frames of a clip), as the official code does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class MotionModuleConfig(BaseModel):
    """``motion_module_kwargs`` of the released configs."""

    model_config = ConfigDict(extra="forbid")

    num_attention_heads: int = 8
    num_transformer_block: int = 1
    attention_block_types: list[str] = Field(default_factory=lambda: ["Temporal_Self", "Temporal_Self"])
    temporal_position_encoding: bool = True
    temporal_position_encoding_max_len: int = 24
    temporal_attention_dim_div: int = 1
    zero_initialize: bool = True


class UNet3DConfig(BaseModel):
    """The ``model:`` section of ``configs/unet/stage2*.yaml`` (defaults: the released 1.5/1.6 config)."""

    model_config = ConfigDict(extra="ignore")

    act_fn: str = "silu"
    add_audio_layer: bool = True
    attention_head_dim: int = 8
    block_out_channels: list[int] = Field(default_factory=lambda: [320, 640, 1280, 1280])
    center_input_sample: bool = False
    cross_attention_dim: int = 384
    down_block_types: list[str] = Field(
        default_factory=lambda: [
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "DownBlock3D",
        ]
    )
    mid_block_type: str = "UNetMidBlock3DCrossAttn"
    up_block_types: list[str] = Field(
        default_factory=lambda: [
            "UpBlock3D",
            "CrossAttnUpBlock3D",
            "CrossAttnUpBlock3D",
            "CrossAttnUpBlock3D",
        ]
    )
    downsample_padding: int = 1
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    in_channels: int = 13
    layers_per_block: int = 2
    mid_block_scale_factor: float = 1.0
    norm_eps: float = 1e-5
    norm_num_groups: int = 32
    out_channels: int = 4
    sample_size: int = 64
    resnet_time_scale_shift: str = "default"
    use_motion_module: bool = True
    motion_module_resolutions: list[int] = Field(default_factory=lambda: [1, 2, 4, 8])
    motion_module_mid_block: bool = False
    motion_module_decoder_only: bool = False
    motion_module_type: str = "Vanilla"
    motion_module_kwargs: MotionModuleConfig = Field(default_factory=MotionModuleConfig)


def _frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(b, c, f, h, w) -> (b*f, c, h, w), frame index fastest (``b c f h w -> (b f) c h w``)."""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def _batch_to_frames(x: torch.Tensor, f: int) -> torch.Tensor:
    bf, c, h, w = x.shape
    return x.reshape(bf // f, f, c, h, w).permute(0, 2, 1, 3, 4)


class InflatedConv3d(nn.Conv2d):
    """A 2-D convolution applied to every frame."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        f = x.shape[2]
        return _batch_to_frames(super().forward(_frames_to_batch(x)), f)


class Downsample3D(nn.Module):
    def __init__(self, channels: int, padding: int = 1) -> None:
        super().__init__()
        self.conv = InflatedConv3d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample3D(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = InflatedConv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, output_size: Any = None) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.bfloat16:  # nearest upsampling has no bf16 kernel everywhere
            x = x.float()
        if output_size is None:
            x = F.interpolate(x, scale_factor=[1.0, 2.0, 2.0], mode="nearest")
        else:
            x = F.interpolate(x, size=output_size, mode="nearest")
        return self.conv(x.to(dtype))


class ResnetBlock3D(nn.Module):
    """GroupNorm → SiLU → conv → (+ time) → GroupNorm → SiLU → conv, plus a 1×1 shortcut when widths differ."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        groups: int,
        eps: float,
        output_scale_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = InflatedConv3d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = InflatedConv3d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = (
            InflatedConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.output_scale_factor


class Attention(nn.Module):
    """Multi-head attention with the official names (``to_q/to_k/to_v/to_out.0``), no q/k/v bias."""

    def __init__(
        self, query_dim: int, heads: int, dim_head: int, cross_attention_dim: int | None = None
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        kv_dim = cross_attention_dim if cross_attention_dim is not None else query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(kv_dim, inner, bias=False)
        self.to_v = nn.Linear(kv_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.reshape(b, n, self.heads, d // self.heads).permute(0, 2, 1, 3)

    def attend(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(ctx)), self._split(self.to_v(ctx))
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, d = out.shape
        out = out.permute(0, 2, 1, 3).reshape(b, n, h * d)
        return self.to_out[1](self.to_out[0](out))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(x, context)


class BasicTransformerBlock(nn.Module):
    """Spatial self-attention, audio cross-attention, GEGLU feed-forward (pre-LayerNorm each)."""

    def __init__(
        self, dim: int, heads: int, dim_head: int, cross_attention_dim: int, add_audio_layer: bool
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head)
        self.norm2: nn.LayerNorm | None = nn.LayerNorm(dim) if add_audio_layer else None
        self.attn2: Attention | None = (
            Attention(dim, heads, dim_head, cross_attention_dim) if add_audio_layer else None
        )
        self.ff = FeedForward(dim, dropout=0.0, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        if self.attn2 is not None and self.norm2 is not None and context is not None:
            if context.dim() == 4:
                context = context.reshape(-1, *context.shape[2:])
            x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer3DModel(nn.Module):
    """Per-frame spatial transformer (1×1 conv projections, as ``use_linear_projection=False``)."""

    def __init__(
        self,
        heads: int,
        dim_head: int,
        in_channels: int,
        groups: int,
        cross_attention_dim: int,
        add_audio_layer: bool,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(groups, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, cross_attention_dim, add_audio_layer)]
        )
        self.proj_out = nn.Conv2d(inner, in_channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        f = x.shape[2]
        x = _frames_to_batch(x)
        bf, _, h, w = x.shape
        residual = x
        x = self.proj_in(self.norm(x))
        inner = x.shape[1]
        x = x.permute(0, 2, 3, 1).reshape(bf, h * w, inner)
        for block in self.transformer_blocks:
            x = block(x, context)
        x = x.reshape(bf, h, w, inner).permute(0, 3, 1, 2).contiguous()
        x = self.proj_out(x) + residual
        return _batch_to_frames(x, f)


class PositionalEncoding(nn.Module):
    """Sinusoidal temporal position code; the buffer ``pe`` is computed, so checkpoints may omit it."""

    def __init__(self, d_model: int, max_len: int = 24) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.dropout = nn.Dropout(0.0)
        self.register_buffer("pe", self.compute(d_model, max_len))

    @staticmethod
    def compute(d_model: int, max_len: int, device: torch.device | None = None) -> torch.Tensor:
        position = torch.arange(max_len, device=device).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2, device=device) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(1, max_len, d_model, device=device)
        pe[0, :, 0::2] = torch.sin(position * div_term)
        pe[0, :, 1::2] = torch.cos(position * div_term)
        return pe

    def reset(self) -> None:
        """Recompute ``pe`` in place (after ``to_empty`` left it uninitialised)."""
        buf: torch.Tensor = self.pe  # type: ignore[assignment]
        pe = self.compute(self.d_model, self.max_len, device=buf.device)
        with torch.no_grad():
            buf.copy_(pe.to(buf.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        buf: torch.Tensor = self.pe  # type: ignore[assignment]
        return self.dropout(x + buf[:, : x.size(1)].to(x.dtype))


class TemporalAttention(Attention):
    """Self-attention across the frames of each spatial position (``VersatileAttention``, mode Temporal)."""

    def __init__(self, dim: int, heads: int, dim_head: int, position_encoding: bool, max_len: int) -> None:
        super().__init__(dim, heads, dim_head)
        self.pos_encoder = PositionalEncoding(dim, max_len) if position_encoding else None

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, video_length: int = 1
    ) -> torch.Tensor:
        bf, s, c = x.shape
        b = bf // video_length
        x = x.reshape(b, video_length, s, c).permute(0, 2, 1, 3).reshape(b * s, video_length, c)
        if self.pos_encoder is not None:
            x = self.pos_encoder(x)
        out = self.attend(x)
        return out.reshape(b, s, video_length, c).permute(0, 2, 1, 3).reshape(bf, s, c)


class TemporalTransformerBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        block_types: list[str],
        position_encoding: bool,
        max_len: int,
    ) -> None:
        super().__init__()
        for name in block_types:
            if name != "Temporal_Self":
                raise ValueError(
                    f"unsupported motion attention block {name!r} (released configs use Temporal_Self)"
                )
        self.attention_blocks = nn.ModuleList(
            [TemporalAttention(dim, heads, dim_head, position_encoding, max_len) for _ in block_types]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in block_types])
        self.ff = FeedForward(dim, dropout=0.0, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, video_length: int) -> torch.Tensor:
        for attn, norm in zip(self.attention_blocks, self.norms, strict=True):
            x = attn(norm(x), video_length=video_length) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer3DModel(nn.Module):
    def __init__(self, in_channels: int, cfg: MotionModuleConfig, groups: int = 32) -> None:
        super().__init__()
        heads = cfg.num_attention_heads
        dim_head = in_channels // heads // cfg.temporal_attention_dim_div
        inner = heads * dim_head
        self.norm = nn.GroupNorm(groups, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(in_channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [
                TemporalTransformerBlock(
                    inner,
                    heads,
                    dim_head,
                    cfg.attention_block_types,
                    cfg.temporal_position_encoding,
                    cfg.temporal_position_encoding_max_len,
                )
                for _ in range(cfg.num_transformer_block)
            ]
        )
        self.proj_out = nn.Linear(inner, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.shape[2]
        x = _frames_to_batch(x)
        bf, c, h, w = x.shape
        residual = x
        x = self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, video_length=f)
        x = self.proj_out(x).reshape(bf, h, w, c).permute(0, 3, 1, 2).contiguous()
        return _batch_to_frames(x + residual, f)


class VanillaTemporalModule(nn.Module):
    def __init__(self, in_channels: int, cfg: MotionModuleConfig) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer3DModel(in_channels, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_transformer(x)


def _motion(channels: int, cfg: UNet3DConfig, use: bool) -> Any:
    if not use:
        return None
    if cfg.motion_module_type != "Vanilla":
        raise ValueError(f"unsupported motion_module_type {cfg.motion_module_type!r}")
    return VanillaTemporalModule(channels, cfg.motion_module_kwargs)


class _Block(nn.Module):
    """Shared forward of the down/up blocks: resnet → (spatial+audio attention) → (motion module)."""

    resnets: nn.ModuleList
    motion_modules: nn.ModuleList
    attentions: nn.ModuleList | None

    def _layer(
        self, i: int, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None
    ) -> torch.Tensor:
        x = self.resnets[i](x, temb)
        if self.attentions is not None:
            x = self.attentions[i](x, context)
        mm = self.motion_modules[i]
        if mm is not None:
            x = mm(x)
        return x


def _cross_attentions(channels: int, cfg: UNet3DConfig, layers: int) -> nn.ModuleList:
    """One audio cross-attention transformer per layer of a block (down and up blocks alike)."""
    heads = cfg.attention_head_dim
    return nn.ModuleList(
        [
            Transformer3DModel(
                heads,
                channels // heads,
                channels,
                cfg.norm_num_groups,
                cfg.cross_attention_dim,
                cfg.add_audio_layer,
            )
            for _ in range(layers)
        ]
    )


class DownBlock3D(_Block):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        temb: int,
        cfg: UNet3DConfig,
        layers: int,
        add_downsample: bool,
        cross: bool,
        motion: bool,
    ) -> None:
        super().__init__()
        groups, eps = cfg.norm_num_groups, cfg.norm_eps
        self.attentions = _cross_attentions(out_ch, cfg, layers) if cross else None
        self.resnets = nn.ModuleList(
            [ResnetBlock3D(in_ch if i == 0 else out_ch, out_ch, temb, groups, eps) for i in range(layers)]
        )
        self.motion_modules = nn.ModuleList([_motion(out_ch, cfg, motion) for _ in range(layers)])
        self.downsamplers = (
            nn.ModuleList([Downsample3D(out_ch, cfg.downsample_padding)]) if add_downsample else None
        )

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        states = []
        for i in range(len(self.resnets)):
            x = self._layer(i, x, temb, context)
            states.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, states


class UpBlock3D(_Block):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        prev_ch: int,
        temb: int,
        cfg: UNet3DConfig,
        layers: int,
        add_upsample: bool,
        cross: bool,
        motion: bool,
    ) -> None:
        super().__init__()
        groups, eps = cfg.norm_num_groups, cfg.norm_eps
        self.attentions = _cross_attentions(out_ch, cfg, layers) if cross else None
        resnets = []
        for i in range(layers):
            skip = in_ch if i == layers - 1 else out_ch
            res_in = prev_ch if i == 0 else out_ch
            resnets.append(ResnetBlock3D(res_in + skip, out_ch, temb, groups, eps))
        self.resnets = nn.ModuleList(resnets)
        self.motion_modules = nn.ModuleList([_motion(out_ch, cfg, motion) for _ in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample3D(out_ch)]) if add_upsample else None

    def forward(
        self,
        x: torch.Tensor,
        skips: list[torch.Tensor],
        temb: torch.Tensor,
        context: torch.Tensor | None,
        upsample_size: Any = None,
        cache: DeepCacheState | None = None,
    ) -> torch.Tensor:
        n = len(self.resnets)
        for i in range(n):
            if cache is not None and i == n - 1:
                cache.features = x  # what the final layer sees besides the conv_in skip
            x = torch.cat([x, skips.pop()], dim=1)
            x = self._layer(i, x, temb, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class UNetMidBlock3DCrossAttn(nn.Module):
    def __init__(self, ch: int, temb: int, cfg: UNet3DConfig) -> None:
        super().__init__()
        groups, eps = cfg.norm_num_groups, cfg.norm_eps
        scale = cfg.mid_block_scale_factor
        self.attentions = _cross_attentions(ch, cfg, 1)
        self.resnets = nn.ModuleList(
            [ResnetBlock3D(ch, ch, temb, groups, eps, scale), ResnetBlock3D(ch, ch, temb, groups, eps, scale)]
        )
        self.motion_modules = nn.ModuleList(
            [_motion(ch, cfg, cfg.use_motion_module and cfg.motion_module_mid_block)]
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        if self.motion_modules[0] is not None:
            x = self.motion_modules[0](x)
        return self.resnets[1](x, temb)


class UNet3DConditionModel(nn.Module):
    """The LatentSync denoiser: 13 input channels (noisy latents, mask, masked-image and reference
    latents), audio embeddings as cross-attention context, 4 output channels (predicted noise)."""

    def __init__(self, config: UNet3DConfig | dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = config if isinstance(config, UNet3DConfig) else UNet3DConfig.model_validate(config or {})
        if cfg.resnet_time_scale_shift != "default":
            raise ValueError("only resnet_time_scale_shift='default' is supported (the released configs)")
        if cfg.mid_block_type != "UNetMidBlock3DCrossAttn":
            raise ValueError(f"unknown mid_block_type {cfg.mid_block_type!r}")
        self.config = cfg
        ch = cfg.block_out_channels
        temb = ch[0] * 4
        n = len(ch)
        self.conv_in = InflatedConv3d(cfg.in_channels, ch[0], 3, padding=1)
        self.time_proj = Timesteps(ch[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        self.time_embedding = TimestepEmbedding(ch[0], temb)

        # registration order = the official state_dict order (down, up, then mid)
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        out = ch[0]
        for i, kind in enumerate(cfg.down_block_types):
            inp, out = out, ch[i]
            motion = (
                cfg.use_motion_module
                and (2**i in cfg.motion_module_resolutions)
                and not cfg.motion_module_decoder_only
            )
            self.down_blocks.append(
                DownBlock3D(inp, out, temb, cfg, cfg.layers_per_block, i < n - 1, _is_cross(kind), motion)
            )
        rev = list(reversed(ch))
        out = rev[0]
        for i, kind in enumerate(cfg.up_block_types):
            prev, out = out, rev[i]
            inp = rev[min(i + 1, n - 1)]
            motion = cfg.use_motion_module and (2 ** (3 - i) in cfg.motion_module_resolutions)
            self.up_blocks.append(
                UpBlock3D(
                    inp, out, prev, temb, cfg, cfg.layers_per_block + 1, i < n - 1, _is_cross(kind), motion
                )
            )
        self.mid_block = UNetMidBlock3DCrossAttn(ch[-1], temb, cfg)
        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, ch[0], eps=cfg.norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = InflatedConv3d(ch[0], cfg.out_channels, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    @property
    def num_upsamplers(self) -> int:
        return len(self.config.block_out_channels) - 1

    def reset_computed_buffers(self) -> None:
        """Recompute the temporal position codes (needed after building on ``meta`` + ``to_empty``)."""
        for m in self.modules():
            if isinstance(m, PositionalEncoding):
                m.reset()

    def embed_time(
        self, timestep: torch.Tensor | float | int, batch: int, device: torch.device
    ) -> torch.Tensor:
        t = timestep
        if not torch.is_tensor(t):
            t = torch.tensor([t], dtype=torch.float64 if isinstance(t, float) else torch.int64, device=device)
        elif t.ndim == 0:
            t = t[None].to(device)
        t = t.expand(batch)
        return self.time_embedding(self.time_proj(t).to(self.dtype))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        cache: DeepCacheState | None = None,
    ) -> torch.Tensor:
        """Predict the noise of ``sample`` (b, 13, f, h, w) at ``timestep``; ``encoder_hidden_states``
        are the audio windows, (b*f, 50, 384). ``cache`` enables DeepCache-style reuse of the deep
        features (see :class:`DeepCacheState`)."""
        up_factor = 2**self.num_upsamplers
        forward_size = any(s % up_factor != 0 for s in sample.shape[-2:])
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        emb = self.embed_time(timestep, sample.shape[0], sample.device)
        ctx = encoder_hidden_states

        x = self.conv_in(sample)
        if cache is not None and cache.use_cached():
            # DeepCache skip step: everything but conv_in and the last layer of the final up block is
            # taken from the last full step (the official helper returns cached outputs for them).
            assert cache.features is not None
            last: UpBlock3D = self.up_blocks[-1]  # type: ignore[assignment]
            x = last._layer(len(last.resnets) - 1, torch.cat([cache.features, x], dim=1), emb, ctx)
        else:
            skips: list[torch.Tensor] = [x]
            for block in self.down_blocks:
                x, states = block(x, emb, ctx)
                skips += states
            x = self.mid_block(x, emb, ctx)
            for i, up in enumerate(self.up_blocks):
                block_up: UpBlock3D = up  # type: ignore[assignment]
                is_final = i == len(self.up_blocks) - 1
                n_res = len(block_up.resnets)
                block_skips = skips[-n_res:]
                skips = skips[:-n_res]
                size = skips[-1].shape[2:] if (forward_size and not is_final) else None
                x = block_up(x, block_skips, emb, ctx, size, cache if is_final else None)
        x = self.conv_out(self.conv_act(self.conv_norm_out(x)))
        if cache is not None:
            cache.advance()
        return x


def _is_cross(kind: str) -> bool:
    kind = kind[7:] if kind.startswith("UNetRes") else kind
    if kind in ("CrossAttnDownBlock3D", "CrossAttnUpBlock3D"):
        return True
    if kind in ("DownBlock3D", "UpBlock3D"):
        return False
    raise ValueError(f"unknown block type {kind!r}")


class DeepCacheState:
    """DeepCache (Ma et al., 2023) as the official inference enables it (``DeepCacheSDHelper`` with
    ``cache_interval=3, cache_branch_id=0``): on every ``interval``-th UNet call of a denoising loop
    the whole network runs and the input of the final up block's last layer is stored; on the calls
    in between only ``conv_in`` and that last layer run, on the stored features. On LatentSync's UNet
    this is exactly what the helper's wrapped forwards compute (its unwrapped motion modules re-run
    on cached inputs and so give the cached values).

    Use one state per chunk of frames: the stored features belong to that chunk's latents.
    """

    def __init__(self, interval: int = 3) -> None:
        if interval < 1:
            raise ValueError("DeepCache interval must be >= 1")
        self.interval = interval
        self.step = 0
        self.features: torch.Tensor | None = None

    def use_cached(self) -> bool:
        return self.features is not None and self.step % self.interval != 0

    def advance(self) -> None:
        self.step += 1
