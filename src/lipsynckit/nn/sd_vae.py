"""The stabilityai/sd-vae-ft-mse ``AutoencoderKL`` architecture, as a plain dict.

The published ``config.json`` has no ``scaling_factor`` key (diffusers then uses 0.18215); a plugin
that wants the key spelled out adds :data:`SD_VAE_SCALING_FACTOR` to its copy.
"""

from __future__ import annotations

from typing import Any

SD_VAE_SCALING_FACTOR = 0.18215

SD_VAE_FT_MSE_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 256,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
