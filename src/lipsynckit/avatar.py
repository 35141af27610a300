"""On-disk cache of prepared faces: prepare a template video once, then sync many audio tracks.

The key covers the video's content (sha256), the model and its options, and the face-track options,
so a changed template or model never reuses stale material. Entries are written with ``torch.save``
and read back with ``torch.load(weights_only=True)``: numpy arrays are stored as tensors and restored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lipsynckit.types import Face, FaceTrack, PreparedFace

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


#: bytes of unpacked cache entries kept in memory per process (see :class:`_EntryMemo`)
MEMO_BYTES = 128 * 2**20


def _stamp(path: Path) -> tuple[str, int, int, int] | None:
    """What identifies a file's content for an in-memory copy: its place, inode, mtime and size."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), st.st_ino, st.st_mtime_ns, st.st_size)


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray | torch.Tensor):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values()) + 64
    if isinstance(value, list | tuple):
        return sum(_nbytes(v) for v in value) + 64
    return 64


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray | torch.Tensor):
        return value.copy() if isinstance(value, np.ndarray) else value.clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class _EntryMemo:
    """Unpacked cache entries kept in memory, least recently used out first, bounded in bytes.

    Why: a manifest runs hundreds of jobs on one prepared template, and each job read the same
    track and faces back with ``torch.load``, whose weights-only unpickler is Python and holds the
    GIL (70 ms a job, most of a short job's serial time). An entry is reused only while its file's
    inode, mtime and size are unchanged. Callers get copies of its arrays (a memcpy, against the
    unpickler's per-object Python work), so no caller's change reaches another job.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[str, int, int, int], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def load(self, path: Path) -> Any:
        stamp = _stamp(path)
        if stamp is not None:
            with self._lock:
                hit = self._items.get(stamp)
                if hit is not None:
                    self._items.move_to_end(stamp)
                    return _copy(hit[0])
        value = _unpack(torch.load(path, weights_only=True))
        if stamp is not None:
            size = _nbytes(value)
            with self._lock:
                if size <= self.limit // 4 and stamp not in self._items:
                    self._items[stamp] = (value, size)
                    self._bytes += size
                    while self._bytes > self.limit:
                        _, (_, gone) = self._items.popitem(last=False)
                        self._bytes -= gone
                    return _copy(value)
        return value


_memo = _EntryMemo(MEMO_BYTES)
_digests: dict[tuple[str, int, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes; remembered per process while the file is unchanged (a manifest keys
    every job's cache by its template)."""
    stamp = _stamp(Path(path))
    if stamp is not None and stamp in _digests:
        return _digests[stamp]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    digest = h.hexdigest()
    if stamp is not None:
        if len(_digests) > 4096:
            _digests.clear()
        _digests[stamp] = digest
    return digest


