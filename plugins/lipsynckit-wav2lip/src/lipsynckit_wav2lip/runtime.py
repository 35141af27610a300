"""The Wav2Lip runtime behind the :class:`lipsynckit.model.LipSyncModel` protocol.

Each protocol method reproduces one step of the official ``inference.py``:

* ``audio_features`` → mel spectrogram and one (1, 80, 16) window per output frame;
* ``adjust_track`` → pads, clipping and the in-place 5-frame box smoothing over the whole track;
* ``prepare`` → crop of the box resized to 96x96 (INTER_LINEAR);
* ``generate`` → ``[masked, reference]`` BGR/255 input, the generator, ``floor(pred·255)``, split in
  ``to_device`` / ``compute`` / ``to_host`` so the scheduler overlaps copies and compute on CUDA;
* ``composite`` → hard paste of the face resized to the box (or lipsynckit's feathered blend).

Core frames are RGB; the generator sees BGR as the checkpoints were trained on OpenCV frames.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from lipsynckit.errors import LipSyncError, NoFaceError
from lipsynckit.model import ModelInfo
from lipsynckit.model_base import StagedLipSyncModel
from lipsynckit.scheduler import host_to_device
from lipsynckit.types import AudioClip, Face, FaceTrack, ModelBatch, PreparedFace
from lipsynckit_wav2lip.audio import SAMPLE_RATE, mel_chunks, melspectrogram
from lipsynckit_wav2lip.network import Wav2LipNet
from lipsynckit_wav2lip.options import Wav2LipOptions

log = logging.getLogger(__name__)

FACE_SIZE = 96


def load_generator(path: str | Path) -> Wav2LipNet:
    """Load any form of the generator checkpoint strictly, without running code from the file.

    Accepted: the official training checkpoint (``{'state_dict': {'module.…'}, 'optimizer', …}``),
    the TorchScript ``Wav2Lip-SD-*.pt`` archives, a bare state dict, or safetensors. A wrong file
    raises :class:`~lipsynckit.errors.WeightsError` listing missing and unexpected keys.
    """
    from lipsynckit.weights import load_checkpoint, load_strict, unwrap_state_dict

    net = Wav2LipNet()
    sd = unwrap_state_dict(load_checkpoint(path))
    # DataParallel prefixes can also sit deeper in re-exported files; the official loader drops them all
    sd = {k.replace("module.", ""): v for k, v in sd.items()}
    load_strict(net, sd, path=path, what="Wav2Lip generator")
    return net.eval()


def box_to_ints(box: np.ndarray) -> tuple[int, int, int, int]:
    """Clip at 0 and truncate toward zero, as the official S3FD wrapper does with its first box."""
    b = np.clip(np.asarray(box, dtype=np.float64), 0, None)
    return int(b[0]), int(b[1]), int(b[2]), int(b[3])


def pad_box(
    box: tuple[int, int, int, int], pads: Sequence[int], frame_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Official pads (top, bottom, left, right) clamped to the frame ``(H, W)``; x1y1x2y2 in and out."""
    x1, y1, x2, y2 = box
    top, bottom, left, right = pads
    h, w = frame_size
    return max(0, x1 - left), max(0, y1 - top), min(w, x2 + right), min(h, y2 + bottom)


def smooth_boxes(boxes: np.ndarray, window: int = 5) -> np.ndarray:
    """The official temporal smoothing, quirks included (returns a new int64 array).

    Row ``i`` becomes the mean of rows ``i…i+window-1`` (or of the tail slice starting at
    ``n-window`` when that runs past the end), truncated to int and written back in place, so later
    windows see already smoothed rows. With fewer rows than ``window`` the negative slice start
    keeps Python's meaning (the last ``min(n, window-n)`` rows), exactly as the official code does.
    """
    out = np.array(boxes, dtype=np.int64, copy=True)
    n = len(out)
    for i in range(n):
        win = out[n - window :] if i + window > n else out[i : i + window]
        out[i] = np.mean(win, axis=0)
    return out


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


