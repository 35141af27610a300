"""Outputs never destroy anything the run did not make.

Three rules, checked before any work and again where the output is committed:

- a file output (``.mp4``, ``.mkv``, ...) replaces only a regular file (or a symbolic link, which is
  replaced, never followed); folders, device nodes, FIFOs and sockets are refused;
- a PNG-folder output writes only into a new or empty folder, or one a lipsynckit run made (it holds
  :data:`MARKER`); a folder holding an input is refused;
- an output is never an input.

Two runs cannot both write one output: :func:`claim_output` holds an OS file lock (``filelock``) for
the run, so the second gets one clear line. Temporary names carry their owner (pid and a random
part, :func:`partial_name`), so a clean-up removes only its own files and those of dead runs
(:func:`remove_stale_partials`). Lock files live in the temporary folder, not beside the output.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lipsynckit.errors import OutputError

__all__ = [
    "MARKER",
    "check_not_an_input",
    "check_output_target",
    "claim_output",
    "partial_name",
    "remove_stale_partials",
]

log = logging.getLogger(__name__)

#: The file a PNG-folder output carries, so that a later run may replace the folder.
MARKER = ".lipsynckit-output"
_STAGE = "output"
_REMEDY = "choose another -o (a new file name, or a new or empty folder for PNG frames)."


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _resolved(p: Path) -> Path:
    """The absolute path with the folders' links resolved, the last part kept (a link is itself)."""
    return p.expanduser().absolute().parent.resolve() / p.name


def check_not_an_input(output: str | Path, inputs: Iterable[object]) -> list[Path]:
    """Refuse an output that is one of the inputs; returns the inputs' resolved paths."""
    p = Path(output).expanduser()
    ins = [Path(i).expanduser().resolve() for i in inputs if isinstance(i, (str, Path))]
    if _resolved(p) in ins or p.resolve() in ins:
        raise OutputError("the output is one of the inputs", path=p, stage=_STAGE, remedy=_REMEDY)
    return ins


def check_output_target(output: str | Path, mode: str, inputs: Iterable[object] = ()) -> Path:
    """Refuse, with one :class:`OutputError`, an output that would destroy what the run did not make.

    ``mode`` is the sink mode (``"png"`` for a folder of frames); ``inputs`` the run's input paths
    (other entries, such as in-memory clips, are ignored).
    """
    p = Path(output).expanduser()
    target = _resolved(p)
    ins = check_not_an_input(p, inputs)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        st = None
    if mode != "png":
        if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise OutputError(
                f"the output exists and is {_kind(st.st_mode)}; only a regular file is replaced",
                path=p,
                stage=_STAGE,
                remedy=_REMEDY,
            )
        return p
    if st is None:
        return p
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(
            f"a PNG-frames output must be a folder; this exists and is "
            f"{'a file' if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)}",
            path=p,
            stage=_STAGE,
            remedy=_REMEDY,
        )
    held = [i for i in ins if target == i or target in i.parents]
    if held:
        raise OutputError(
            f"the output folder holds an input ({held[0]}); writing PNG frames there would replace it",
            path=p,
            stage=_STAGE,
            remedy=_REMEDY,
        )
    if any(True for _ in p.iterdir()) and not (p / MARKER).is_file():
        raise OutputError(
            "the output folder is not empty and was not made by lipsynckit; it is not replaced",
            path=p,
            stage=_STAGE,
            remedy=_REMEDY,
        )
    return p


# ----------------------------------------------------------------------------------------- locking
_locks: dict[str, Any] = {}
_locks_guard = threading.Lock()


def _lock_path(output: Path) -> Path:
    folder = Path(tempfile.gettempdir()) / f"lipsynckit-locks-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(mode=0o700, exist_ok=True)
    digest = hashlib.sha256(str(_resolved(output)).encode()).hexdigest()[:32]
    return folder / f"{digest}.lock"


@contextmanager
def claim_output(output: str | Path) -> Iterator[None]:
    """Hold the output for this run: a second run (another process, or another thread of this one)
    asking for the same path gets one :class:`OutputError` at once. Re-entrant in one thread."""
    from filelock import FileLock, Timeout

    p = Path(output).expanduser()
    try:
        key = str(_lock_path(p))
    except OSError as exc:  # no writable temporary folder: the run goes on unguarded, and says so
        log.warning("cannot lock %s against other runs (%s); go on without the lock", p, exc)
        yield
        return
    with _locks_guard:
        lock = _locks.setdefault(key, FileLock(key, timeout=0))
    try:
        lock.acquire()
    except Timeout:
        raise OutputError(
            "another lipsynckit run is writing this output now",
            path=p,
            stage=_STAGE,
            remedy="wait for that run to finish, or choose another -o.",
        ) from None
    try:
        yield
    finally:
        lock.release()


# ------------------------------------------------------------------------------- temporary names
_OWNED = re.compile(r"^\.(?P<stem>.*)\.(?P<pid>\d+)-(?P<rand>[0-9a-f]{8})\.(?:partial|old)(?:\..*)?$")


def partial_name(output: Path, kind: str = "partial", keep_suffix: bool = True) -> Path:
    """A hidden temporary sibling of ``output`` that names its owner: ``.STEM.PID-RANDOM.partial.SUF``
    (a folder's: ``.NAME.PID-RANDOM.partial``; ``kind="old"``: a replaced folder on its way out)."""
    suffix = output.suffix if keep_suffix else ""
    stem = output.stem if suffix else output.name
    return output.parent / f".{stem}.{os.getpid()}-{secrets.token_hex(4)}.{kind}{suffix}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_partials(output: Path) -> list[Path]:
    """Remove the temporary files of ``output`` left by runs that are no longer alive; returns them.
    Files of live runs, of other outputs, and of unknown owners are left alone."""
    removed: list[Path] = []
    stems = {output.stem, output.name}
    try:
        siblings = [q for st in stems for q in output.parent.glob(f".{glob_escape(st)}.*")]
    except OSError:
        return removed
    for q in siblings:
        m = _OWNED.match(q.name)
        if m is None or m.group("stem") not in stems or _alive(int(m.group("pid"))) or not q.exists():
            continue
        try:
            if q.is_dir() and not q.is_symlink():
                shutil.rmtree(q)
            else:
                q.unlink()
            removed.append(q)
        except OSError:
            continue
    if removed:
        log.info("removed %d partial output(s) of earlier runs that ended: %s", len(removed), removed)
    return removed


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters quoted."""
    return re.sub(r"([*?\[])", r"[\1]", text)