def cache_key(video: str | Path, model_name: str, model_options: Any, track_options: Any) -> str:
    parts = {
        "v": FORMAT_VERSION,
        "video": file_digest(video),
        "model": model_name,
        "model_options": repr(model_options),
        "track": repr(track_options),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


# the run options that change which face is tracked and how it is prepared
TRACK_FIELDS = {
    "detector",
    "detector_options",
    "face_boxes",
    "face_select",
    "face_index",
    "face_box",
    "exact_detection",
    "fps",
}


def open_cache(root: str | Path, video: str | Path, model: Any, options: Any) -> PreparedCache:
    """The cache folder for this template, model (name and options) and face-tracking options."""
    key = cache_key(
        video, model.info.name, getattr(model, "options", None), options.model_dump(include=TRACK_FIELDS)
    )
    return PreparedCache(root, key)


def _pack(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__np__": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _pack(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack(v) for v in value]
    return value


def _unpack(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__np__"}:
            return value["__np__"].numpy()
        return {k: _unpack(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v) for v in value]
    return value


def _pack_track(track: FaceTrack) -> dict[str, Any] | None:
    """A track as a few arrays (boxes, scores, landmarks): read back in milliseconds, where one tensor
    per face took 0.4-0.6 s for 900 frames (the whole of a segment job's budget). None if the faces'
    landmark counts differ."""
    found = [f for f in track.faces if f is not None]
    shapes = {f.landmarks.shape for f in found if f.landmarks is not None}
    if len(shapes) > 1:
        return None
    k = shapes.pop()[0] if shapes else 0
    marks = np.zeros((len(found), k, 2), np.float32)
    for i, f in enumerate(found):
        if f.landmarks is not None:
            marks[i] = f.landmarks
    return {
        "present": torch.tensor([f is not None for f in track.faces], dtype=torch.bool),
        "boxes": torch.from_numpy(
            np.stack([f.box for f in found]) if found else np.zeros((0, 4), np.float32)
        ),
        "scores": torch.tensor([float(f.score) for f in found], dtype=torch.float64),
        "has_landmarks": torch.tensor([f.landmarks is not None for f in found], dtype=torch.bool),
        "landmarks": torch.from_numpy(marks),
        "detector": track.detector,
    }


def _unpack_track(raw: dict[str, Any]) -> FaceTrack:
    boxes, scores = raw["boxes"].numpy(), raw["scores"].tolist()
    marks, has = raw["landmarks"].numpy(), raw["has_landmarks"].tolist()
    faces: list[Face | None] = []
    i = 0
    for present in raw["present"].tolist():
        if not present:
            faces.append(None)
            continue
        faces.append(
            Face(box=boxes[i].copy(), score=scores[i], landmarks=marks[i].copy() if has[i] else None)
        )
        i += 1
    return FaceTrack(faces=faces, detector=raw["detector"])


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class PreparedCache:
    """A folder holding the face track and the prepared faces of one (video, model, options)."""

    def __init__(self, root: str | Path, key: str) -> None:
        self.dir = Path(root) / key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def _face_path(self, index: int) -> Path:
        return self.dir / f"face_{index:06d}.pt"

    def load_track(self) -> FaceTrack | None:
        p = self.dir / "track.pt"
        if not p.is_file():
            return None
        raw = torch.load(p, weights_only=True)  # a few arrays: ~2 ms, no memo needed
        if "present" in raw:
            return _unpack_track(raw)
        raw = _unpack(raw)  # a list of faces, as written before the packed form
        faces: list[Face | None] = [
            None if f is None else Face(box=f["box"], score=f["score"], landmarks=f.get("landmarks"))
            for f in raw["faces"]
        ]
        return FaceTrack(faces=faces, detector=raw["detector"])

    def save_track(self, track: FaceTrack) -> None:
        packed = _pack_track(track)
        if packed is None:  # landmarks of different lengths: one entry per face
            faces = [
                None
                if f is None
                else {
                    "box": f.box,
                    "score": float(f.score),
                    **({"landmarks": f.landmarks} if f.landmarks is not None else {}),
                }
                for f in track.faces
            ]
            packed = _pack({"faces": faces, "detector": track.detector})
        _atomic_save(packed, self.dir / "track.pt")

    def get(self, index: int) -> PreparedFace | None:
        p = self._face_path(index)
        if not p.is_file():
            self.misses += 1
            return None
        try:
            raw = _memo.load(p)
        except Exception as exc:  # noqa: BLE001 - a damaged entry is recomputed, not fatal
            log.warning("ignoring damaged cache entry %s: %s", p, exc)
            self.misses += 1
            return None
        self.hits += 1
        return PreparedFace(box=tuple(int(v) for v in raw["box"]), crop=raw["crop"], data=raw["data"])  # type: ignore[arg-type]

    def put(self, index: int, face: PreparedFace) -> None:
        _atomic_save(
            _pack({"box": list(face.box), "crop": face.crop, "data": face.data}), self._face_path(index)
        )
