"""SyncNet (syncnet_python, Chung & Zisserman 2016) and the LSE-D / LSE-C scores built on it.

LSE-D and LSE-C (Prajwal et al., Wav2Lip, 2020) are the lip-sync scores every paper reports; they
only mean something with the released ``syncnet_v2.model`` and the exact input arithmetic, so the
network here is the official ``SyncNetModel.S(num_layers_in_fc_layers=1024)`` with the official
parameter names, and the pipeline follows ``SyncNetInstance.evaluate``:

* video at 25 fps, frames **BGR** float 0..255 (no normalisation), 224x224;
* audio 16 kHz mono 16-bit, MFCC via :func:`lipsynckit.metrics.mfcc.syncnet_mfcc`;
* 5-frame windows against 20 MFCC columns, distances over shifts of +-15 frames
  (:mod:`lipsynckit.metrics.lse`).

What the frames must show: the official *LRS* protocol scores face-centred clips whole-frame
(every frame resized to 224x224). For ordinary videos the official ``run_pipeline.py`` first detects
and tracks the face and cuts a mouth-biased square around it; :func:`crop_faces_from_track` does
that cut from a :class:`~lipsynckit.types.FaceTrack` (our detectors' boxes are not S3FD's, so crops
are close to, not identical with, the official ones).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.signal import medfilt
from torch import nn

from lipsynckit.errors import AudioError, VideoError, WeightsError
from lipsynckit.metrics.lse import (
    AUDIO_RATE,
    MFCC_PER_FRAME,
    VIDEO_FPS,
    WINDOW_FRAMES,
    LSEResult,
    lse_from_features,
    num_windows,
)
from lipsynckit.metrics.mfcc import syncnet_mfcc
from lipsynckit.model import WeightFile, WeightSource
from lipsynckit.types import AudioClip, FaceTrack

log = logging.getLogger(__name__)

__all__ = [
    "SYNCNET_V2",
    "SyncNetS",
    "SyncNetOptions",
    "SyncNetScorer",
    "audio_to_pcm16",
    "crop_faces_from_track",
    "jpeg_roundtrip_bgr",
    "resample_frames_to_25fps",
]

SYNCNET_V2 = WeightFile(
    key="syncnet",
    filename="syncnet_v2.model",
    relpath="syncnet_v2.model",
    sha256=None,  # no published digest; record it on first use
    size_bytes=None,
    sources=[
        WeightSource(
            url="http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model", note="official"
        ),
        WeightSource(
            hf_repo="ByteDance/LatentSync-1.6", hf_filename="auxiliary/syncnet_v2.model", note="mirror"
        ),
    ],
    license="unstated (VGG Oxford download; syncnet_python code is MIT)",
    non_commercial=False,
    description="SyncNet audio-visual sync network used for LSE-D / LSE-C (syncnet_python)",
)
"""The weight record for ``syncnet_v2.model`` (a plain tensor dict, about 52 MiB, float32)."""


def _fc(out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, out_dim))


class SyncNetS(nn.Module):
    """syncnet_python ``SyncNetModel.S``: a 2-D CNN over 13x20 MFCCs and a 3-D CNN over 5 frames.

    Module indices (and so the state-dict names) follow the original ``nn.Sequential`` layouts;
    the embeddings are not normalised.
    """

    def __init__(self, num_layers_in_fc_layers: int = 1024) -> None:
        super().__init__()

        def bn_relu2(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]

        def bn_relu3(c: int) -> list[nn.Module]:
            return [nn.BatchNorm3d(c), nn.ReLU(inplace=True)]

        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=3, padding=1),
            *bn_relu2(64),
            nn.MaxPool2d(kernel_size=1, stride=1),
            nn.Conv2d(64, 192, kernel_size=3, padding=1),
            *bn_relu2(192),
            nn.MaxPool2d(kernel_size=3, stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            *bn_relu2(384),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            *bn_relu2(256),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            *bn_relu2(256),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 512, kernel_size=(5, 4)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = _fc(num_layers_in_fc_layers)
        self.netfclip = _fc(num_layers_in_fc_layers)
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2)),
            *bn_relu3(96),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            *bn_relu3(256),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            *bn_relu3(256),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            *bn_relu3(256),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            *bn_relu3(256),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6)),
            *bn_relu3(512),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 13, 20)`` MFCC windows -> ``(N, 1024)`` audio embeddings."""
        mid = self.netcnnaud(x)
        return self.netfcaud(mid.view(mid.size(0), -1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 5, 224, 224)`` BGR 0..255 frame windows -> ``(N, 1024)`` video embeddings."""
        mid = self.netcnnlip(x)
        return self.netfclip(mid.view(mid.size(0), -1))

    def forward(self, lip: torch.Tensor, mfcc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_lip(lip), self.forward_aud(mfcc)


class SyncNetOptions(BaseModel):
    """Options of the LSE evaluation; defaults reproduce the official scripts."""

    model_config = ConfigDict(frozen=True)

    vshift: int = Field(
        default=15, ge=1, description="largest shift searched, in frames (official scripts: 15)"
    )
    batch_size: int = Field(
        default=20, ge=1, description="windows per forward pass (official: 20); does not change results"
    )
    resize: bool = Field(
        default=True,
        description="resize every frame to 224x224 with INTER_LINEAR (Wav2Lip's calc_scores; a no-op on 224x224 input)",
    )
    crop_scale: float = Field(
        default=0.4, ge=0.0, description="run_pipeline.py crop_scale for crops from a face track"
    )
    smooth_kernel: int = Field(
        default=13, ge=1, description="median filter (frames) on face-track box size and centre"
    )
    pad_value: int = Field(
        default=110, ge=0, le=255, description="grey used where a crop runs past the frame"
    )
    jpeg_roundtrip: bool = Field(
        default=True,
        description=(
            "pass the 25 fps frames through JPEG as the official scripts do (ffmpeg's mjpeg encoder at its "
            "defaults, decoded by OpenCV); off = score the frames losslessly"
        ),
    )


def audio_to_pcm16(audio: AudioClip) -> np.ndarray:
    """16 kHz mono 16-bit samples, the way ffmpeg's ``pcm_s16le`` writes them (round half to even)."""
    clip = audio.mono()
    if clip.sample_rate != AUDIO_RATE:
        try:
            clip = clip.resample(AUDIO_RATE)
        except ImportError:  # core resampler not available: a polyphase resampler is close enough
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(AUDIO_RATE, clip.sample_rate)
            x = resample_poly(clip.numpy().astype(np.float64), AUDIO_RATE // g, clip.sample_rate // g)
            clip = AudioClip(torch.from_numpy(x.astype(np.float32)), AUDIO_RATE, clip.source)
    x = clip.numpy().astype(np.float64)
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


def resample_frames_to_25fps(num_frames: int, fps: float) -> np.ndarray:
    """Source frame index for each 25 fps output frame (nearest earlier frame, like a frame-rate filter).

    The official pipeline re-encodes with ffmpeg ``-r 25``; this index map is the same idea without
    the lossy re-encode (it may differ from ffmpeg by one frame at rounding boundaries).
    """
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if abs(fps - VIDEO_FPS) < 1e-6:
        return np.arange(num_frames, dtype=np.int64)
    n_out = int(np.floor(num_frames * VIDEO_FPS / fps + 1e-6))
    idx = np.floor(np.arange(n_out) * fps / VIDEO_FPS + 1e-6).astype(np.int64)
    return np.minimum(idx, num_frames - 1)


def jpeg_roundtrip_bgr(frames_rgb: np.ndarray) -> np.ndarray:
    """RGB frames -> JPEG -> BGR frames, the way the official scripts extract frames before scoring.

    ``ffmpeg -i clip -f image2 %06d.jpg`` encodes with the mjpeg encoder at its defaults (yuvj420p,
    200 kb/s rate control, qscale 2..31: strong quantisation on small frames) and syncnet_python
    reads the files back with ``cv2.imread``. The same encoder (FFmpeg via PyAV) runs here on one
    codec context so that its rate control sees the same frame sequence; files are decoded with
    OpenCV. The source colour path differs (the official one converts decoded YUV, this one RGB),
    so this is close to, not bit-identical with, the scripts.
    """
    from fractions import Fraction

    import av

    n, h, w, _ = frames_rgb.shape
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = w, h
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, VIDEO_FPS)  # frames are at 25 fps by now
    ctx.bit_rate = 200_000  # the ffmpeg command-line default for video encoders
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    packets: list[bytes] = []
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames_rgb[i]), format="rgb24").reformat(
            format="yuvj420p"
        )
        frame.pts = i
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    if len(packets) != n:
        raise VideoError(f"JPEG round trip produced {len(packets)} images for {n} frames", stage="metrics")
    for i, data in enumerate(packets):
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None or img.shape != (h, w, 3):
            raise VideoError(
                f"JPEG round trip failed at frame {i}", stage="metrics", remedy="pass jpeg_roundtrip=False"
            )
        out[i] = img
    return out


