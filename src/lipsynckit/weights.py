"""Finding, fetching, verifying and loading weight files.

Order of resolution for each :class:`~lipsynckit.model.WeightFile`: an explicit path (a file, or a
folder in the official layout), then the cache (``$LIPSYNCKIT_HOME``, default
``~/.cache/lipsynckit``), then — only when asked to download — the Hugging Face hub. Loading never
runs code from a file: :func:`load_checkpoint` is the one reader (``torch.load(weights_only=True)``,
safetensors, or :mod:`lipsynckit.checkpoint_format`'s inert reader for TorchScript archives;
``torch.jit.load`` only for the one file named in ``$LIPSYNCKIT_TRUST_TORCHSCRIPT``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from lipsynckit.errors import OfflineError, WeightsError
from lipsynckit.model_info import ModelInfo, WeightFile

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where downloaded weights live: ``$LIPSYNCKIT_HOME`` or ``~/.cache/lipsynckit``."""
    env = os.environ.get("LIPSYNCKIT_HOME")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "lipsynckit"
    return base


def model_cache_dir(model: str) -> Path:
    return cache_dir() / "weights" / model


def _candidates(wf: WeightFile, root: Path, bare: bool = True) -> Iterable[Path]:
    rels = [r for r in (wf.relpath, *wf.alt_relpaths) if r]
    if rels:
        # an official layout names the place exactly (older releases' places after it); a bare name is
        # looked for at the top only when no other record of the model shares it (pytorch_model.bin)
        for rel in rels:
            yield root / rel
        if bare:
            yield root / wf.filename
        return
    yield root / wf.filename
    # one or two levels of nesting, as people unpack archives
    yield from sorted(root.glob(f"*/{wf.filename}"))
    yield from sorted(root.glob(f"*/*/{wf.filename}"))


def _sources_text(wf: WeightFile) -> str:
    lines = []
    for s in wf.sources:
        if s.hf_repo:
            lines.append(f"hf://{s.hf_repo}/{s.hf_filename or wf.filename} {s.note}".rstrip())
        if s.url:
            lines.append(f"{s.url} {s.note}".rstrip())
    return "; ".join(lines) if lines else "the model's official release"


def where_to_get(wf: WeightFile, model: str) -> str:
    dest = model_cache_dir(model) / (wf.relpath or wf.filename)
    return (
        f"get {wf.filename} from {_sources_text(wf)}; put it at {dest} (or pass --weights PATH), "
        f"or run `lipsynckit weights fetch {model}` when online"
    )


def where_to_get_one_of(members: list[WeightFile], model: str) -> str:
    """The remedy for an any-of group: each alternative, where it comes from and where it goes."""
    if len(members) == 1:
        return where_to_get(members[0], model)
    each = " OR ".join(
        f"{wf.filename} from {_sources_text(wf)} at {model_cache_dir(model) / (wf.relpath or wf.filename)}"
        for wf in members
    )
    return (
        f"get one of: {each} (or pass --weights PATH), or run `lipsynckit weights fetch {model}` when online"
    )


def not_found_error(wf: WeightFile, model: str, weights: str | Path | None = None) -> WeightsError:
    """The one error for a missing file: what, for which model, where it was looked for, where to get it."""
    return WeightsError(
        f"weight file {wf.relpath or wf.filename!r} for model {model!r} not found"
        + (f" under {weights}" if weights is not None else ""),
        stage="weights",
        remedy=where_to_get(wf, model),
    )


def _given(weights: str | Path | None) -> Path | None:
    if weights is None:
        return None
    p = Path(weights).expanduser()
    if not p.exists():
        raise WeightsError(
            "weights path does not exist",
            path=p,
            stage="weights",
            remedy="pass a weight file or the folder that holds the official layout",
        )
    return p


def _search(wf: WeightFile, model: str, roots: list[Path], bare: bool = True) -> Path | None:
    """The first file of ``wf`` in ``roots`` (the user's places), then in the model's cache folders."""
    for root in [*roots, *(model_cache_dir(m) for m in (model, *wf.also_in))]:
        for c in _candidates(wf, root, bare):
            if c.is_file():
                return c
    return None


def resolve(
    wf: WeightFile,
    model: str,
    weights: str | Path | None = None,
    download: bool = False,
) -> Path:
    """Find one weight file; download it from the hub only when ``download`` is true."""
    given = _given(weights)
    if given is not None and given.is_file():
        return given
    found = _search(wf, model, [given] if given is not None else [])
    if found is not None:
        return found
    if download:
        return download_file(wf, model)
    raise not_found_error(wf, model, weights)


