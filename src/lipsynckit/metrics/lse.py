"""The arithmetic of syncnet_python's ``evaluate()``: windows, shifted distances, LSE-D and LSE-C.

Kept apart from the network so it can be checked on constructed features and reused with any
embedding pair. Both official scripts (syncnet_python ``SyncNetInstance.evaluate`` and Wav2Lip's
``evaluation/scores_LSE/SyncNetInstance_calc_scores.py``) share this arithmetic exactly; they differ
only in what they return (the first returns the distance table, the second the minimum distance)
and in the 224x224 resize of the frames, which lives in :mod:`lipsynckit.metrics.syncnet`.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.signal import medfilt

__all__ = ["LSEResult", "num_windows", "shifted_distances", "lse_from_features"]

VIDEO_FPS = 25
AUDIO_RATE = 16000
SAMPLES_PER_FRAME = AUDIO_RATE // VIDEO_FPS  # 640
MFCC_PER_FRAME = 4  # MFCCs run at 100 Hz: 4 columns per video frame
WINDOW_FRAMES = 5  # SyncNet sees 5 frames (0.2 s) against 20 MFCC columns


class LSEResult(BaseModel):
    """LSE scores of one clip, with the intermediate tables for inspection.

    ``lse_d`` (lower is better) is the smallest mean embedding distance over the shifts;
    ``lse_c`` (higher is better) is the median of the mean distances minus that minimum;
    ``av_offset`` (frames) is ``vshift - argmin``: positive when the matching audio lies *before*
    the video (the video lags the audio). ``dists[v][k]`` pairs video window ``v`` with audio window
    ``v + k - vshift`` (zero vectors beyond the ends, as the official code pads).
    """

    model_config = ConfigDict(frozen=True)

    lse_d: float
    lse_c: float
    av_offset: int
    vshift: int
    num_windows: int
    mean_dist: list[float] = Field(repr=False)
    dists: list[list[float]] = Field(repr=False)
    frame_conf: list[float] = Field(default_factory=list, repr=False)

    def dists_array(self) -> np.ndarray:
        """``dists`` as a ``(num_windows, 2*vshift+1)`` float32 array."""
        return np.asarray(self.dists, dtype=np.float32).reshape(self.num_windows, 2 * self.vshift + 1)

    def mean_dist_array(self) -> np.ndarray:
        return np.asarray(self.mean_dist, dtype=np.float32)


def num_windows(num_frames: int, num_samples: int) -> int:
    """Windows the official code scores: ``min(frames, samples // 640) - 5`` (one fewer than fit)."""
    return min(num_frames, num_samples // SAMPLES_PER_FRAME) - WINDOW_FRAMES


def shifted_distances(video_feat: torch.Tensor, audio_feat: torch.Tensor, vshift: int = 15) -> torch.Tensor:
    """``(n, 2*vshift+1)`` Euclidean distances between each video window and the audio windows around it.

    The audio features are padded with ``vshift`` zero rows at both ends; torch's
    ``pairwise_distance`` adds ``eps=1e-6`` to the difference before the norm, as in the original.
    """
    win = 2 * vshift + 1
    padded = torch.nn.functional.pad(audio_feat, (0, 0, vshift, vshift))
    rows = [
        torch.nn.functional.pairwise_distance(video_feat[[i], :].repeat(win, 1), padded[i : i + win, :])
        for i in range(len(video_feat))
    ]
    return torch.stack(rows, 0)


def lse_from_features(video_feat: torch.Tensor, audio_feat: torch.Tensor, vshift: int = 15) -> LSEResult:
    """Reduce SyncNet embeddings of matching windows to LSE-D, LSE-C and the AV offset.

    Follows the official reduction step by step (mean over windows per shift, argmin, plain
    median of the 31 means) so that results agree to float rounding.
    """
    if video_feat.shape != audio_feat.shape or video_feat.ndim != 2 or len(video_feat) == 0:
        raise ValueError(
            f"need two non-empty (windows, dim) feature tables of one shape, got {tuple(video_feat.shape)} "
            f"and {tuple(audio_feat.shape)}"
        )
    vf = video_feat.detach().to("cpu", torch.float32)
    af = audio_feat.detach().to("cpu", torch.float32)
    d = shifted_distances(vf, af, vshift)  # (n, win)
    mdist = torch.mean(d.t(), 1)  # official: mean(stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    median = torch.median(mdist)
    conf = median - minval
    fdist = d[:, int(minidx)].numpy()
    fconf = float(median) - fdist
    fconfm = medfilt(fconf.astype(np.float64), kernel_size=9) if len(fconf) else fconf
    return LSEResult(
        lse_d=float(minval),
        lse_c=float(conf),
        av_offset=int(vshift - int(minidx)),
        vshift=vshift,
        num_windows=int(d.shape[0]),
        mean_dist=[float(x) for x in mdist],
        dists=d.tolist(),
        frame_conf=[float(x) for x in fconfm],
    )
