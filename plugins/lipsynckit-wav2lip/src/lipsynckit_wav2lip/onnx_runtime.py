"""Wav2Lip's generator on ONNX Runtime (``runtime="onnx"``): the exported file of
:mod:`lipsynckit_wav2lip.onnx_export`, everything around it the torch runtime's own code.

Only the generator call changes (``_forward_on_device``); crops, mel windows, ``floor(pred·255)`` and
the paste are :class:`~lipsynckit_wav2lip.runtime.Wav2LipModel`'s, so the file pipeline and the stream
use the runtime with no second code path. Precision: ``float32`` (the export) or ``int8`` (static
quantisation, opt-in). Providers: the CPU one on ``cpu``; CUDA (and TensorRT with ``tensorrt=True``)
on ``cuda``, each only when the installed ONNX Runtime has it (``onnxruntime-gpu``).

Threads: one ONNX Runtime session per loaded model with ``intra_op_num_threads`` = the ``onnx_threads``
option, else ``torch.get_num_threads()`` (which follows ``OMP_NUM_THREADS``), and one inter-op thread,
so a process uses the same cores whichever runtime it picks; idle threads sleep rather than spin.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from lipsynckit.errors import LipSyncError, ModelUnavailableError
from lipsynckit.model import ModelInfo
from lipsynckit_wav2lip.network import INPUT_NAMES, Wav2LipNet
from lipsynckit_wav2lip.onnx_export import ensure_onnx
from lipsynckit_wav2lip.options import Wav2LipOptions
from lipsynckit_wav2lip.runtime import Wav2LipModel

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


def providers_for(device: torch.device, tensorrt: bool = False) -> list[str]:
    """ONNX Runtime execution providers for ``device``; a named one missing is an error, never a
    silent fall back to the CPU."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelUnavailableError(
            "Wav2Lip runtime=onnx needs onnxruntime", stage="model", remedy="pip install 'lipsynckit[onnx]'"
        ) from exc
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise LipSyncError(f"runtime=onnx runs on cpu or cuda, not {device}", stage="model")
    wanted = (["TensorrtExecutionProvider"] if tensorrt else []) + ["CUDAExecutionProvider"]
    have = set(ort.get_available_providers())
    missing = [p for p in wanted if p not in have]
    if missing:
        raise ModelUnavailableError(
            f"this onnxruntime lacks {', '.join(missing)} (has {', '.join(sorted(have))})",
            stage="model",
            remedy="pip install onnxruntime-gpu (TensorRT also needs the TensorRT libraries), or device=cpu",
        )
    return [*wanted, "CPUExecutionProvider"]


class OnnxGenerator:
    """An ONNX Runtime session over an exported generator: ``(audio, face) -> (B,3,96,96)`` float32."""

    def __init__(self, path: Path, providers: list[str], threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle pool threads sleep instead of spinning: on shared cores the spin took CPU the crops,
        # paste and encoder need (measured 1.4-2x faster generator calls on a loaded 2-core machine)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.threads = so.intra_op_num_threads
        self.session = ort.InferenceSession(str(path), so, providers=providers)

    def __call__(self, audio: np.ndarray, face: np.ndarray) -> np.ndarray:
        feeds = {
            INPUT_NAMES[0]: np.ascontiguousarray(audio, dtype=np.float32),
            INPUT_NAMES[1]: np.ascontiguousarray(face, dtype=np.float32),
        }
        return self.session.run(None, feeds)[0]


class Wav2LipOnnxModel(Wav2LipModel):
    """:class:`Wav2LipModel` whose generator call runs the exported file on ONNX Runtime."""

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
        self._generator: OnnxGenerator | None = None
        self._onnx_dtype = dtype or torch.float32
        super().__init__(info, net, options, device=device, weights_path=weights_path)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Wav2LipOnnxModel:
        """Choose the providers for ``device`` and the precision (float32 or int8); the torch network
        stays on the CPU, kept only to export from."""
        onnx_precision("onnx", dtype)  # validates
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
    def generator(self) -> OnnxGenerator:
        """The session, made (and the file exported) on first use."""
        if self._generator is None:
            assert self.weights_path is not None
            path = ensure_onnx(self.net, self.weights_path, self.precision, self.info.name)
            providers = providers_for(self.device, self.options.tensorrt)
            self._generator = OnnxGenerator(path, providers, self.options.onnx_threads)
            log.info(
                "wav2lip: ONNX Runtime %s on %s with %d threads (%s)",
                self.precision,
                ", ".join(providers),
                self._generator.threads,
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


def load_onnx_model(
    info: ModelInfo,
    net: Wav2LipNet,
    options: Wav2LipOptions,
    device: torch.device,
    weights_path: Path,
    dtype: torch.dtype | None,
) -> Wav2LipOnnxModel:
    """The ONNX model, its session made (and the file exported or quantised) now, so a first frame
    does not pay for it."""
    model = Wav2LipOnnxModel(info, net, options, device=device, weights_path=weights_path, dtype=dtype)
    _ = model.generator
    return model
