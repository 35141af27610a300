"""The engines that run the exported Wav2Lip generator: OpenVINO on the CPU, ONNX Runtime on CUDA.

Chosen by figures (docs/benchmarks.md, "Wav2Lip on ONNX Runtime"): on the CPU, OpenVINO ran the same
int8 file 2.7-3.5x faster than ONNX Runtime and fp32 on par or better, so ``runtime="onnx"`` on ``cpu``
compiles the file with OpenVINO. OpenVINO has no NVIDIA backend, so on ``cuda`` ONNX Runtime's CUDA
(and, with ``tensorrt=True``, TensorRT) providers run the same file. ONNX Runtime's CPU provider is
not a user path; :class:`OrtGenerator` on the CPU is what the quantiser calibrates with and what the
benchmark measures beside OpenVINO.

Both take ``(audio (B,1,80,16), face (B,6,96,96))`` float32 arrays and return ``(B,3,96,96)``
float32, and say their ``engine``, ``path`` and ``threads``.

Threads per process: each engine runs ``threads`` intra-op threads (the ``onnx_threads`` option, else
``torch.get_num_threads()``, which follows ``OMP_NUM_THREADS``), so a process uses the same cores
whichever runtime it picks.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lipsynckit.errors import LipSyncError, ModelUnavailableError
from lipsynckit_wav2lip.network import INPUT_NAMES

log = logging.getLogger(__name__)

ENGINES = ("openvino", "onnxruntime")


def engine_for(device: torch.device) -> str:
    """``openvino`` on the CPU, ``onnxruntime`` on CUDA; any other device is refused."""
    if device.type == "cpu":
        return "openvino"
    if device.type == "cuda":
        return "onnxruntime"
    raise LipSyncError(f"runtime=onnx runs on cpu or cuda, not {device}", stage="model")


def require_engine(device: torch.device) -> str:
    """:func:`engine_for` ``device``, with a clear error (before any weights load) when its package
    is not installed."""
    engine = engine_for(device)
    try:
        if engine == "openvino":
            import openvino  # noqa: F401
        else:
            import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ModelUnavailableError(
            f"Wav2Lip runtime=onnx on {device.type} needs {engine}",
            stage="model",
            remedy="pip install 'lipsynckit[onnx]'",
        ) from exc
    return engine


def default_threads(threads: int | None) -> int:
    return int(threads or torch.get_num_threads())


def _feeds(audio: np.ndarray, face: np.ndarray) -> dict[str, np.ndarray]:
    return {
        INPUT_NAMES[0]: np.ascontiguousarray(audio, dtype=np.float32),
        INPUT_NAMES[1]: np.ascontiguousarray(face, dtype=np.float32),
    }


# -- OpenVINO (the CPU engine) ---------------------------------------------------------------------

_COMPILED: dict[tuple[str, int, int, int, str], Any] = {}
_COMPILED_LOCK = threading.Lock()


def _compiled_model(path: Path, threads: int, hint: str) -> Any:
    """The file compiled for the CPU once per process (and per file version, thread count and hint):
    two models loaded from one checkpoint share it."""
    import openvino as ov

    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, threads, hint)
    with _COMPILED_LOCK:
        compiled = _COMPILED.get(key)
        if compiled is None:
            config = {
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": hint,
                # fp32 stays fp32: on a CPU with bf16 (AVX-512 BF16, AMX) OpenVINO would otherwise run
                # float layers in bf16, which the goldens' tolerance does not allow; int8 layers stay int8
                "INFERENCE_PRECISION_HINT": "f32",
            }
            compiled = ov.Core().compile_model(str(path), "CPU", config)
            _COMPILED[key] = compiled
        return compiled


class OpenVinoGenerator:
    """The exported file compiled by OpenVINO for the CPU, twice: with the latency hint (one request on
    all ``threads``) for a batch of one, the stream's usual call; with the throughput hint (one
    single-thread stream per core) for larger batches, split across its requests. Measured on 2
    cores: the split ran batches of 8 1.03x (int8) and 1.17x (fp32) faster than one latency request on
    quiet cores, 1.3-2.3x with other work on them; a batch of one ran 1.9x faster on the latency
    request than on one throughput request (int8, load ~3; docs/benchmarks.md)."""

    engine = "openvino"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import openvino as ov

        self.path = path
        self.threads = default_threads(threads)
        self._compiled = _compiled_model(path, self.threads, "LATENCY")
        self._request = self._compiled.create_infer_request()
        self.requests = 1
        self._queue: Any = None
        if self.threads > 1:  # one thread: nothing to split across
            self._batched = _compiled_model(path, self.threads, "THROUGHPUT")
            self.requests = int(self._batched.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            if self.requests > 1:
                self._queue = ov.AsyncInferQueue(self._batched, self.requests)
        self._lock = threading.Lock()  # one set of requests: calls from the scheduler's threads take turns

    def __call__(self, audio: np.ndarray, face: np.ndarray) -> np.ndarray:
        feeds = _feeds(audio, face)
        b = len(feeds[INPUT_NAMES[0]])
        with self._lock:
            if self._queue is None or b < self.requests:
                self._request.infer(feeds)
                # the request reuses its output buffer on the next call: hand back a copy
                return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)
            out = np.empty((b, 3, 96, 96), dtype=np.float32)
            step = -(-b // self.requests)

            def done(request: Any, start: int) -> None:
                res = request.get_output_tensor(0).data
                out[start : start + len(res)] = res

            self._queue.set_callback(done)
            for s in range(0, b, step):
                part = {k: v[s : s + step] for k, v in feeds.items()}
                self._queue.start_async(part, s)
            self._queue.wait_all()
            return out


# -- ONNX Runtime (the CUDA engine; the quantiser's and the benchmark's CPU reference) -------------


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


class OrtGenerator:
    """An ONNX Runtime session over the exported file."""

    engine = "onnxruntime"

    def __init__(self, path: Path, providers: list[str], threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = default_threads(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle pool threads sleep instead of spinning: on shared cores the spin took CPU the crops,
        # paste and encoder need (measured 1.4-2x faster generator calls on a loaded 2-core machine)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.threads = so.intra_op_num_threads
        self.providers = providers
        self.session = ort.InferenceSession(str(path), so, providers=providers)

    def __call__(self, audio: np.ndarray, face: np.ndarray) -> np.ndarray:
        return self.session.run(None, _feeds(audio, face))[0]


Generator = OpenVinoGenerator | OrtGenerator


def make_generator(path: Path, device: torch.device, threads: int | None, tensorrt: bool) -> Generator:
    """The engine :func:`engine_for` names, over ``path``."""
    if require_engine(device) == "openvino":
        return OpenVinoGenerator(path, threads)
    return OrtGenerator(path, providers_for(device, tensorrt), threads)
