"""The runtime of the built-in ``viseme`` model: audio -> opening -> warped lower face -> pasted back."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, replace
from functools import lru_cache

import numpy as np
import torch

from lipsynckit.errors import AudioError, LipSyncError, VideoError
from lipsynckit.faces.dense_landmarks import dense_landmarks, dense_landmarks_available
from lipsynckit.model import ModelInfo
from lipsynckit.model_base import BaseLipSyncModel
from lipsynckit.types import AudioClip, Face, ModelBatch, PreparedFace
from lipsynckit.viseme.audio import COLUMNS, frame_features
from lipsynckit.viseme.geometry import mouth_geometry, region_box
from lipsynckit.viseme.options import VisemeOptions
from lipsynckit.viseme.source_mouth import (
    SourceMouth,
    close_mouth,
    fill_inner_mouth,
    fit_source_mouth,
    lips_source_mouth,
    mouth_palette,
    upper_lip_extent,
)
from lipsynckit.viseme.warp import MouthInCrop, render, smoothstep

log = logging.getLogger(__name__)


@lru_cache(maxsize=32)
def feather_alpha(h: int, w: int, feather: float) -> np.ndarray:
    """``(h, w, 1)`` float32 weights: 0 on the region border, 1 inside, a smooth ramp between."""
    fy = max(1.0, feather * h)
    fx = max(1.0, feather * w)
    y = np.arange(h, dtype=np.float32)
    x = np.arange(w, dtype=np.float32)
    ay = smoothstep(np.minimum(y, h - 1 - y) / fy)
    ax = smoothstep(np.minimum(x, w - 1 - x) / fx)
    alpha = (ay[:, None] * ax[None, :]).astype(np.float32)
    alpha.setflags(write=False)
    return alpha[..., None]


def paste_feathered_local(
    frame: np.ndarray, generated: np.ndarray, box: tuple[int, int, int, int], feather: float
) -> np.ndarray:
    """Blend ``generated`` into ``box`` of a copy of ``frame``; unchanged pixels stay bit-identical.

    The blend is ``frame + alpha * (generated - frame)``, so wherever the model left a pixel as it
    was the result is exactly the source pixel, and nothing outside ``box`` is touched.
    """
    x1, y1, x2, y2 = box
    out = frame.copy()
    region = frame[y1:y2, x1:x2]
    if generated.shape != region.shape:
        raise LipSyncError(
            f"generated face {generated.shape} does not match the region {region.shape} of box {box}",
            stage="composite",
            remedy="pass the PreparedFace that produced this generated face",
        )
    diff = generated.astype(np.float32) - region.astype(np.float32)
    alpha = feather_alpha(y2 - y1, x2 - x1, feather)
    out[y1:y2, x1:x2] = np.clip(np.rint(region + alpha * diff), 0, 255).astype(np.uint8)
    return out


class VisemeModel(BaseLipSyncModel):
    """Weight-free lip-sync: a mouth opening per frame drives a smooth warp of the jaw and lips.

    It is the fallback that always works (no weights, CPU only, faster than real time), so a
    pipeline and its users get a plausible result before any network is installed.
    """

    def __init__(self, info: ModelInfo, options: VisemeOptions | None = None) -> None:
        self.info = info
        self.options = options or VisemeOptions()
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> VisemeModel:
        """Image warps run on the CPU whatever the device; the request is recorded, not refused."""
        super().to(device, dtype)
        return self

    def audio_features(self, audio: AudioClip, fps: float) -> torch.Tensor:
        """``(round(duration * fps), 4)``: opening (0 in silence), lip width, voice flag, loudness."""
        if not (fps > 0 and np.isfinite(fps)):
            raise VideoError(
                f"frame rate must be positive, got {fps}",
                stage="audio",
                path=audio.source,
                remedy="pass the source video's fps (or --fps for a still image)",
            )
        x = audio.numpy()
        if not np.isfinite(x).all():
            raise AudioError(
                "audio contains NaN or infinite samples",
                stage="audio",
                path=audio.source,
                remedy="re-export the audio file (e.g. ffmpeg -i in.wav -c:a pcm_s16le out.wav)",
            )
        feats = frame_features(x, audio.sample_rate, float(fps), self.options)
        log.debug(
            "viseme: %d frames at %.3f fps, %.1f%% voiced",
            len(feats),
            fps,
            100.0 * float((feats[:, 2] > 0).mean() if len(feats) else 0.0),
        )
        return torch.from_numpy(feats)

    def stream_features(self, fps: float, history_s: float | None = None) -> object:
        """Features on a sliding window: the noise floor and speech peak are measured over the last
        ``history_s`` (default 3 s) instead of the whole clip; look-ahead covers the gap bridging and
        the gate's ramp, which decide a frame from the audio just after it."""
        from lipsynckit.streaming.features import WindowedFeatures

        o = self.options
        lookahead = (
            max(o.vad_min_gap_s, o.vad_min_speech_s, o.gate_ramp_s)
            + o.window_s / 2
            + o.hop_s
            + max(0.0, o.lead_s)
        )
        return WindowedFeatures(
            self, fps, 16000, 3.0 if history_s is None else history_s, lookahead, max_block=8, tail="zeros"
        )

    def prepare(self, frame: np.ndarray, face: Face) -> PreparedFace:
        """Crop a square around the lower face at native resolution (no resampling, no blur)."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise VideoError(
                f"expected an RGB uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}",
                stage="model",
                remedy="decode frames with lipsynckit.media.VideoSource",
            )
        face = self._densify(frame, face)
        geom = mouth_geometry(face, self.options)
        box = region_box(geom, frame.shape[:2], self.options)
        x1, y1, x2, y2 = box
        crop = np.ascontiguousarray(frame[y1:y2, x1:x2])
        dense = face.landmarks if geom.source == "landmarks68" else None
        data = {
            "mouth_centre": (geom.cx - x1, geom.cy - y1),
            "mouth_width": 2.0 * geom.half_width,
            "face_height": geom.face_height,
            "roll": geom.roll,
            "geometry": geom.source,
            "palette": mouth_palette(crop, dense, (x1, y1)),
        }
        if dense is not None:
            # the inner lip contour says how far the source is open (a moustache is not an opening)
            fit = lips_source_mouth(dense, geom.cx, geom.cy, geom.roll, geom.half_width)
            if not self.options.follow_source:
                fit = replace(fit, half_gap=0.0)  # where the lips meet, but no closing
            data["source_mouth"] = asdict(fit)
            data["lips"] = dense[48:68].tolist()
            data["upper_lip"] = upper_lip_extent(dense, geom.cx, geom.cy, geom.roll, fit.band_centre)
        elif geom.source != "box" and self.options.follow_source:
            # landmarks: measure the source's own opening (closed before the new mouth is drawn)
            # (plain floats: the avatar cache stores prepared faces with torch.save / weights_only)
            fit = fit_source_mouth(frame, geom.cx, geom.cy, geom.half_width, geom.roll)
            data["source_mouth"] = asdict(fit)
        return PreparedFace(box=box, crop=crop.copy(), data=data)

    def _densify(self, frame: np.ndarray, face: Face) -> Face:
        """The face with 68-point landmarks when the predictor is installed and agrees with the
        detector's 5-point mouth corners (within a third of the mouth width); otherwise as it came.
        A box-only face (Haar, a --face-boxes file without points) keeps the box geometry: such a box
        may be a nose or a neck, and nothing would check the predictor's answer."""
        lm5 = face.landmarks
        if (
            not self.options.dense_landmarks
            or lm5 is None
            or lm5.shape[0] != 5
            or not np.isfinite(lm5).all()
            or not dense_landmarks_available()
        ):
            return face
        lm68 = dense_landmarks(frame, face)
        width = float(np.linalg.norm(lm5[4] - lm5[3]))
        err = max(float(np.linalg.norm(lm68[48] - lm5[3])), float(np.linalg.norm(lm68[54] - lm5[4])))
        if err > max(2.0, width / 3.0):
            log.debug("viseme: 68-point mouth corners %.1f px from the detector's: kept the detector's", err)
            return face
        return Face(box=face.box, score=face.score, landmarks=lm68)

    def rest_features(self, silent: torch.Tensor) -> torch.Tensor:
        """Silence's features marked as rest (voice -1): opening 0 alone keeps the source's own mouth,
        so a speaking source at rest needs the mark to have its mouth closed."""
        out = silent.clone()
        out[:, COLUMNS.index("voice")] = -1.0
        return out

    def generate(self, batch: ModelBatch) -> list[np.ndarray]:
        """Warp each crop to its frame's opening; opening 0 returns the crop unchanged (closed first at
        rest, see :meth:`rest_features`)."""
        out: list[np.ndarray] = []
        for item in batch.items:
            feat = item.audio.detach().reshape(-1).cpu().numpy()
            if feat.size < 1 or not np.isfinite(feat[:2]).all():
                raise LipSyncError(
                    f"work item {item.index} of job {item.job_id} has no usable audio features: {feat[:4].tolist()}",
                    stage="model",
                    remedy="pass rows of model.audio_features(...) as WorkItem.audio",
                )
            pf = item.face
            cx, cy = pf.data["mouth_centre"]
            mouth = MouthInCrop(
                float(cx),
                float(cy),
                pf.data["mouth_width"] / 2.0,
                float(pf.data["roll"]),
                float(pf.data["face_height"]),
            )
            width = float(np.clip(feat[1], -1.0, 1.0)) if feat.size > 1 else 0.0
            opening = float(feat[0])
            crop = pf.crop
            fit = pf.data.get("source_mouth")
            src = SourceMouth(**fit) if fit is not None else SourceMouth()
            lips = pf.data.get("lips")
            if lips is not None:  # 68 points: the warp leaves everything above the upper lip alone
                mouth = replace(mouth, upper_lip=float(pf.data["upper_lip"]))
            # at rest for a speaking source (rest_features: voice < 0) the source mouth is closed
            rest = float(np.clip(-feat[2], 0.0, 1.0)) if feat.size > 2 and np.isfinite(feat[2]) else 0.0
            if (opening > 0.0 or rest > 0.0) and (src.half_gap > 0.0 or lips is not None):
                # close the source's own mouth first (fully from a small opening on), then open it
                # where the lips meet
                ramp = max(rest, min(1.0, opening / self.options.close_ramp))
                if lips is not None and src.half_gap > 0.0:  # paint its teeth/interior over first
                    x1, y1 = pf.box[0], pf.box[1]
                    inner = np.asarray(lips, np.float32)[12:20] - np.array([x1, y1], np.float32)
                    crop = fill_inner_mouth(crop, inner, ramp)
                crop = close_mouth(crop, mouth, src.band_centre, ramp * src.half_gap)
                mouth = replace(
                    mouth,
                    cx=mouth.cx - src.band_centre * math.sin(mouth.roll),
                    cy=mouth.cy + src.band_centre * math.cos(mouth.roll),
                )
            out.append(render(crop, mouth, opening, width, self.options, pf.data.get("palette")))
        return out

    def composite(self, frame: np.ndarray, face: PreparedFace, generated: np.ndarray) -> np.ndarray:
        """Feathered paste (alpha 0 on the region border); pixels outside the region are untouched."""
        return paste_feathered_local(frame, generated, face.box, self.options.feather)
