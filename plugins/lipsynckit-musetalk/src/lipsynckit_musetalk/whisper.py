"""MuseTalk's Whisper-tiny encoder: the shared :mod:`lipsynckit.nn.whisper` encoder run with
transformers' numerics (``scaled_dot_product_attention``, LayerNorms in the activations' dtype).

Loads a transformers folder/file or an openai-whisper ``tiny.pt``.
"""

from __future__ import annotations

from pathlib import Path

from lipsynckit.nn.whisper import WhisperEncoder
from lipsynckit.nn.whisper import load_whisper_encoder as _load


def load_whisper_encoder(path: str | Path) -> WhisperEncoder:
    """The encoder from an HF folder (config.json + pytorch_model.bin / model.safetensors), an HF
    weight file, or an openai-whisper ``tiny.pt``, with MuseTalk's (transformers) numerics."""
    return _load(path, numerics="transformers")


__all__ = ["WhisperEncoder", "load_whisper_encoder"]
