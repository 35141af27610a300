"""The Python API: one call for the whole job, and each stage callable on in-memory arrays."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lipsynckit.model import LipSyncModel
from lipsynckit.options import SyncOptions
from lipsynckit.pipeline import (
    StageHook,
    SyncResult,
    generate_frames,
    scheduler_options,
    scheduler_target,
    sync_file,
)
from lipsynckit.timing import StageTimer
from lipsynckit.types import AudioClip, FaceTrack

log = logging.getLogger(__name__)


def resolve_model(
    model: str | LipSyncModel = "auto",
    weights: str | Path | None = None,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    model_options: dict[str, Any] | None = None,
    download: bool = False,
) -> LipSyncModel:
    """A loaded model from a name (``auto`` picks the best usable one and logs why) or an instance."""
    if not isinstance(model, str):
        return model
    from lipsynckit.registry import load_model
    from lipsynckit.selection import choose_model

    name = model
    if name == "auto":
        name, why = choose_model(str(weights) if weights is not None else None, device)
        log.warning("model auto: %s", why) if name == "viseme" else log.info("model auto: %s", why)
    return load_model(
        name, weights=weights, device=device, dtype=dtype, options=model_options, download=download
    )


def _options(options: SyncOptions | None, overrides: dict[str, Any]) -> SyncOptions:
    base = options.model_dump() if options is not None else {}
    base.update(overrides)
    return SyncOptions(**base)


def sync(
    video: str | Path,
    audio: str | Path | AudioClip | None = None,
    model: str | LipSyncModel = "auto",
    output: str | Path | None = None,
    *,
    weights: str | Path | None = None,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    model_options: dict[str, Any] | None = None,
    options: SyncOptions | None = None,
    hook: StageHook | None = None,
    **option_overrides: Any,
) -> SyncResult:
    """Lip-sync ``video`` (or a still image) to ``audio`` (default: the video's own track).

    ``option_overrides`` are :class:`SyncOptions` fields (``length_mode="pingpong"``, ``face_boxes=...``).
    ``hook(stage, artefact)`` sees what each stage made, once per stage and in order (the face track,
    the features, the gate plan; see :data:`lipsynckit.pipeline.STAGES`), so a notebook can inspect
    them without running again. What it raises ends the run (before ``encode``: with no output).
    """
    from lipsynckit.inputs import check_run
    from lipsynckit.output_guard import claim_output

    opts = _options(options, option_overrides)
    check_run(
        video, audio, output, opts.output_mode, opts.max_pixels
    )  # a bad file costs a second, not a model load
    with claim_output(output) if output is not None else nullcontext():  # before the model loads
        m = resolve_model(model, weights, device, dtype, model_options)
        out = Path(output) if output is not None else Path.cwd() / f"{Path(video).stem}.{m.info.name}.mp4"
        result = sync_file(video, audio, m, out, opts, hook=hook)
    log.debug("%s", result.summary())
    return result


def prepare_avatar(
    video: str | Path,
    model: str | LipSyncModel = "auto",
    avatar_dir: str | Path | None = None,
    **kwargs: Any,
) -> Path:
    """Prepare a template once (faces, crops, model references cached on disk); returns the cache root."""
    from lipsynckit.avatar import open_cache
    from lipsynckit.media import VideoSource
    from lipsynckit.pipeline import track_source

    opts = _options(
        kwargs.pop("options", None), {k: v for k, v in kwargs.items() if k in SyncOptions.model_fields}
    )
    m = resolve_model(
        model, kwargs.get("weights"), kwargs.get("device"), kwargs.get("dtype"), kwargs.get("model_options")
    )
    root = Path(avatar_dir) if avatar_dir is not None else Path(video).with_suffix(".avatar")
    opts = opts.model_copy(update={"avatar_dir": root})
    cache = open_cache(root, video, m, opts)
    src = VideoSource(video, fps_for_images=opts.fps, max_pixels=opts.max_pixels)
    timer = StageTimer()
    track = cache.load_track()
    if track is None:
        track = track_source(
            Path(video), src.info.num_frames, opts, m, timer, (src.info.width, src.info.height)
        )
        cache.save_track(track)  # as found; the model's box rules run on every use
    track = m.adjust_track(track, (src.info.height, src.info.width))
    for s, frame in enumerate(src.frames(range(src.info.num_frames))):
        face = track.faces[s]
        if face is not None and cache.get(s) is None:
            cache.put(s, m.prepare(frame, face))
    return root


def sync_batch(
    template: str | Path,
    audios: Sequence[str | Path],
    out_dir: str | Path,
    model: str | LipSyncModel = "auto",
    *,
    concurrency: int | None = None,
    weights: str | Path | None = None,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    model_options: dict[str, Any] | None = None,
    **option_overrides: Any,
) -> list[SyncResult]:
    """One template, many audio tracks (personalised videos): prepared once, batched across jobs.

    ``concurrency`` jobs are in flight at once on threads (default: the usable cores on a CPU, 4 on a GPU). Each output is named
    after its audio; same-named audio from different folders get their folder in the name
    (``d1_a.mp4``, ``d2_a.mp4``), and an audio given twice is refused.
    """
    from lipsynckit.inputs import check_run
    from lipsynckit.jobs.concurrency import default_concurrency
    from lipsynckit.jobs.manifest import distinct_output_names
    from lipsynckit.scheduler import BatchScheduler

    out = Path(out_dir)
    option_overrides.setdefault("avatar_dir", out / ".avatar")
    opts = _options(None, option_overrides)
    for a in audios:
        check_run(template, a, None, max_pixels=opts.max_pixels)
    names = dict(zip(map(str, audios), distinct_output_names(audios), strict=True))
    m = resolve_model(model, weights, device, dtype, model_options)
    workers = concurrency if concurrency is not None else default_concurrency(device)
    out.mkdir(parents=True, exist_ok=True)
    prepare_avatar(template, m, opts.avatar_dir, options=opts)
    with BatchScheduler(scheduler_target(m), scheduler_options(m, opts.batch_size)) as scheduler:

        def one(a: str | Path) -> SyncResult:
            return sync_file(
                template,
                a,
                m,
                out / names[str(a)],
                opts.model_copy(update={"progress": False}),
                scheduler,
            )

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = list(pool.map(one, audios))
        stats = scheduler.stats()
    for r in results:
        r.scheduler = stats.model_dump() if hasattr(stats, "model_dump") else dict(stats)
    return results


def detect_faces(
    frames: np.ndarray,
    detector: str = "auto",
    options: dict[str, Any] | None = None,
    detector_options: dict[str, Any] | None = None,
) -> FaceTrack:
    """Track the face through in-memory frames (N, H, W, 3) RGB uint8; ``options`` are the tracker's
    (:class:`~lipsynckit.faces.TrackOptions`), ``detector_options`` the detector's own."""
    from lipsynckit.faces import TrackOptions, get_face_detector, track_faces

    arr = frames[None] if frames.ndim == 3 else frames
    return track_faces(
        iter(arr),
        get_face_detector(detector, detector_options),
        TrackOptions(**(options or {})),
        num_frames=len(arr),
    )


def sync_frames(
    model: LipSyncModel,
    frames: np.ndarray,
    audio: AudioClip,
    fps: float = 25.0,
    track: FaceTrack | None = None,
    length_mode: str = "pingpong",
    **option_overrides: Any,
) -> np.ndarray:
    """The whole path on in-memory arrays: returns the output frames (n_out, H, W, 3)."""
    from lipsynckit.media import index_map

    arr = frames[None] if frames.ndim == 3 else frames
    opts = _options(None, {"length_mode": length_mode, "progress": False, **option_overrides})
    features = model.audio_features(audio, fps)
    index = index_map(int(features.shape[0]), len(arr), opts.length_mode)
    if track is None:
        track = detect_faces(arr, opts.detector, detector_options=opts.detector_options)
    track = model.adjust_track(track, arr.shape[1:3])
    failed: list[tuple[int, str]] = []
    gate = None
    if opts.gate:
        from lipsynckit.gate import plan_gate, rest_features

        # in-memory frames have no audio track of their own: idle at rest, unless rest="closed"
        gate = plan_gate(audio, fps, len(index), opts, model.info.chunk_frames)
        features = rest_features(model, audio, fps, features, gate)
    gen = generate_frames(
        model, (arr[int(s)] for s in index), index, track, features, opts, StageTimer(), failed, gate=gate
    )
    return np.stack(list(gen))
