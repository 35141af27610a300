"""Lip-sync quality metrics: SyncNet LSE-D / LSE-C (needs ``syncnet_v2.model``) and weight-free checks.

The weight-free metrics always run; see ``docs/metrics.md`` for what each one measures and why.
"""

from __future__ import annotations

from lipsynckit.metrics.lse import LSEResult, lse_from_features, num_windows, shifted_distances
from lipsynckit.metrics.mfcc import MFCCOptions, mfcc, syncnet_mfcc
from lipsynckit.metrics.syncnet import (
    SYNCNET_V2,
    SyncNetOptions,
    SyncNetS,
    SyncNetScorer,
    audio_to_pcm16,
    crop_faces_from_track,
    jpeg_roundtrip_bgr,
)
from lipsynckit.metrics.weightfree import (
    AVAgreement,
    WeightFreeMetrics,
    WeightFreeOptions,
    audio_mouth_agreement,
    mouth_box_from_face,
    mouth_openness,
    mouth_patches,
    speech_band_envelope,
    speech_envelope,
    ssim,
    ssim_map,
    weightfree_metrics,
)

__all__ = [
    "SYNCNET_V2",
    "AVAgreement",
    "LSEResult",
    "MFCCOptions",
    "SyncNetOptions",
    "SyncNetS",
    "SyncNetScorer",
    "WeightFreeMetrics",
    "WeightFreeOptions",
    "audio_mouth_agreement",
    "audio_to_pcm16",
    "crop_faces_from_track",
    "jpeg_roundtrip_bgr",
    "lse_from_features",
    "mfcc",
    "mouth_box_from_face",
    "mouth_openness",
    "mouth_patches",
    "num_windows",
    "shifted_distances",
    "speech_band_envelope",
    "speech_envelope",
    "ssim",
    "ssim_map",
    "syncnet_mfcc",
    "weightfree_metrics",
]