def crop_faces_from_track(
    frames_rgb: np.ndarray, track: FaceTrack, options: SyncNetOptions | None = None
) -> np.ndarray:
    """Mouth-biased 224x224 face crops as syncnet_python's ``run_pipeline.py`` cuts them (RGB uint8).

    Missing detections are linearly interpolated, box size and centre are median-filtered, the frame
    is padded with grey 110 and rows ``[cy - s, cy + (1 + 2c) s)``, columns
    ``[cx - (1 + c) s, cx + (1 + c) s)`` are cut (``s`` = half the larger box side, ``c`` = crop scale).
    """
    o = options or SyncNetOptions()
    n = len(frames_rgb)
    if len(track) != n:
        raise VideoError(
            f"face track has {len(track)} entries for {n} frames",
            stage="metrics",
            remedy="track the faces of exactly the frames you score",
        )
    boxes = track.boxes().astype(np.float64)
    found = ~np.isnan(boxes[:, 0])
    if not found.any():
        raise VideoError(
            "no face in any frame; SyncNet needs a face track", stage="metrics", remedy="check the video"
        )
    t = np.arange(n)
    boxes = np.stack([np.interp(t, t[found], boxes[found, j]) for j in range(4)], axis=1)
    s = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2.0
    cx = (boxes[:, 0] + boxes[:, 2]) / 2.0
    cy = (boxes[:, 1] + boxes[:, 3]) / 2.0
    if o.smooth_kernel > 1 and n > 1:
        # official kernel on official-length tracks (>= 100 frames); on shorter clips the kernel
        # shrinks to fit, since medfilt's zero padding would otherwise pull the ends towards 0
        k = o.smooth_kernel if o.smooth_kernel % 2 else o.smooth_kernel + 1
        k = min(k, n if n % 2 else n - 1)
        s, cx, cy = (medfilt(v, kernel_size=k) for v in (s, cx, cy))
    cs = o.crop_scale
    out = np.empty((n, 224, 224, 3), dtype=np.uint8)
    for i in range(n):
        bs = float(s[i])
        bsi = int(bs * (1 + 2 * cs))
        frame = np.pad(
            frames_rgb[i], ((bsi, bsi), (bsi, bsi), (0, 0)), mode="constant", constant_values=o.pad_value
        )
        my, mx = cy[i] + bsi, cx[i] + bsi
        face = frame[
            int(my - bs) : int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs))
        ]
        if face.size == 0:
            raise VideoError(f"empty face crop at frame {i}", stage="metrics", remedy="check the face track")
        out[i] = cv2.resize(face, (224, 224))
    return out


