"""What a weight file is, and reading a TorchScript archive's tensors without running it.

``torch.jit.load`` runs the archive's TorchScript (every ``__setstate__``, which can create and write
files), so lipsynckit never calls it on its own. A TorchScript archive is a zip whose ``data.pkl``
pickles the module tree; :func:`read_torchscript_tensors` unpickles it with an unpickler that resolves
only tensor-rebuilding functions and storage types, turns every ``__torch__`` class into an inert
record of its attributes, and reads tensor bytes from the archive itself. No name outside that short
list can be reached, so no code from the file runs. A module whose state is not a plain attribute
dict (a custom ``__getstate__``) cannot be named without running its code: it is refused.

Nothing here imports torch at module level (``lipsynckit --help`` must stay light).
"""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

from lipsynckit.errors import WeightsError

__all__ = ["FileKind", "file_kind", "read_torchscript_tensors", "torchscript_scan", "convert_hint"]

FileKind = Literal["safetensors", "torch zip", "TorchScript", "legacy pickle", "unknown"]


def convert_hint(path: str | Path) -> str:
    """How to turn a TorchScript archive into a plain state dict, where the user trusts it."""
    p = Path(path)
    out = p.with_suffix(".pth") if p.suffix != ".pth" else p.with_name(p.stem + ".state.pth")
    return (
        f"convert it where you trust it: m = torch.jit.load('{p}'); torch.save(m.state_dict(), "
        f"'{out}'); then pass {out.name} (or set LIPSYNCKIT_TRUST_TORCHSCRIPT={p} to run it)"
    )


def file_kind(path: str | Path) -> FileKind:
    """The format of a weight file, from its first bytes and (for zips) its member names."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(16)
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 0 < n <= p.stat().st_size - 8:
            return "safetensors"
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "unknown"
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "TorchScript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch zip"
        return "unknown"
    if head[:1] == b"\x80" and 2 <= head[1] <= 5:  # a pickle's PROTO opcode (torch's legacy format)
        return "legacy pickle"
    return "unknown"


class _StorageKind:
    """What a storage class name in a persistent id stands for: only its dtype (never callable)."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype


class _ScriptObject:
    """An inert stand-in for a ``__torch__`` class: BUILD stores the state, nothing else runs."""

    qualname = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state


_TORCH_FUNCS = ("_rebuild_tensor_v2", "_rebuild_parameter")
_JIT_PICKLE = (
    "build_intlist",
    "build_doublelist",
    "build_boollist",
    "build_tensorlist",
    "restore_type_tag",
)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names a TorchScript ``data.pkl`` holds tensors with; ``scan`` reads no bytes."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, size: int, scan: bool) -> None:
        super().__init__(io.BytesIO(data))
        self._zip, self._prefix, self._size, self._scan = archive, prefix, size, scan
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        import torch

        if module == "__torch__" or module.startswith("__torch__."):
            key = f"{module}.{name}"
            if key not in self._classes:
                self._classes[key] = type(name, (_ScriptObject,), {"qualname": key})
            return self._classes[key]
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in _TORCH_FUNCS:
            return (lambda *a, **k: None) if self._scan else getattr(torch._utils, name)
        if module == "torch.jit._pickle" and name in _JIT_PICKLE:
            import importlib

            jit_pickle = importlib.import_module("torch.jit._pickle")
            return (lambda *a, **k: None) if self._scan else getattr(jit_pickle, name)
        if module == "torch" and name.endswith("Storage") and isinstance(getattr(torch, name, None), type):
            with warnings.catch_warnings():  # the legacy storage classes warn when asked their dtype
                warnings.simplefilter("ignore")
                return _StorageKind(getattr(torch, name).dtype)  # not the class: nothing to call
        raise pickle.UnpicklingError(f"the archive's pickle asks for {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        import torch

        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError("unexpected persistent id in the archive")
        _tag, storage_type, key, _location, numel = pid
        if self._scan:
            return None
        info = self._zip.getinfo(f"{self._prefix}/data/{key}")
        if not isinstance(storage_type, _StorageKind) or not isinstance(storage_type.dtype, torch.dtype):
            raise pickle.UnpicklingError("a tensor record without a storage type")
        dtype = storage_type.dtype
        nbytes = int(numel) * torch.empty((), dtype=dtype).element_size()
        if info.file_size > self._size or nbytes > info.file_size:
            raise pickle.UnpicklingError(f"tensor record {key} is larger than the archive or too short")
        raw = bytearray(self._zip.read(info))
        untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _unpickle(path: Path, scan: bool) -> Any:
    size = path.stat().st_size
    with zipfile.ZipFile(path) as z:
        data_pkl = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not data_pkl:
            raise pickle.UnpicklingError("no data.pkl at the archive's top")
        info = z.getinfo(data_pkl[0])
        if info.file_size > size * 4 + (1 << 20):
            raise pickle.UnpicklingError("data.pkl is implausibly large for the archive")
        prefix = data_pkl[0].split("/")[0]
        return _RestrictedUnpickler(z.read(info), z, prefix, size, scan).load()


def _collect(obj: Any, prefix: str, out: dict[str, Any], path: Path) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
        return
    if isinstance(obj, _ScriptObject):
        state = getattr(obj, "state", None)
        if state is None:
            return
        if not isinstance(state, dict):
            raise WeightsError(
                f"this TorchScript archive's {type(obj).qualname} keeps its state through its own "
                "__setstate__, which would have to run to name its tensors; refused",
                path=path,
                stage="weights",
                remedy=convert_hint(path),
            )
        for k, v in state.items():
            _collect(v, f"{prefix}.{k}" if prefix else str(k), out, path)


def read_torchscript_tensors(path: str | Path) -> dict[str, Any]:
    """The parameters and buffers of a TorchScript archive's module tree, keyed like ``state_dict()``,
    read without running anything from the file (see the module docstring)."""
    p = Path(path)
    try:
        root = _unpickle(p, scan=False)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - any refusal or damage is one line for the user
        raise WeightsError(
            f"cannot read this TorchScript archive safely ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
            path=p,
            stage="weights",
            remedy=convert_hint(p),
        ) from exc
    out: dict[str, Any] = {}
    try:
        _collect(root, "", out, p)
    except RecursionError as exc:
        raise WeightsError(
            "this TorchScript archive nests its modules too deeply to read",
            path=p,
            stage="weights",
            remedy=convert_hint(p),
        ) from exc
    return out


def torchscript_scan(path: str | Path) -> str | None:
    """Why a TorchScript archive cannot be read safely, or ``None`` when it can (no tensor is read)."""
    p = Path(path)
    try:
        root = _unpickle(p, scan=True)
        _collect(root, "", {}, p)
    except WeightsError as exc:
        return exc.message
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None