def _record_for(given: Path, records: list[WeightFile], shared: set[str]) -> WeightFile:
    """The record a single file stands for: the one whose layout place it sits at, else the one named
    like it, else the model's first required file (or first alternative)."""
    posix = given.absolute().as_posix()
    for wf in records:
        if any(r and posix.endswith("/" + r) for r in (wf.relpath, *wf.alt_relpaths)):
            return wf
    for wf in records:
        if given.name == wf.filename and wf.filename not in shared:
            return wf
    needed = [wf for wf in records if not wf.optional and not wf.any_of]
    return (needed or [wf for wf in records if wf.any_of] or records)[0]


def locate(model: str, records: list[WeightFile], weights: str | Path | None = None) -> dict[str, Path]:
    """Where each record's file is on this machine, keyed by record; absent ones are left out. Nothing
    is downloaded or verified.

    ``weights`` is a folder in the official layout, or a single file: it stands for the record it is
    named after (:func:`_record_for`), and the rest of the layout is looked for in the folders above it,
    as deep as the layout goes (``models/musetalkV15/unet.pth`` finds ``models/sd-vae/...``). The
    model's cache folders come after the user's places.
    """
    given = _given(weights)
    shared = {n for n, c in Counter(wf.filename for wf in records).items() if c > 1}
    out: dict[str, Path] = {}
    roots: list[Path] = [given] if given is not None else []
    if given is not None and given.is_file():
        out[_record_for(given, records, shared).key] = given
        rels = [r for wf in records for r in (wf.relpath, *wf.alt_relpaths) if r]
        roots = list(given.parents)[: max((len(PurePosixPath(r).parts) for r in rels), default=1)]
    for wf in records:
        if wf.key not in out:
            found = _search(wf, model, roots, bare=wf.filename not in shared)
            if found is not None:
                out[wf.key] = found
    return out


def resolve_all(
    info: ModelInfo, weights: str | Path | None = None, download: bool = False
) -> dict[str, Path]:
    """Every file of a model (see :func:`resolve_files`), keyed by record."""
    return resolve_files(info.name, info.weights, weights, download)


def resolve_files(
    model: str,
    records: list[WeightFile],
    weights: str | Path | None = None,
    download: bool = False,
    owner: str | None = None,
) -> dict[str, Path]:
    """The one resolver: every required record, one file of each any-of group, and the optional files
    that are present, for ``model`` (its cache folder and where to put files; a detector passes the
    model whose folder holds its file). Files are found by :func:`locate` (a folder, or a single file
    and the layout above it, then the cache); a required file or group still missing is downloaded
    when ``download`` is true, else it is one :class:`WeightsError` saying where to get it.

    Verification is the same for every model: files found in a lipsynckit cache are verified (size,
    sha256) because we put them there, so they must be the release they claim to be; files the user
    points at are trusted here and checked by ``lipsynckit weights verify``. ``owner`` names what needs
    the files in messages (a detector's files live in a model's folder, but the user asked for the
    detector)."""
    found = locate(model, records, weights)
    given = Path(weights).expanduser() if weights is not None else None
    out: dict[str, Path] = {}
    groups: dict[str, list[WeightFile]] = {}
    for wf in records:
        if wf.any_of:
            groups.setdefault(wf.any_of, []).append(wf)
        elif wf.key in found:
            out[wf.key] = found[wf.key]
        elif not wf.optional:
            if not download:
                raise not_found_error(wf, model, weights)
            out[wf.key] = download_file(wf, model)
    for members in groups.values():
        present = [m for m in members if m.key in found]
        if present:  # the file the user named wins, then record order
            chosen = next((m for m in present if found[m.key] == given), present[0])
            out[chosen.key] = found[chosen.key]
            continue
        hub = next((m for m in members if any(s.hf_repo for s in m.sources)), None)
        if download and hub is not None:
            out[hub.key] = download_file(hub, model)
            continue
        raise WeightsError(
            f"none of {', '.join(repr(m.relpath or m.filename) for m in members)} for "
            f"{owner or f'model {model!r}'} found" + (f" under {weights}" if weights is not None else ""),
            stage="weights",
            remedy=where_to_get_one_of(members, model),
        )
    by_key = {wf.key: wf for wf in records}
    for key, path in out.items():
        caches = {model_cache_dir(m).absolute() for m in (model, *by_key[key].also_in)}
        if caches & set(path.absolute().parents):
            verify(path, by_key[key])
    return out


