"""``lsk.stream``: open a streaming session on a template (video, photo or prepared avatar folder)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from lipsynckit.errors import LipSyncError
from lipsynckit.streaming.clock import Clock
from lipsynckit.streaming.options import StreamOptions
from lipsynckit.streaming.session import StreamSession

log = logging.getLogger(__name__)


def _validated(cls: Any, values: dict[str, Any], what: str) -> Any:
    """``cls(**values)``, or one :class:`LipSyncError` line naming each bad option (no pydantic dump)."""
    from pydantic import ValidationError

    try:
        return cls(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise LipSyncError(
            f"invalid {what} options: {problems}",
            stage="options",
            remedy="see lipsynckit.streaming.StreamOptions (and SyncOptions for the face pass) for valid names",
        ) from exc


def stream(
    template: str | Path,
    model: Any = "auto",
    *,
    weights: str | Path | None = None,
    fps: float = 25.0,
    realtime: bool = True,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    model_options: dict[str, Any] | None = None,
    avatar_dir: str | Path | None = None,
    clock: Clock | None = None,
    options: StreamOptions | None = None,
    **overrides: Any,
) -> StreamSession:
    """A :class:`StreamSession` lip-syncing ``template`` to pushed audio.

    ``model`` is a name or a loaded model: pass one loaded model to many sessions and they share its
    scheduler (batches across sessions). ``overrides`` are :class:`StreamOptions` fields
    (``crossfade_frames=0``) or :class:`~lipsynckit.options.SyncOptions` face-pass fields
    (``detector=``, ``face_boxes=``). The avatar is prepared once into ``avatar_dir`` (default: the
    lipsynckit cache) and that folder can later be passed as ``template``.
    """
    from lipsynckit.api import resolve_model
    from lipsynckit.options import SyncOptions
    from lipsynckit.streaming.avatar import load_avatar
    from lipsynckit.streaming.features import check_streamable

    stream_fields = {k: v for k, v in overrides.items() if k in StreamOptions.model_fields}
    sync_fields = {k: v for k, v in overrides.items() if k not in StreamOptions.model_fields}
    base = options.model_dump() if options is not None else {}
    base.update({"fps": fps, "realtime": realtime, **stream_fields})
    opts = _validated(StreamOptions, base, "stream")
    sync_opts = _validated(SyncOptions, {"progress": False, **sync_fields}, "stream face-pass")
    if isinstance(model, str):
        if model != "auto":
            from lipsynckit.registry import get_plugin

            check_streamable(model, get_plugin(model))  # refused before any weight loads
    else:
        check_streamable(model.info.name, model)
    m = resolve_model(model, weights, device, dtype, model_options)
    check_streamable(m.info.name, m)
    avatar = load_avatar(template, m, sync_opts, avatar_dir)
    log.info(
        "stream: %s on %s at %.3f fps (%s)",
        m.info.name,
        avatar.folder,
        opts.fps,
        "real time" if opts.realtime else "offline",
    )
    return StreamSession(m, avatar, opts, clock=clock)
