"""Network pieces shared by several plugins (plain torch + numpy; no diffusers, no transformers).

- :mod:`lipsynckit.nn.whisper`: Whisper's log-mel front end and a Whisper audio encoder that loads
  transformers and openai-whisper checkpoints (MuseTalk, LatentSync).
- :mod:`lipsynckit.nn.sd_vae`: the stabilityai/sd-vae-ft-mse ``AutoencoderKL`` config (MuseTalk,
  LatentSync).
"""

from __future__ import annotations

from lipsynckit.lazy import lazy_getattr
from lipsynckit.nn.sd_vae import SD_VAE_FT_MSE_CONFIG, SD_VAE_SCALING_FACTOR

_WHISPER = (
    "WhisperDims",
    "WhisperEncoder",
    "encoder_from_state_dict",
    "encoder_state_dict",
    "load_whisper_encoder",
    "log_mel",
    "mel_filters",
    "segment_states",
)

# PEP 562: torch only when a Whisper piece is used
__getattr__ = lazy_getattr(__name__, globals(), dict.fromkeys(_WHISPER, ".whisper"))

__all__ = ["SD_VAE_FT_MSE_CONFIG", "SD_VAE_SCALING_FACTOR", *_WHISPER]
