"""Wav2Lip's generator exported to ONNX (``runtime="onnx"``): the file of
:mod:`lipsynckit_wav2lip.onnx_export`, run by the engine of :mod:`lipsynckit_wav2lip.onnx_engines`
(OpenVINO on the CPU, ONNX Runtime on CUDA), everything around it the torch runtime's own code.

Only the generator call changes (``_forward_on_device``); crops, mel windows, ``floor(pred·255)`` and
the paste are :class:`~lipsynckit_wav2lip.runtime.Wav2LipModel`'s, so the file pipeline and the stream
use the runtime with no second code path. Precision: ``float32`` (the export) or ``int8`` (static
quantisation, opt-in). On ``cpu`` OpenVINO compiles the file once per process; on ``cuda`` ONNX
Runtime's CUDA (and TensorRT with ``tensorrt=True``) providers run it, each only when the installed
ONNX Runtime has it (``onnxruntime-gpu``).

Threads: the engine runs the ``onnx_threads`` option's count, else ``torch.get_num_threads()`` (which
follows ``OMP_NUM_THREADS``), so a process uses the same cores whichever runtime it picks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from lipsynckit.errors import LipSyncError
from lipsynckit.model import ModelInfo
from lipsynckit_wav2lip.network import Wav2LipNet
from lipsynckit_wav2lip.onnx_engines import Generator, engine_for, make_generator
from lipsynckit_wav2lip.onnx_export import ensure_onnx
from lipsynckit_wav2lip.options import Wav2LipOptions
from lipsynckit_wav2lip.runtime import FACE_SIZE, Wav2LipModel

log = logging.getLogger(__name__)

ONNX_DTYPES = {torch.float32: "fp32", torch.int8: "int8"}


def onnx_precision(runtime: str, dtype: torch.dtype | None) -> str | None:
    """The ONNX precision asked for, or None for the torch runtime; a clear error for a mismatch
    (checked before any weights load)."""
    if runtime != "onnx":
        if dtype == torch.int8:
            raise LipSyncError(
                "Wav2Lip int8 runs on the ONNX runtime only",
                stage="options",
                remedy="add -O runtime=onnx (Python: model_options={'runtime': 'onnx'})",
            )
        return None
    if dtype is None:
        return "fp32"
    if dtype not in ONNX_DTYPES:
        raise LipSyncError(
            f"Wav2Lip's ONNX runtime runs float32 or int8, not {dtype}",
            stage="options",
            remedy="use --dtype float32 or int8 with runtime=onnx, or runtime=torch for float16/bfloat16",
        )
    return ONNX_DTYPES[dtype]


class Wav2LipOnnxModel(Wav2LipModel):
    """:class:`Wav2LipModel` whose generator call runs the exported file (OpenVINO on the CPU, ONNX
    Runtime on CUDA)."""

    def __init__(
        self,
        info: ModelInfo,
        net: Wav2LipNet,
        options: Wav2LipOptions | None = None,
        device: str | torch.device = "cpu",
        weights_path: Path | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if weights_path is None:
            raise LipSyncError("runtime=onnx exports from a checkpoint file", stage="model")
        self._generator: Generator | None = None
        self._onnx_dtype = dtype or torch.float32
        super().__init__(info, net, options, device=device, weights_path=weights_path)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Wav2LipOnnxModel:
        """Choose the engine for ``device`` and the precision (float32 or int8); the torch network
        stays on the CPU, kept only to export from."""
        onnx_precision("onnx", dtype)  # validates
        engine_for(torch.device(device))  # validates
        self.device = torch.device(device)
        if dtype is not None:
            self._onnx_dtype = dtype
        self.dtype = torch.float32  # what the generator's output is, whatever the weights' precision
        self._generator = None
        return self

    @property
    def precision(self) -> str:
        return ONNX_DTYPES[self._onnx_dtype]

    @property
    def generator(self) -> Generator:
        """The engine over the file, made (and the file exported) on first use."""
        if self._generator is None:
            assert self.weights_path is not None
            path = ensure_onnx(self.net, self.weights_path, self.precision, self.info.name)
            gen = make_generator(path, self.device, self.options.onnx_threads, self.options.tensorrt)
            self._generator = gen
            log.info(
                "wav2lip: %s %s on %s with %d threads (%s)",
                gen.engine,
                self.precision,
                self.device,
                gen.threads,
                path.name,
            )
        return self._generator

    def _forward_on_device(self, faces: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """uint8 BGR faces and mel windows → ``(B,3,96,96)`` float32 in [0, 1], on ``self.device``."""
        with torch.inference_mode():
            x = self.face_input(faces).cpu().numpy()
            m = mels.to("cpu", dtype=torch.float32).numpy()
        out = self.generator(m, x)
        return torch.from_numpy(out).to(self.device)

    def compute(self, handle: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """As :meth:`Wav2LipModel.compute`; on the CPU the input and output conversions run in numpy,
        not torch: torch's idle intra-op threads spun on the cores the engine's threads needed
        (measured: 2.5-3.4 ms of a 10-14 ms batch-of-one call on 2 cores, about 25 %)."""
        if self.device.type != "cpu":
            return super().compute(handle)
        faces, mels = handle
        x = self.face_input_np(faces.numpy())
        pred = self.generator(mels.numpy().astype(np.float32, copy=False), x)
        out = (pred * np.float32(255.0)).astype(np.uint8)  # pred is in [0, 1]: truncation, as torch's cast
        return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 2, 3, 1)[..., ::-1]))

    def face_input_np(self, faces_bgr: np.ndarray) -> np.ndarray:
        """:meth:`Wav2LipModel.face_input` in numpy, the same float32 numbers (the same 256-entry table)."""
        full = self._unit_table(torch.device("cpu")).numpy()[faces_bgr].transpose(0, 3, 1, 2)
        x = np.empty((len(faces_bgr), 6, FACE_SIZE, FACE_SIZE), dtype=np.float32)
        x[:, 3:] = full
        x[:, :3] = full
        x[:, :3, FACE_SIZE // 2 :] = 0
        return x


def load_onnx_model(
    info: ModelInfo,
    net: Wav2LipNet,
    options: Wav2LipOptions,
    device: torch.device,
    weights_path: Path,
    dtype: torch.dtype | None,
) -> Wav2LipOnnxModel:
    """The ONNX model, its engine made (the file exported or quantised, and compiled) now, so a first
    frame does not pay for it."""
    model = Wav2LipOnnxModel(info, net, options, device=device, weights_path=weights_path, dtype=dtype)
    _ = model.generator
    return model
