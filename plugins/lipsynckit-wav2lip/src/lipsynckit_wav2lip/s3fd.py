"""S3FD, the face detector of Wav2Lip's official inference (from the face-alignment project).

Network names follow ``s3fd-619a316812.pth`` (``manifest_s3fd.json``). Post-processing is Wav2Lip's:
softmax over the 2 classes, every anchor with face score > 0.05 decoded with variances (0.1, 0.2),
NMS at IoU 0.3 (areas with +1), keep score > 0.5, highest score first. The official input quirk is
kept: the image is **RGB** minus the Caffe BGR means (104, 117, 123) in that order, at full resolution.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lipsynckit.errors import FaceDetectorError
from lipsynckit.types import Face

log = logging.getLogger(__name__)

MEANS_RGB_ORDER = (104.0, 117.0, 123.0)  # Caffe BGR means, subtracted from RGB channels (official quirk)
SCORE_CANDIDATE = 0.05
NMS_IOU = 0.3
SCORE_KEEP = 0.5
VARIANCES = (0.1, 0.2)


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (``weight``)."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = 1e-10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return x / norm * self.weight.view(1, -1, 1, 1)


def _conv(cin: int, cout: int, k: int = 3, s: int = 1, p: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, stride=s, padding=p)


class S3FDNet(nn.Module):
    """VGG16 trunk + extra layers + 6 detection heads (strides 4 … 128).

    ``forward`` returns ``[cls1, reg1, …, cls6, reg6]`` (cls1 already max-out reduced to 2 channels).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1_1, self.conv1_2 = _conv(3, 64), _conv(64, 64)
        self.conv2_1, self.conv2_2 = _conv(64, 128), _conv(128, 128)
        self.conv3_1, self.conv3_2, self.conv3_3 = _conv(128, 256), _conv(256, 256), _conv(256, 256)
        self.conv4_1, self.conv4_2, self.conv4_3 = _conv(256, 512), _conv(512, 512), _conv(512, 512)
        self.conv5_1, self.conv5_2, self.conv5_3 = _conv(512, 512), _conv(512, 512), _conv(512, 512)
        self.fc6 = _conv(512, 1024, 3, 1, 3)
        self.fc7 = _conv(1024, 1024, 1, 1, 0)
        self.conv6_1, self.conv6_2 = _conv(1024, 256, 1, 1, 0), _conv(256, 512, 3, 2, 1)
        self.conv7_1, self.conv7_2 = _conv(512, 128, 1, 1, 0), _conv(128, 256, 3, 2, 1)
        self.conv3_3_norm = L2Norm(256, 10.0)
        self.conv4_3_norm = L2Norm(512, 8.0)
        self.conv5_3_norm = L2Norm(512, 5.0)
        self.conv3_3_norm_mbox_conf, self.conv3_3_norm_mbox_loc = _conv(256, 4), _conv(256, 4)
        self.conv4_3_norm_mbox_conf, self.conv4_3_norm_mbox_loc = _conv(512, 2), _conv(512, 4)
        self.conv5_3_norm_mbox_conf, self.conv5_3_norm_mbox_loc = _conv(512, 2), _conv(512, 4)
        self.fc7_mbox_conf, self.fc7_mbox_loc = _conv(1024, 2), _conv(1024, 4)
        self.conv6_2_mbox_conf, self.conv6_2_mbox_loc = _conv(512, 2), _conv(512, 4)
        self.conv7_2_mbox_conf, self.conv7_2_mbox_loc = _conv(256, 2), _conv(256, 4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = F.relu(self.conv1_2(F.relu(self.conv1_1(x))))
        h = F.max_pool2d(h, 2, 2)
        h = F.relu(self.conv2_2(F.relu(self.conv2_1(h))))
        h = F.max_pool2d(h, 2, 2)
        f3 = F.relu(self.conv3_3(F.relu(self.conv3_2(F.relu(self.conv3_1(h))))))
        h = F.max_pool2d(f3, 2, 2)
        f4 = F.relu(self.conv4_3(F.relu(self.conv4_2(F.relu(self.conv4_1(h))))))
        h = F.max_pool2d(f4, 2, 2)
        f5 = F.relu(self.conv5_3(F.relu(self.conv5_2(F.relu(self.conv5_1(h))))))
        h = F.max_pool2d(f5, 2, 2)
        f7 = F.relu(self.fc7(F.relu(self.fc6(h))))
        f6_2 = F.relu(self.conv6_2(F.relu(self.conv6_1(f7))))
        f7_2 = F.relu(self.conv7_2(F.relu(self.conv7_1(f6_2))))
        f3 = self.conv3_3_norm(f3)
        f4 = self.conv4_3_norm(f4)
        f5 = self.conv5_3_norm(f5)
        c1 = self.conv3_3_norm_mbox_conf(f3)
        # max-out over the three background channels of the stride-4 head
        background = torch.max(torch.max(c1[:, 0:1], c1[:, 1:2]), c1[:, 2:3])
        cls1 = torch.cat([background, c1[:, 3:4]], dim=1)
        return [
            cls1,
            self.conv3_3_norm_mbox_loc(f3),
            self.conv4_3_norm_mbox_conf(f4),
            self.conv4_3_norm_mbox_loc(f4),
            self.conv5_3_norm_mbox_conf(f5),
            self.conv5_3_norm_mbox_loc(f5),
            self.fc7_mbox_conf(f7),
            self.fc7_mbox_loc(f7),
            self.conv6_2_mbox_conf(f6_2),
            self.conv6_2_mbox_loc(f6_2),
            self.conv7_2_mbox_conf(f7_2),
            self.conv7_2_mbox_loc(f7_2),
        ]


def preprocess(images_rgb: np.ndarray) -> torch.Tensor:
    """``(B,H,W,3)`` uint8 RGB → ``(B,3,H,W)`` float32 minus (104,117,123) per RGB channel (official)."""
    arr = np.asarray(images_rgb)
    if arr.ndim == 3:
        arr = arr[None]
    x = arr - np.array(MEANS_RGB_ORDER)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()


def decode_heads(outputs: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Per image, the candidate boxes ``(K, 5)`` float32 (x1, y1, x2, y2, score) with score > 0.05.

    Anchors are ordered head by head, row-major inside a head, as the official loop visits them.
    """
    batch = int(outputs[0].shape[0])
    per_image: list[list[np.ndarray]] = [[] for _ in range(batch)]
    for level in range(len(outputs) // 2):
        cls = F.softmax(outputs[2 * level].float(), dim=1).cpu()
        reg = outputs[2 * level + 1].float().cpu()
        stride = 2 ** (level + 2)
        score = cls[:, 1]  # (B, H, W)
        for b in range(batch):
            hs, ws = torch.nonzero(score[b] > SCORE_CANDIDATE, as_tuple=True)
            if hs.numel() == 0:
                continue
            loc = reg[b, :, hs, ws].T  # (K, 4)
            centre = torch.stack([stride / 2 + ws * stride, stride / 2 + hs * stride], dim=1).float()
            size = torch.full_like(centre, float(stride * 4))
            xy = centre + loc[:, :2] * VARIANCES[0] * size
            wh = size * torch.exp(loc[:, 2:] * VARIANCES[1])
            xy = xy - wh / 2
            boxes = torch.cat([xy, wh + xy, score[b, hs, ws][:, None]], dim=1)
            per_image[b].append(boxes.numpy())
    return [np.concatenate(p, axis=0) if p else np.zeros((0, 5), dtype=np.float32) for p in per_image]


def nms(dets: np.ndarray, thresh: float = NMS_IOU) -> list[int]:
    """Greedy NMS by descending score; areas and overlaps with the +1 pixel convention (official)."""
    if len(dets) == 0:
        return []
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        overlap = w * h / (areas[i] + areas[rest] - w * h)
        order = rest[np.where(overlap <= thresh)[0]]
    return keep


def select_faces(candidates: np.ndarray) -> np.ndarray:
    """NMS then score > 0.5; rows (x1, y1, x2, y2, score), highest score first."""
    keep = nms(candidates, NMS_IOU)
    kept = candidates[keep]
    return kept[kept[:, 4] > SCORE_KEEP]


def load_s3fd(path: str | Path) -> S3FDNet:
    """Build the network and load ``path`` strictly (plain state dict, training container or safetensors)."""
    from lipsynckit.weights import load_checkpoint, load_strict, unwrap_state_dict

    net = S3FDNet()
    sd = unwrap_state_dict(load_checkpoint(path))
    load_strict(net, sd, path=path, what="S3FD face detector")
    return net.eval()


class S3FDDetector:
    """``lipsynckit`` face detector: RGB uint8 image in, faces sorted by score out.

    Boxes are clipped at 0 only (the official code does not clip at the far edges) and kept as
    floats; Wav2Lip's ``adjust_track`` truncates them to ints as the official code does.
    """

    name = "s3fd"
    thread_safe = True  # inference only reads the network: threads may share it

    def __init__(self, net: S3FDNet, device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def raw_outputs(self, images_rgb: np.ndarray) -> list[torch.Tensor]:
        """Network heads for a ``(B,H,W,3)`` RGB batch (for checks)."""
        return [o.cpu() for o in self.net(preprocess(images_rgb).to(self.device))]

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[Face]]:
        """Detect on equally sized frames in batches (halved on out-of-memory, as the official code does)."""
        out: list[list[Face]] = []
        bs = max(1, self.batch_size)
        i = 0
        while i < len(images_rgb):
            chunk = np.stack([np.asarray(im) for im in images_rgb[i : i + bs]])
            try:
                heads = self.raw_outputs(chunk)
            except torch.OutOfMemoryError:
                if bs == 1:
                    raise FaceDetectorError(
                        f"S3FD ran out of memory on one {chunk.shape[2]}x{chunk.shape[1]} frame",
                        stage="faces",
                        remedy="downscale the video or run the detector on CPU",
                    ) from None
                bs //= 2
                log.warning("S3FD out of memory; batch size now %d", bs)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            for cand in decode_heads(heads):
                faces = []
                for x1, y1, x2, y2, score in select_faces(cand):
                    box = np.clip(np.array([x1, y1, x2, y2], dtype=np.float32), 0, None)
                    faces.append(Face(box=box, score=float(score)))
                out.append(faces)
            i += len(chunk)
        return out

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 image, highest score first."""
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3:
            raise FaceDetectorError(f"S3FD expects an (H, W, 3) RGB image, got {img.shape}", stage="faces")
        return self.detect_batch([img])[0]


def first_box(faces: list[Face]) -> tuple[int, int, int, int] | None:
    """The box official Wav2Lip uses: the highest-scoring face, clipped at 0, truncated to int."""
    if not faces:
        return None
    b = np.clip(faces[0].box, 0, None)
    return int(b[0]), int(b[1]), int(b[2]), int(b[3])