class Wav2LipModel(StagedLipSyncModel):
    """A loaded Wav2Lip generator plus the official pre- and post-processing."""

    def __init__(
        self,
        info: ModelInfo,
        net: Wav2LipNet,
        options: Wav2LipOptions | None = None,
        device: str | torch.device = "cpu",
        weights_path: Path | None = None,
    ) -> None:
        self.info = info
        self.options = options or Wav2LipOptions()
        self.net = net.eval()
        self.weights_path = weights_path
        self.dtype = torch.float32
        self._forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        self._warned_cpu_fp16 = False
        self._tables: dict[torch.device, torch.Tensor] = {}
        self.to(device)

    # -- device handling -------------------------------------------------------------------------

    def modules(self) -> Sequence[nn.Module]:
        return [self.net]

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Wav2LipModel:
        """Move the generator; ``dtype`` float16/bfloat16 selects autocast precision (weights stay fp32)."""
        self.device = torch.device(device)
        if dtype is not None:
            if dtype not in (torch.float32, torch.float16, torch.bfloat16):
                raise LipSyncError(
                    f"unsupported dtype {dtype}", stage="model", remedy="use float32, float16 or bfloat16"
                )
            self.dtype = dtype
        self.net.to(self.device)
        if self.options.channels_last:
            self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._forward = None
        return self

    @property
    def precision(self) -> str:
        """The autocast precision in effect: the dtype given to ``to()``/``load()`` (fp32 by default)."""
        if self.dtype == torch.float16:
            return "fp16"
        if self.dtype == torch.bfloat16:
            return "bf16"
        return "fp32"

    def _get_forward(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if self._forward is None:
            fwd: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = self.net
            if self.options.compile:
                fwd = torch.compile(self.net)  # type: ignore[assignment]
            self._forward = fwd
        return self._forward

    # -- protocol ------------------------------------------------------------------------------------

    def audio_features(self, audio: AudioClip, fps: float) -> torch.Tensor:
        """``(N, 1, 80, 16)`` mel windows, one per output frame (N is the official chunk count)."""
        clip = audio.mono()
        if clip.sample_rate != SAMPLE_RATE:
            clip = clip.resample(SAMPLE_RATE)
        mel = melspectrogram(clip.samples[0].numpy())
        chunks = mel_chunks(mel, fps)
        log.debug("wav2lip: mel %s, %d chunks at %.3f fps", mel.shape, len(chunks), fps)
        return torch.from_numpy(chunks).unsqueeze(1)

    def stream_features(self, fps: float, history_s: float | None = None) -> object:
        """Exact mel windows on a stream (:mod:`lipsynckit_wav2lip.streaming`); no history is needed."""
        from lipsynckit_wav2lip.streaming import Wav2LipStreamFeatures

        return Wav2LipStreamFeatures(fps)

    def adjust_track(self, track: FaceTrack, frame_size: tuple[int, int]) -> FaceTrack:
        """Pads, clipping and the official smoothing; each run of consecutive found frames is
        smoothed on its own (the official code needs a face in every frame, where it is identical)."""
        opts = self.options
        boxes: list[tuple[int, int, int, int] | None] = [
            None if f is None else pad_box(box_to_ints(f.box), opts.pads, frame_size) for f in track.faces
        ]
        if opts.smooth:
            i = 0
            n = len(boxes)
            while i < n:
                if boxes[i] is None:
                    i += 1
                    continue
                j = i
                while j < n and boxes[j] is not None:
                    j += 1
                run = smooth_boxes(
                    np.array([boxes[k] for k in range(i, j)], dtype=np.int64), opts.smooth_window
                )
                for k in range(i, j):
                    r = run[k - i]
                    boxes[k] = (int(r[0]), int(r[1]), int(r[2]), int(r[3]))
                i = j
        faces: list[Face | None] = []
        for idx, (f, b) in enumerate(zip(track.faces, boxes, strict=True)):
            if f is None or b is None:
                faces.append(None)
                continue
            if b[2] <= b[0] or b[3] <= b[1]:
                log.warning("frame %d: face box %s is empty inside the frame; frame passed through", idx, b)
                faces.append(None)
                continue
            faces.append(Face(box=np.array(b, dtype=np.float32), score=f.score, landmarks=f.landmarks))
        return FaceTrack(faces=faces, detector=track.detector)

    def prepare(self, frame: np.ndarray, face: Face) -> PreparedFace:
        """Crop the (adjusted) box and resize it to 96x96 with INTER_LINEAR, as the official code does."""
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = box_to_ints(face.box)
        x2, y2 = min(x2, w), min(y2, h)
        if x2 <= x1 or y2 <= y1:
            raise NoFaceError(
                f"face box {(x1, y1, x2, y2)} is empty in a {w}x{h} frame",
                stage="faces",
                remedy="check the face boxes (x1, y1, x2, y2 in pixels of this video)",
            )
        crop = cv2.resize(np.ascontiguousarray(frame[y1:y2, x1:x2]), (FACE_SIZE, FACE_SIZE))
        # the generator works in BGR (OpenCV frames at training time); keep that view for generate()
        return PreparedFace(
            box=(x1, y1, x2, y2), crop=crop, data={"face_bgr": np.ascontiguousarray(crop[..., ::-1])}
        )

    def face_input(self, faces_bgr: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(B,96,96,3)`` uint8 BGR → ``(B,6,96,96)`` float32 on the faces' device: lower half zeroed
        copy first, then the full face, each value the float32 of the official float64 ``x / 255``
        (a 256-entry table, so the GPU gives the CPU's numbers exactly)."""
        faces = torch.as_tensor(faces_bgr)
        full = self._unit_table(faces.device)[faces.long()]
        masked = full.clone()
        masked[:, FACE_SIZE // 2 :] = 0
        return torch.cat((masked, full), dim=3).permute(0, 3, 1, 2).contiguous()

    def _unit_table(self, device: torch.device) -> torch.Tensor:
        table = self._tables.get(device)
        if table is None:
            table = torch.from_numpy((np.arange(256) / 255.0).astype(np.float32)).to(device)
            self._tables[device] = table
        return table

    @torch.inference_mode()
    def _forward_on_device(self, faces: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """uint8 BGR faces and mel windows already on the device → ``(B,3,96,96)`` float32 in [0, 1]."""
        x = self.face_input(faces)
        m = mels.to(self.device, dtype=torch.float32)
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            m = m.contiguous(memory_format=torch.channels_last)
        precision = self.precision
        if precision == "fp16" and self.device.type == "cpu":
            # CPU fp16 autocast runs, but about 5x slower than fp32 (measured): keep fp32 there
            if not self._warned_cpu_fp16:
                log.warning("wav2lip: fp16 is for CUDA; running fp32 on the CPU")
                self._warned_cpu_fp16 = True
            precision = "fp32"
        with _autocast(self.device, precision):
            pred = self._get_forward()(m, x)
        return pred.float()

    def predict(self, mels: torch.Tensor, faces_bgr: np.ndarray) -> torch.Tensor:
        """Generator output ``(B,3,96,96)`` float32 in [0, 1], BGR, on the CPU."""
        faces = host_to_device(np.asarray(faces_bgr), self.device, pin_memory=False)
        return self._forward_on_device(faces, mels).cpu()

    # -- generate, in the three stages the scheduler overlaps on CUDA streams ---------------------

    def to_device(self, batch: ModelBatch, stream: object | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Faces travel as uint8 (a quarter of the float input's bytes) and mel windows as float32,
        through pinned memory on CUDA; the float input is built on the device."""
        faces = np.stack([_face_bgr(pf) for pf in batch.faces()])
        mels = batch.audio().float()
        if mels.dim() == 3:
            mels = mels.unsqueeze(1)
        return host_to_device(faces, self.device), host_to_device(mels, self.device)

    def compute(self, handle: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``(B,96,96,3)`` uint8 RGB on the device: ``floor(pred·255)`` in float32 (the official
        ``astype(uint8)``), BGR → RGB."""
        faces, mels = handle
        pred = self._forward_on_device(faces, mels)
        with torch.inference_mode():
            out = (pred * 255.0).to(torch.uint8)  # pred is in [0, 1]: the cast truncates like numpy's
            return out.permute(0, 2, 3, 1).flip(-1).contiguous()

    def composite(self, frame: np.ndarray, face: PreparedFace, generated: np.ndarray) -> np.ndarray:
        """Official: the face resized (INTER_LINEAR) to the box replaces the whole box. Feathered: soft edges."""
        x1, y1, x2, y2 = face.box
        if self.options.paste == "feathered":
            from lipsynckit.compositor import paste_feathered

            return paste_feathered(frame, generated, face.box, feather=self.options.feather)
        out = frame.copy()
        out[y1:y2, x1:x2] = cv2.resize(generated, (x2 - x1, y2 - y1))
        return out


def _face_bgr(pf: PreparedFace) -> np.ndarray:
    bgr = pf.data.get("face_bgr")
    if bgr is None:  # a PreparedFace made elsewhere (e.g. restored from an old cache): derive it
        bgr = pf.crop[..., ::-1]
    arr = np.asarray(bgr)
    if arr.shape != (FACE_SIZE, FACE_SIZE, 3):
        raise LipSyncError(f"Wav2Lip needs 96x96x3 face crops, got {arr.shape}", stage="model")
    return arr