#: Seconds to wait for a connection to the hub before calling the machine offline.
CONNECT_TIMEOUT_S = 4.0
_UNREACHABLE: dict[str, str] = {}  # endpoint -> why, remembered for the process (no retry storm)


def hub_endpoint() -> str:
    """The Hugging Face hub address (``$HF_ENDPOINT``, read at call time, else huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def check_reachable(endpoint: str) -> None:
    """One short TCP connect to ``endpoint``; an :class:`OfflineError` at once when it fails.

    The hub client retries a dead connection with growing pauses (minutes when offline); this answers
    in at most :data:`CONNECT_TIMEOUT_S` and remembers the answer for the rest of the process.
    """
    import socket
    import threading
    from urllib.parse import urlsplit

    if endpoint not in _UNREACHABLE:
        parts = urlsplit(endpoint)
        host = parts.hostname or endpoint
        port = parts.port or (443 if parts.scheme == "https" else 80)
        outcome: list[str] = []

        def connect() -> None:  # on a thread: a name look-up has no timeout of its own
            try:
                socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
                outcome.append("")
            except OSError as exc:
                outcome.append(f"{type(exc).__name__}: {exc}")

        probe = threading.Thread(target=connect, name="lipsynckit-online-probe", daemon=True)
        probe.start()
        probe.join(CONNECT_TIMEOUT_S + 0.5)
        if outcome and not outcome[0]:
            return
        _UNREACHABLE[endpoint] = outcome[0] if outcome else f"no answer within {CONNECT_TIMEOUT_S:g} s"
    raise OfflineError(
        f"cannot reach {endpoint} ({_UNREACHABLE[endpoint]}): this machine looks offline",
        stage="weights",
        remedy="connect to the internet and run it again, or download the files elsewhere and pass "
        "--weights PATH (`lipsynckit weights list` says where to get each file)",
    )


def _remove_new_dirs(before: set[Path], root: Path) -> None:
    """Remove what a failed fetch created under ``root``: new folders (with any partial download in
    them), and ``root`` itself when it is new and left empty."""
    if not root.exists():
        return
    for d in [p for p in root.rglob("*") if p.is_dir()]:
        if d not in before and d.parent in before | {root}:
            shutil.rmtree(d, ignore_errors=True)
    if root not in before and not any(root.iterdir()):
        root.rmdir()


def download_file(wf: WeightFile, model: str) -> Path:
    """Fetch from the Hugging Face hub into the cache, verify the digest, then move into place.

    Offline is found in seconds (one short connect), and a failed fetch leaves no folder or partial
    file behind.
    """
    hub = [s for s in wf.sources if s.hf_repo]
    if not hub:
        raise WeightsError(
            f"{wf.filename} has no hub source to download from",
            stage="weights",
            remedy=where_to_get(wf, model),
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise WeightsError(
            "downloading needs huggingface_hub",
            stage="weights",
            remedy='pip install "lipsynckit[hub]"',
        ) from exc
    endpoint = hub_endpoint()
    check_reachable(endpoint)
    root = cache_dir()
    before = {p for p in root.rglob("*") if p.is_dir()} | ({root} if root.exists() else set())
    dest = model_cache_dir(model) / (wf.relpath or wf.filename)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        errors = []
        for src in hub:
            try:
                got = Path(
                    hf_hub_download(
                        repo_id=str(src.hf_repo),
                        filename=src.hf_filename or wf.filename,
                        cache_dir=str(root / "hub"),
                        endpoint=endpoint,
                        etag_timeout=CONNECT_TIMEOUT_S,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - try the next mirror, report all
                errors.append(f"{src.hf_repo}: {exc}")
                continue
            verify(got, wf)
            shutil.copyfile(got, tmp)
            os.replace(tmp, dest)
            log.info("downloaded %s to %s", wf.filename, dest)
            return dest
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_new_dirs(before, root)
        raise
    _remove_new_dirs(before, root)
    raise WeightsError(
        f"could not download {wf.filename}: " + " | ".join(e.splitlines()[0] for e in errors),
        stage="weights",
        remedy=where_to_get(wf, model),
    )


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Digest of a file, remembered per (path, size, mtime) so big files are hashed once."""
    p = Path(path)
    st = p.stat()
    memo_path = cache_dir() / "sha256.json"
    key = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    memo: dict[str, str] = {}
    try:
        memo = json.loads(memo_path.read_text())
        if key in memo:
            return memo[key]
    except (OSError, ValueError):
        memo = {}
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    try:
        memo[key] = digest
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, memo_path)
    except OSError:
        pass
    return digest


