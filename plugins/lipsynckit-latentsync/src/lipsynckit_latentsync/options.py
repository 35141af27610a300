"""Options of the LatentSync plugin; defaults reproduce the official ``inference.sh``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lipsynckit.nn.sd_vae import SD_VAE_FT_MSE_CONFIG, SD_VAE_SCALING_FACTOR

# configs/scheduler_config.json of bytedance/LatentSync
SCHEDULER_CONFIG: dict[str, object] = {
    "_class_name": "DDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
    "skip_prk_steps": True,
}

# stabilityai/sd-vae-ft-mse config.json; the official inference sets scaling 0.18215 and shift 0
VAE_CONFIG: dict[str, object] = {**SD_VAE_FT_MSE_CONFIG, "scaling_factor": SD_VAE_SCALING_FACTOR}
VAE_SHIFT = 0.0


class LatentSyncOptions(BaseModel):
    """Inference settings. Defaults: 20 DDIM steps, guidance 1.5, DeepCache on (interval 3), seed
    1247, 16-frame chunks sharing one initial noise, float16 on CUDA GPUs that support it."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(20, ge=1, description="DDIM steps (--inference_steps)")
    guidance: float = Field(
        1.5, ge=0.0, description="classifier-free guidance scale over the audio (--guidance_scale)"
    )
    seed: int | None = Field(
        1247, description="seed of the job's noise and VAE posterior draws (official --seed); None: random"
    )
    deepcache: bool = Field(True, description="DeepCache feature reuse (--enable_deepcache)")
    deepcache_interval: int = Field(3, ge=1, description="full UNet pass every N steps (official 3)")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (official 0)")
    align_dtype: Literal["float16", "float32"] = Field(
        "float16",
        description="precision of the alignment warp and restoration (official AlignRestore: float16)",
    )
    round_landmarks: bool = Field(
        True, description="round the 106 landmarks to pixels (the official detector does)"
    )
    approximate_landmarks: bool = Field(
        True,
        description="without 106-point landmarks, estimate the anchors from 68 points or the box (warned, "
        "not official); False: such faces are an error",
    )
    exact_restore: bool = Field(
        True,
        description="generate returns the float32 decoder output (in [-1, 1] for real weights) so composite "
        "restores it un-quantised, as the official pipeline does; False: uint8 faces (a quarter of the "
        "memory per face waiting for composite, up to 1 grey level off, more where decoded values leave "
        "[-1, 1])",
    )
