"""Wav2Lip's generator exported to ONNX once per checkpoint, and the int8 copy quantised from it.

The files are ours: written by ``torch.onnx.export`` from the strictly loaded weights (no pickle is
read back), named and tagged with the source checkpoint's sha256 so a changed checkpoint re-exports,
written to a temporary name and renamed (atomic: two processes exporting at once each write their own
temporary file and the last rename wins, both complete and equal).
They sit beside the weights, or in ``<lipsynckit cache>/onnx/<model>/`` when that folder is read-only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from lipsynckit.errors import LipSyncError
from lipsynckit_wav2lip.network import INPUT_NAMES, Wav2LipNet

log = logging.getLogger(__name__)

OPSET = 17
# bump when the export (or the quantisation recipe) changes: older cached files are then ignored
EXPORT_VERSION = "1"
OUTPUT_NAME = "out"
META_SHA = "lipsynckit.source_sha256"
META_VERSION = "lipsynckit.export_version"
META_PRECISION = "lipsynckit.precision"
PRECISIONS = ("fp32", "int8")


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".lsk-write-test-"):
            return True
    except OSError:
        return False


def onnx_path(weights_path: Path, sha256: str, precision: str, model: str = "wav2lip") -> Path:
    """Where the exported file of ``weights_path`` lives: beside it, else in the lipsynckit cache."""
    if precision not in PRECISIONS:
        raise LipSyncError(
            f"no ONNX export for precision {precision!r}", stage="model", remedy="fp32 or int8"
        )
    name = f"{weights_path.stem}.{sha256[:16]}.v{EXPORT_VERSION}.{precision}.onnx"
    if _writable(weights_path.parent):
        return weights_path.parent / name
    from lipsynckit.weights import cache_dir

    return cache_dir() / "onnx" / model / name


def read_metadata(path: Path) -> dict[str, str]:
    """The lipsynckit tags of an exported file (without loading the weights' tensors)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def _is_current(path: Path, sha256: str, precision: str) -> bool:
    if not path.is_file():
        return False
    try:
        meta = read_metadata(path)
    except Exception as exc:  # noqa: BLE001 - a damaged cache file is re-made, not fatal
        log.warning("wav2lip: cached ONNX file %s is unreadable (%s); exporting again", path, exc)
        return False
    return (
        meta.get(META_SHA) == sha256
        and meta.get(META_VERSION) == EXPORT_VERSION
        and meta.get(META_PRECISION) == precision
    )


def _tag(path: Path, sha256: str, precision: str) -> None:
    import onnx

    m = onnx.load(str(path))
    tags = {META_SHA: sha256, META_VERSION: EXPORT_VERSION, META_PRECISION: precision}
    kept = [(p.key, p.value) for p in m.metadata_props if p.key not in tags]  # the quantiser copies ours
    del m.metadata_props[:]
    for key, value in [*kept, *tags.items()]:
        entry = m.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def export_fp32(net: Wav2LipNet, dest: Path) -> None:
    """``torch.onnx.export`` of ``net`` (audio (B,1,80,16), face (B,6,96,96) → (B,3,96,96)), batch dynamic."""
    net = net.eval().to("cpu", torch.float32)
    audio = torch.zeros(1, 1, 80, 16)
    face = torch.zeros(1, 6, 96, 96)
    axes = {n: {0: "batch"} for n in (*INPUT_NAMES, OUTPUT_NAME)}
    with torch.inference_mode(False), torch.no_grad(), _quiet_exporter():
        torch.onnx.export(
            net,
            (audio, face),
            str(dest),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency, exact on this network
        )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        yield


def _atomic_make(dest: Path, make: Callable[[Path], None]) -> None:
    """Run ``make(tmp_path)`` and rename the result onto ``dest``; the partial file is removed on error."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        make(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_onnx(net: Wav2LipNet, weights_path: Path, precision: str = "fp32", model: str = "wav2lip") -> Path:
    """The exported (``fp32``) or quantised (``int8``) generator of ``weights_path``, made if missing
    or stale. ``net`` must hold that checkpoint's weights (the plugin has just loaded them)."""
    from lipsynckit.weights import sha256_file

    sha = sha256_file(weights_path)
    dest = onnx_path(weights_path, sha, precision, model)
    if _is_current(dest, sha, precision):
        return dest
    if precision == "fp32":
        log.info("wav2lip: exporting the generator to ONNX (once per checkpoint): %s", dest)

        def make(tmp: Path) -> None:
            export_fp32(net, tmp)
            _tag(tmp, sha, "fp32")

    else:
        from lipsynckit_wav2lip.onnx_quantize import quantize_int8

        source = ensure_onnx(net, weights_path, "fp32", model)
        log.info("wav2lip: quantising the ONNX generator to int8 (once per checkpoint): %s", dest)

        def make(tmp: Path) -> None:
            quantize_int8(source, tmp)
            _tag(tmp, sha, "int8")

    _atomic_make(dest, make)
    return dest