def verify(path: str | Path, wf: WeightFile) -> bool:
    """Check a file against its recorded size, then its known sha256. Returns False when no digest is known."""
    if wf.size_bytes is not None and Path(path).stat().st_size != wf.size_bytes:
        raise WeightsError(
            f"{wf.filename} is {Path(path).stat().st_size} bytes, the release is {wf.size_bytes}",
            path=path,
            stage="weights",
            remedy="the file is truncated or a different release; delete it and fetch it again",
        )
    if not wf.sha256:
        return False
    got = sha256_file(path)
    if got.lower() != wf.sha256.lower():
        raise WeightsError(
            f"sha256 mismatch for {wf.filename}: expected {wf.sha256}, got {got}",
            path=path,
            stage="weights",
            remedy="the file is corrupt or a different release; delete it and fetch it again",
        )
    return True


def _is_torchscript(path: Path) -> bool:
    from lipsynckit.checkpoint_format import file_kind

    return file_kind(path) == "TorchScript"


#: Names one TorchScript file the user vouches for; only that file is run by ``torch.jit.load``.
TRUST_TORCHSCRIPT_ENV = "LIPSYNCKIT_TRUST_TORCHSCRIPT"


def _trusted_torchscript(p: Path) -> bool:
    """The user named exactly this file in ``$LIPSYNCKIT_TRUST_TORCHSCRIPT``, and it is not in the
    cache (a downloaded file is never trusted to run)."""
    named = os.environ.get(TRUST_TORCHSCRIPT_ENV, "")
    if not named or Path(named).expanduser().resolve() != p.resolve():
        return False
    return cache_dir().resolve() not in p.resolve().parents


def _read_error(p: Path, exc: BaseException) -> WeightsError:
    text = str(exc).splitlines()[0] if str(exc) else ""
    if "Unsupported global" in str(exc) or "Weights only load failed" in text:
        import re

        glob = re.search(r"GLOBAL (\S+)", str(exc))  # torch's advice to allow-list it is not ours
        return WeightsError(
            f"refused: the file's pickle asks to run code ({glob.group(1) if glob else 'an unsupported global'})",
            path=p,
            stage="weights",
            remedy="a weight file never needs code to load; get the file from its official source",
        )
    return WeightsError(
        f"cannot read checkpoint: {type(exc).__name__}: {text}",
        path=p,
        stage="weights",
        remedy="the file is corrupt, truncated, or not a PyTorch/safetensors checkpoint; fetch it again",
    )