class SyncNetScorer:
    """LSE-D / LSE-C with the official SyncNet.

    >>> scorer = SyncNetScorer.load("syncnet_v2.model")              # doctest: +SKIP
    >>> scorer.score_video(face_frames_rgb, audio).lse_d              # doctest: +SKIP
    """

    def __init__(
        self, net: SyncNetS, options: SyncNetOptions | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.net = net.eval()
        self.options = options or SyncNetOptions()
        self.device = torch.device(device)
        self.net.to(self.device)

    @classmethod
    def from_state_dict(
        cls,
        state_dict: dict[str, torch.Tensor],
        options: SyncNetOptions | None = None,
        device: str | torch.device = "cpu",
        path: str | Path | None = None,
    ) -> SyncNetScorer:
        """Build from a tensor mapping with the official names; only ``num_batches_tracked`` may be absent."""
        from lipsynckit.weights import load_strict, unwrap_state_dict

        net = SyncNetS()
        load_strict(
            net,
            unwrap_state_dict(state_dict),
            path=path,
            ignore_missing=("num_batches_tracked",),
            what="syncnet_v2",
        )
        return cls(net, options, device)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        options: SyncNetOptions | None = None,
        device: str | torch.device = "cpu",
        download: bool = False,
    ) -> SyncNetScorer:
        """Load ``syncnet_v2.model`` from a path (file or folder) or the lipsynckit cache; never runs code from it."""
        from lipsynckit.weights import load_checkpoint, resolve, verify

        p = resolve(SYNCNET_V2, "syncnet", path, download=download)
        if not verify(p, SYNCNET_V2):  # no published digest: log it so users can pin their copy
            from lipsynckit.weights import sha256_file

            log.info("loading %s (sha256 %s)", p, sha256_file(p))
        sd = load_checkpoint(p)
        if not isinstance(sd, dict):
            raise WeightsError(f"expected a tensor dict, found {type(sd).__name__}", path=p, stage="weights")
        return cls.from_state_dict(sd, options, device, path=p)

    # -- embeddings -----------------------------------------------------------------------------

    def _windows_video(self, frames_bgr: np.ndarray, n_win: int) -> Iterator[torch.Tensor]:
        bs = self.options.batch_size
        for start in range(0, n_win, bs):
            stop = min(n_win, start + bs)
            clips = np.stack([frames_bgr[v : v + WINDOW_FRAMES] for v in range(start, stop)])  # (B,5,H,W,3)
            yield torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float()

    def _windows_audio(self, mfcc: np.ndarray, n_win: int) -> Iterator[torch.Tensor]:
        bs = self.options.batch_size
        cct = torch.from_numpy(mfcc.astype(np.float64)).float()
        w = WINDOW_FRAMES * MFCC_PER_FRAME
        for start in range(0, n_win, bs):
            stop = min(n_win, start + bs)
            yield torch.stack(
                [cct[None, :, v * MFCC_PER_FRAME : v * MFCC_PER_FRAME + w] for v in range(start, stop)]
            )

    @torch.inference_mode()
    def embed(
        self, frames_bgr: np.ndarray, mfcc: np.ndarray, n_win: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Video and audio embeddings ``(n_win, 1024)`` of BGR 224x224 uint8 frames and ``(13, T)`` MFCCs."""
        im, cc = [], []
        for v in self._windows_video(frames_bgr, n_win):
            im.append(self.net.forward_lip(v.to(self.device)).float().cpu())
        for a in self._windows_audio(mfcc, n_win):
            cc.append(self.net.forward_aud(a.to(self.device)).float().cpu())
        return torch.cat(im, 0), torch.cat(cc, 0)

    def score_bgr_pcm(self, frames_bgr: np.ndarray, pcm16: np.ndarray) -> LSEResult:
        """The official ``evaluate()`` on decoded data: 25 fps BGR frames and 16 kHz int16 PCM."""
        if frames_bgr.ndim != 4 or frames_bgr.shape[-1] != 3:
            raise VideoError(f"expected (N, H, W, 3) frames, got {frames_bgr.shape}", stage="metrics")
        if self.options.resize and frames_bgr.shape[1:3] != (224, 224):
            frames_bgr = np.stack([cv2.resize(f, (224, 224)) for f in frames_bgr])
        if frames_bgr.shape[1:3] != (224, 224):
            raise VideoError(
                f"SyncNet needs 224x224 frames, got {frames_bgr.shape[2]}x{frames_bgr.shape[1]}",
                stage="metrics",
                remedy="enable resize or crop the faces first",
            )
        n_win = num_windows(len(frames_bgr), len(pcm16))
        if n_win < 1:
            raise VideoError(
                f"too short for SyncNet: {len(frames_bgr)} frames and {len(pcm16)} samples give no 5-frame window",
                stage="metrics",
                remedy="score at least 6 frames (0.24 s) of video with as much audio",
            )
        if abs(len(pcm16) / AUDIO_RATE - len(frames_bgr) / VIDEO_FPS) > 0.1:
            log.info(
                "audio (%.2f s) and video (%.2f s) lengths differ; scoring the first %d windows",
                len(pcm16) / AUDIO_RATE,
                len(frames_bgr) / VIDEO_FPS,
                n_win,
            )
        mfcc = syncnet_mfcc(pcm16, AUDIO_RATE)
        im_feat, cc_feat = self.embed(np.ascontiguousarray(frames_bgr), mfcc, n_win)
        return lse_from_features(im_feat, cc_feat, self.options.vshift)

    def score_video(
        self,
        frames_rgb: np.ndarray,
        audio: AudioClip,
        fps: float = 25.0,
        face_track: FaceTrack | None = None,
    ) -> LSEResult:
        """LSE of RGB uint8 frames ``(N, H, W, 3)`` against their audio.

        Without ``face_track`` the frames are scored whole (resized to 224x224): pass face crops, as
        the official LRS protocol does. With ``face_track`` the syncnet_python crop is cut first.
        Frames at another rate are mapped to 25 fps; audio is resampled to 16 kHz mono.
        """
        frames = np.asarray(frames_rgb)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise VideoError(
                f"expected RGB uint8 frames (N, H, W, 3), got {frames.dtype} {frames.shape}", stage="metrics"
            )
        if audio.num_samples == 0:
            raise AudioError(
                "empty audio", path=audio.source, stage="metrics", remedy="pass the clip's audio track"
            )
        if face_track is not None:
            frames = crop_faces_from_track(frames, face_track, self.options)
        idx = resample_frames_to_25fps(len(frames), fps)
        if len(idx) != len(frames) or not np.array_equal(idx, np.arange(len(frames))):
            frames = frames[idx]
        bgr = jpeg_roundtrip_bgr(frames) if self.options.jpeg_roundtrip else frames[..., ::-1]
        return self.score_bgr_pcm(np.ascontiguousarray(bgr), audio_to_pcm16(audio))
