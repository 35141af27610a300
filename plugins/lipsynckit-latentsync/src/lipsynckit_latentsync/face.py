"""LatentSync's face path: 3-point similarity alignment to a fixed template, the fixed mouth mask,
and the soft-masked restoration into the frame.

Written from ``latentsync/utils/{affine_transform,image_processor,face_detector}.py`` of
bytedance/LatentSync (which follows StyleSync). The warps reproduce kornia 0.8's ``warp_affine``
(normalised coordinates, ``align_corners=True``, fill by warping a mask of ones), its 2×2
``erosion`` and its separable reflect-padded ``gaussian_blur2d``, in the dtype the official
``AlignRestore`` uses (float16 by default), without depending on kornia.

``mask.png`` is the official ``latentsync/utils/mask.png`` (Apache-2.0, © Bytedance Ltd.), shipped
unchanged as package data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lipsynckit.errors import NoFaceError
from lipsynckit.types import Face

log = logging.getLogger(__name__)

# insightface 106-point indices of the three anchors
LEFT_BROW = [43, 48, 49, 51, 50]
RIGHT_BROW = [101, 102, 103, 104, 105]
NOSE = [74, 77, 83, 86]
FILL = 127.0


@dataclass
class AlignedFace(Face):
    """A face with the (smoothed) 2×3 alignment matrix :func:`smooth_track` gave it."""

    affine: np.ndarray | None = None


def anchor_points(landmarks_106: np.ndarray, round_landmarks: bool = True) -> np.ndarray:
    """Left-brow, right-brow and nose centres, rounded to whole pixels (the official rule; the
    official detector also rounds the 106 points before averaging)."""
    lmk = np.asarray(landmarks_106, dtype=np.float64).reshape(-1, 2)
    if lmk.shape[0] != 106:
        raise NoFaceError(
            f"LatentSync aligns faces on insightface's 106 landmarks; got {lmk.shape[0]} points",
            stage="faces",
            remedy="use the insightface detector (--detector insightface) or pass 106-point landmarks "
            "with --face-boxes",
        )
    if round_landmarks:
        lmk = np.round(lmk).astype(np.int64).astype(np.float64)
    pts = [lmk[LEFT_BROW].mean(axis=0), lmk[RIGHT_BROW].mean(axis=0), lmk[NOSE].mean(axis=0)]
    return np.round(pts)


_warned_approx = False


def face_anchors(face: Face, round_landmarks: bool = True, approximate: bool = True) -> np.ndarray:
    """The three alignment anchors of a face: the official rule on 106 landmarks; otherwise, when
    ``approximate``, an estimate from 68-point landmarks (brow and lower-nose means) or from the box
    (brows at 30 % of the height, nose at 60 %). The estimate is not the official alignment and is
    announced once per process."""
    global _warned_approx
    lm = face.landmarks
    if lm is not None and len(lm) == 106:
        return anchor_points(lm, round_landmarks)
    if not approximate:
        return anchor_points(lm if lm is not None else np.zeros((0, 2)), round_landmarks)
    if not _warned_approx:
        _warned_approx = True
        log.warning(
            "LatentSync: no 106-point landmarks (got %s); approximating the alignment anchors, which is "
            "NOT the official alignment. Use --detector insightface (with its models) or give 106 "
            "landmarks in --face-boxes for exact runs.",
            "none" if lm is None else f"{len(lm)} points",
        )
    if lm is not None and len(lm) == 68:
        pts = np.asarray(lm, dtype=np.float64)
        return np.round([pts[17:22].mean(0), pts[22:27].mean(0), pts[31:36].mean(0)])
    x1, y1, x2, y2 = (float(v) for v in face.box)
    w, h = x2 - x1, y2 - y1
    return np.round(
        [[x1 + 0.3 * w, y1 + 0.3 * h], [x1 + 0.7 * w, y1 + 0.3 * h], [x1 + 0.5 * w, y1 + 0.6 * h]]
    )


class Aligner:
    """The official ``AlignRestore`` geometry for one output resolution (256 for 1.5, 512 for 1.6)."""

    def __init__(self, resolution: int, dtype: torch.dtype = torch.float16) -> None:
        ratio = resolution / 256 * 2.8
        self.resolution = resolution
        self.dtype = dtype
        self.template = np.array([[19 - 2, 30 - 10], [56 + 2, 30 - 10], [37.5, 45 - 5]]) * ratio
        self.face_w = int(75 * ratio)
        self.face_h = int(100 * ratio)

    # -- the similarity transform -----------------------------------------------------------------

    def transform(
        self, anchors: np.ndarray, prev_bias: torch.Tensor | None, smooth: bool = True
    ) -> tuple[np.ndarray, torch.Tensor | None]:
        """2×3 matrix mapping the frame onto the template (Umeyama on normalised points) and the
        nose-offset bias carried to the next frame (0.2·previous + 0.8·current)."""
        p1 = torch.tensor(anchors, dtype=torch.float32)
        p2 = torch.tensor(self.template, dtype=torch.float32)
        c1, c2 = p1.mean(dim=0), p2.mean(dim=0)
        p1c, p2c = p1 - c1, p2 - c2
        s1, s2 = torch.std(p1c), torch.std(p2c)
        p1n, p2n = p1c / s1, p2c / s2
        u, _, v = torch.svd((p1n.T @ p2n).float())
        r = v @ u.T
        if torch.det(r.float()) < 0:
            v[:, -1] = -v[:, -1]
            r = v @ u.T
        sr = (s2 / s1) * r
        t = c2.reshape(2, 1) - (s2 / s1) * (r @ c1.reshape(2, 1))
        m = torch.cat((sr, t), dim=1)
        bias = prev_bias
        if smooth:
            cur = p2n[2] - p1n[2]
            bias = cur if prev_bias is None else prev_bias * 0.2 + cur * 0.8
            m[:, 2] = m[:, 2] + bias
        return m.numpy(), bias

    def matrix_for_device(self, affine: np.ndarray) -> torch.Tensor:
        """The matrix as the official code holds it: (1, 2, 3) in the aligner's dtype."""
        return torch.from_numpy(np.asarray(affine, dtype=np.float32)).to(self.dtype).reshape(1, 2, 3)

    # -- alignment ---------------------------------------------------------------------------------

    def warp_face(self, frame: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """The aligned face crop (face_h × face_w, uint8 RGB), before resizing to the resolution."""
        img = torch.from_numpy(np.ascontiguousarray(frame)).to(self.dtype).permute(2, 0, 1)[None]
        m = self.matrix_for_device(affine)
        fill = torch.full((3,), FILL, dtype=self.dtype)
        out = warp_affine(img, m, (self.face_h, self.face_w), fill=fill)
        return out[0].permute(1, 2, 0).numpy().astype(np.uint8)

    def align(self, frame: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """resolution × resolution aligned face (uint8 RGB): the warp, then Lanczos resizing."""
        face = self.warp_face(frame, affine)
        return cv2.resize(face, (self.resolution, self.resolution), interpolation=cv2.INTER_LANCZOS4)

    # -- restoration -------------------------------------------------------------------------------

    def restore(self, frame: np.ndarray, face: torch.Tensor, affine: np.ndarray) -> np.ndarray:
        """Paste a generated face back into ``frame`` (the official ``restore_video``/``restore_img``).

        ``face`` is (3, resolution, resolution) float in [-1, 1]; it is resized (bicubic, antialiased)
        to the crop size, warped back with the inverse matrix and blended with a mask that is eroded
        and Gaussian-blurred in proportion to the face's size.
        """
        h, w = frame.shape[:2]
        face = F.interpolate(
            face[None].float(),
            size=(self.face_h, self.face_w),
            mode="bicubic",
            align_corners=False,
            antialias=True,
        )[0]
        m = self.matrix_for_device(affine)
        inv = invert_affine(m)
        fill = torch.full((3,), FILL, dtype=self.dtype)
        inv_face = warp_affine(face.to(self.dtype)[None], inv, (h, w), fill=fill)[0]
        inv_face = (inv_face / 2 + 0.5).clamp(0, 1) * 255
        img = torch.from_numpy(np.ascontiguousarray(frame)).to(self.dtype).permute(2, 0, 1)
        ones = torch.ones((1, 1, self.face_h, self.face_w), dtype=self.dtype)
        inv_mask = warp_affine(ones, inv, (h, w))
        inv_mask_erosion = _erode_2x2(inv_mask)
        pasted = inv_mask_erosion[0].expand_as(inv_face) * inv_face
        area = torch.sum(inv_mask_erosion.float())
        w_edge = int(area**0.5) // 20
        radius = w_edge * 2
        center = cv2.erode(
            inv_mask_erosion[0, 0].float().numpy().astype(np.float32), np.ones((radius, radius), np.uint8)
        )
        center_t = torch.from_numpy(center).to(self.dtype)[None, None]
        blur = w_edge * 2 + 1
        sigma = 0.3 * ((blur - 1) * 0.5 - 1) + 0.8
        soft = gaussian_blur(center_t, blur, sigma)[0].expand_as(inv_face)
        back = soft * pasted + (1 - soft) * img
        return back.permute(1, 2, 0).contiguous().to(torch.uint8).numpy()

    def region(self, affine: np.ndarray, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """Bounding box (x1, y1, x2, y2) of the aligned crop in frame pixels: where restore writes."""
        a = np.vstack([np.asarray(affine, dtype=np.float64).reshape(2, 3), [0, 0, 1]])
        inv = np.linalg.inv(a)
        # bilinear sampling reaches up to one crop pixel beyond the crop's corner pixels
        fw, fh = self.face_w, self.face_h
        corners = np.array([[-1, -1, 1], [fw, -1, 1], [-1, fh, 1], [fw, fh, 1]], dtype=np.float64)
        pts = corners @ inv[:2].T
        h, w = frame_hw
        x1 = int(np.clip(np.floor(pts[:, 0].min()) - 1, 0, w))
        y1 = int(np.clip(np.floor(pts[:, 1].min()) - 1, 0, h))
        x2 = int(np.clip(np.ceil(pts[:, 0].max()) + 2, 0, w))
        y2 = int(np.clip(np.ceil(pts[:, 1].max()) + 2, 0, h))
        return x1, y1, x2, y2


def smooth_track(
    faces: list[Face | None], aligner: Aligner, round_landmarks: bool = True, approximate: bool = True
) -> list[Face | None]:
    """Give every found face its alignment matrix, carrying the official bias smoothing from one
    found frame to the next in source order (what ``affine_transform_video`` does over a video)."""
    out: list[Face | None] = []
    bias: torch.Tensor | None = None
    for f in faces:
        if f is None:
            out.append(f)
            continue
        m, bias = aligner.transform(face_anchors(f, round_landmarks, approximate), bias, smooth=True)
        out.append(AlignedFace(box=f.box, score=f.score, landmarks=f.landmarks, affine=m))
    return out


def load_mask(resolution: int) -> np.ndarray:
    """The official mask at ``resolution`` (uint8, (res, res, 3) RGB; 255 keeps the source pixel,
    0 marks the region LatentSync regenerates), resized with Lanczos as the official code does."""
    data = resources.files("lipsynckit_latentsync").joinpath("mask.png").read_bytes()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:  # pragma: no cover - the file ships with the package
        raise RuntimeError("lipsynckit_latentsync/mask.png is missing or unreadable; reinstall lipsynckit")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)


# ------------------------------------------------------------------------------------------------
# kornia-0.8-equivalent geometry and filters


def _homography(m: torch.Tensor) -> torch.Tensor:
    h = F.pad(m, [0, 0, 0, 1], value=0.0)
    h[..., -1, -1] += 1.0
    return h


def _inverse(m: torch.Tensor) -> torch.Tensor:
    dtype = m.dtype if m.dtype in (torch.float32, torch.float64) else torch.float32
    return torch.linalg.inv(m.to(dtype)).to(m.dtype)


def invert_affine(m: torch.Tensor) -> torch.Tensor:
    """Inverse of a (B, 2, 3) affine matrix (inverted in float32, kept in the input dtype)."""
    return _inverse(_homography(m))[..., :2, :3]


def _normal_transform(h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    sx = 1.0 if w == 1 else 2.0 / (w - 1.0)
    sy = 1.0 if h == 1 else 2.0 / (h - 1.0)
    tx = 0.0 if w == 1 else -1.0
    ty = 0.0 if h == 1 else -1.0
    return torch.tensor([[sx, 0.0, tx], [0.0, sy, ty], [0.0, 0.0, 1.0]], dtype=dtype)[None]


def _inverse_3x3(m: torch.Tensor) -> torch.Tensor:
    """Closed-form (adjugate) inverse of (..., 3, 3) matrices."""
    a, b, c = m[..., :, 0], m[..., :, 1], m[..., :, 2]
    r0 = torch.linalg.cross(b, c, dim=-1)
    r1 = torch.linalg.cross(c, a, dim=-1)
    r2 = torch.linalg.cross(a, b, dim=-1)
    det = (a * r0).sum(-1)
    return torch.stack([r0, r1, r2], dim=-2) / det[..., None, None]


def warp_affine(
    src: torch.Tensor, m: torch.Tensor, dsize: tuple[int, int], fill: torch.Tensor | None = None
) -> torch.Tensor:
    """Bilinear warp of ``src`` (B, C, H, W) by the pixel matrix ``m`` (B, 2, 3) into ``dsize`` (h, w);
    outside pixels are 0, or ``fill`` per channel (blended at the border as a warped mask of ones).

    Half-precision inputs on the CPU are warped in float32 and returned in half precision (what
    kornia does there: torch's CPU half ``grid_sample`` is unreliable on large images).
    """
    out_dtype = src.dtype
    if src.device.type == "cpu" and src.dtype in (torch.float16, torch.bfloat16):
        src, m = src.float(), m.float()
    _, c, hh, ww = src.shape
    m3 = _homography(m)
    norm = _normal_transform(dsize[0], dsize[1], m.dtype) @ (
        m3 @ _inverse_3x3(_normal_transform(hh, ww, m.dtype))
    )
    inv = _inverse_3x3(norm)
    xs = (
        torch.linspace(-1.0, 1.0, dsize[1], dtype=src.dtype, device=src.device)
        if dsize[1] > 1
        else torch.zeros(1, dtype=src.dtype, device=src.device)
    )
    ys = (
        torch.linspace(-1.0, 1.0, dsize[0], dtype=src.dtype, device=src.device)
        if dsize[0] > 1
        else torch.zeros(1, dtype=src.dtype, device=src.device)
    )
    by, bx = torch.meshgrid(ys, xs, indexing="ij")
    gx = inv[:, 0, 0, None, None] * bx + inv[:, 0, 1, None, None] * by + inv[:, 0, 2, None, None]
    gy = inv[:, 1, 0, None, None] * bx + inv[:, 1, 1, None, None] * by + inv[:, 1, 2, None, None]
    grid = torch.stack([gx, gy], dim=-1)
    if grid.shape[0] == 1 and src.shape[0] > 1:
        grid = grid.expand(src.shape[0], -1, -1, -1)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    if fill is not None:
        ones = torch.ones_like(src)
        inv_ones = 1 - F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        out = out + inv_ones * fill.to(ones).view(1, -1, 1, 1)
    return out.to(out_dtype)


def _erode_2x2(x: torch.Tensor) -> torch.Tensor:
    """Grey erosion with a 2×2 flat element anchored at its bottom-right (kornia's default origin),
    border ignored."""
    big = torch.finfo(x.dtype).max if x.dtype != torch.float16 else 1e4
    p = F.pad(x, [1, 0, 1, 0], mode="constant", value=float(big))
    return torch.minimum(
        torch.minimum(p[..., :-1, :-1], p[..., :-1, 1:]), torch.minimum(p[..., 1:, :-1], p[..., 1:, 1:])
    )


def gaussian_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding; half precision is filtered in float32 and
    returned in half precision (kornia's ``gaussian_blur2d``)."""
    out_dtype = x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    xs = torch.arange(size, dtype=x.dtype) - float(size // 2)
    if size % 2 == 0:
        xs = xs + 0.5
    dist = xs.pow(2.0)
    dist = dist - dist.min()
    g = torch.exp(-dist / (2 * torch.tensor(sigma, dtype=x.dtype).pow(2.0)))
    k = g / g.sum()
    c = x.shape[1]
    lo = (size - 1) // 2
    y = F.pad(x, [lo, size - 1 - lo, 0, 0], mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    y = F.pad(y, [0, 0, lo, size - 1 - lo], mode="reflect")
    return F.conv2d(y, k.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c).to(out_dtype)