def load_checkpoint(path: str | Path, mmap: bool = False) -> Any:
    """Read a checkpoint without running code from it: the one reader every loader goes through.

    safetensors → its tensors; TorchScript archive → the module's parameters and buffers, read by
    :func:`lipsynckit.checkpoint_format.read_torchscript_tensors` (``torch.jit.load`` is never called,
    except on the one file a user names in ``$LIPSYNCKIT_TRUST_TORCHSCRIPT``); anything else →
    ``torch.load(weights_only=True)``, memory-mapped when ``mmap`` and the file is a zip. The result is
    the raw container (callers unwrap it).
    """
    import torch

    from lipsynckit.checkpoint_format import file_kind, read_torchscript_tensors

    p = Path(path)
    if not p.is_file():
        raise WeightsError("weight file not found", path=p, stage="weights", remedy="check the path")
    try:
        kind = file_kind(p)
        if kind == "unknown" and p.suffix != ".safetensors":
            raise WeightsError(
                "cannot read checkpoint: not a safetensors, PyTorch or TorchScript file",
                path=p,
                stage="weights",
                remedy="the file is corrupt, truncated or of another kind; fetch it again from its source",
            )
        if kind == "safetensors" or p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(p), device="cpu"))
        if kind == "TorchScript":
            if _trusted_torchscript(p):
                log.warning(
                    "RUNNING the TorchScript in %s because %s names it: its code runs with your rights",
                    p,
                    TRUST_TORCHSCRIPT_ENV,
                )
                module = torch.jit.load(str(p), map_location="cpu")
                return {k: v.detach().clone() for k, v in module.state_dict().items()}
            return read_torchscript_tensors(p)
        return torch.load(str(p), map_location="cpu", weights_only=True, mmap=mmap and kind == "torch zip")
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - any read failure is a bad file for the user
        raise _read_error(p, exc) from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, unwrapped (:func:`unwrap_state_dict`) and memory-mapped when the file
    allows it (zip-format torch files)."""
    return unwrap_state_dict(load_checkpoint(path, mmap=True))


def describe_file(path: str | Path) -> tuple[str, str, str | None]:
    """What a weight file is, for ``lipsynckit weights verify``: its format (safetensors, torch zip,
    legacy pickle, TorchScript, unknown), a verdict (``ok``, ``unsafe``: reading it would run code,
    ``unreadable``, ``unknown format``) and why. Nothing from the file runs; zip tensors are
    memory-mapped, not read."""
    from lipsynckit.checkpoint_format import file_kind, torchscript_scan

    p = Path(path)
    kind = file_kind(p)
    if kind == "unknown":
        return kind, "unknown format", "not a safetensors, PyTorch or TorchScript file"
    if kind == "TorchScript":
        why = torchscript_scan(p)
        return kind, ("ok" if why is None else "unsafe"), why
    if kind == "safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(p), framework="pt") as f:
                f.keys()
        except Exception as exc:  # noqa: BLE001 - reported, never raised
            return kind, "unreadable", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return kind, "ok", None
    try:
        load_checkpoint(p, mmap=True)
    except WeightsError as exc:
        return kind, ("unsafe" if exc.message.startswith("refused") else "unreadable"), exc.message
    return kind, "ok", None


def unwrap_state_dict(
    obj: Any, keys: tuple[str, ...] = ("state_dict", "model", "module")
) -> dict[str, torch.Tensor]:
    """Unwrap training containers (``{'state_dict': ..., 'optimizer': ...}``) and strip ``module.``."""
    import torch

    sd = obj
    for _ in range(3):
        if isinstance(sd, Mapping) and not any(isinstance(v, torch.Tensor) for v in sd.values()):
            for k in keys:
                if k in sd and isinstance(sd[k], Mapping):
                    sd = sd[k]
                    break
            else:
                break
        else:
            break
    if not isinstance(sd, Mapping):
        raise WeightsError(f"checkpoint holds a {type(sd).__name__}, not a state dict", stage="weights")
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def state_dict_diff(
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    got: Mapping[str, torch.Tensor],
    ignore_missing: tuple[str, ...] = (),
) -> tuple[list[str], list[str], list[str]]:
    """Missing keys, unexpected keys and shape mismatches (as readable lines)."""
    missing = [k for k in expected if k not in got and not k.endswith(ignore_missing)]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k}: file {tuple(got[k].shape)} vs model {tuple(expected[k])}"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k])
    ]
    return missing, unexpected, shapes


def load_strict(
    module: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    path: str | Path | None = None,
    ignore_missing: tuple[str, ...] = (),
    what: str = "model",
    assign: bool = False,
) -> None:
    """``load_state_dict(strict=True)`` with a readable diff on failure.

    ``ignore_missing`` names key suffixes that may be absent (computed buffers such as positional
    encodings); they keep the module's own values. ``assign`` makes the checkpoint tensors the
    module's own (a module built on the ``meta`` device takes memory-mapped tensors without a copy);
    any tensor left on ``meta`` is then an error.
    """
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing, unexpected, shapes = state_dict_diff(expected, state_dict, ignore_missing)
    if missing or unexpected or shapes:

        def show(title: str, items: list[str]) -> str:
            if not items:
                return ""
            more = f" … and {len(items) - 8} more" if len(items) > 8 else ""
            return f"\n  {title} ({len(items)}): " + ", ".join(items[:8]) + more

        raise WeightsError(
            f"this is not a {what} checkpoint (or not the variant asked for):"
            + show("missing", missing)
            + show("unexpected", unexpected)
            + show("wrong shape", shapes),
            path=path,
            stage="weights",
            remedy="check that the file matches the model and variant you chose",
        )
    keep = {k: v for k, v in module.state_dict().items() if k not in state_dict}
    module.load_state_dict({**keep, **state_dict}, strict=True, assign=assign)
    if assign:
        left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
        if left:
            raise WeightsError(f"{what}: tensors left unset: {left[:5]}", path=path, stage="weights")


_announced: set[str] = set()


def announce_licences(info: ModelInfo) -> None:
    """Tell the user, once per process and model, under what terms the loaded weights come."""
    if info.name in _announced:
        return
    _announced.add(info.name)
    if info.non_commercial:
        log.warning(
            "%s weights are licensed %s: NON-COMMERCIAL use only. Check the licence before using outputs commercially.",
            info.display_name,
            info.weights_license,
        )
    elif info.needs_weights:
        log.info("%s weights licence: %s", info.display_name, info.weights_license)
