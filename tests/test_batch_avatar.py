"""One template, many audio tracks: faces are prepared once, and concurrent jobs share batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lipsynckit as lsk
from lipsynckit.media import read_video_frames


def test_avatar_cache_skips_detection_and_prepare(
    carphone_mp4: Path, speech_wavs: list[Path], tmp_path: Path
) -> None:
    avatar = tmp_path / "avatar"
    first = lsk.sync(
        carphone_mp4,
        speech_wavs[1],
        model="viseme",
        output=tmp_path / "a.mkv",
        avatar_dir=avatar,
        progress=False,
    )
    assert first.avatar_hits == 0
    assert "detect" in first.stage_seconds
    second = lsk.sync(
        carphone_mp4,
        speech_wavs[1],
        model="viseme",
        output=tmp_path / "b.mkv",
        avatar_dir=avatar,
        progress=False,
    )
    assert "detect" not in second.stage_seconds  # the face track came from the cache
    assert second.avatar_hits > 0
    assert any("avatar cache" in n for n in second.notes)
    # the same inputs through the cache give the same pixels
    assert np.array_equal(read_video_frames(tmp_path / "a.mkv"), read_video_frames(tmp_path / "b.mkv"))


def test_sync_batch_shares_batches_across_jobs(
    carphone_mp4: Path, speech_wavs: list[Path], tmp_path: Path
) -> None:
    audios = speech_wavs[:3]
    results = lsk.sync_batch(
        carphone_mp4, audios, tmp_path / "out", model="viseme", concurrency=3, batch_size=8
    )
    assert [r.output.name for r in results] == [f"{a.stem}.mp4" for a in audios]
    for r, a in zip(results, audios, strict=True):
        assert r.output.is_file()
        assert abs(r.frames / r.fps - lsk.load_audio(str(a)).duration) <= 1 / r.fps
    stats = results[0].scheduler
    assert stats["items"] == sum(r.frames_with_face - r.model_calls_skipped for r in results)
    assert stats["batches"] < stats["items"]  # frames were batched


def test_concurrent_sync_calls_on_one_model_batch_together(
    carphone_mp4: Path, speech_wavs: list[Path], tmp_path: Path
) -> None:
    """Two threads call lsk.sync on the same model instance: one device thread serves both and some
    batches hold frames of both jobs; each output is still its own, and the shared scheduler closes."""
    import threading
    import time

    from lipsynckit import pipeline
    from lipsynckit.types import ModelBatch

    model = lsk.load_model("viseme")
    seen: list[set[int]] = []
    generate = model.generate
    calls_at_once = [0, 0]  # now, most
    lock = threading.Lock()

    def recording(batch: ModelBatch) -> list[np.ndarray]:
        with lock:
            calls_at_once[0] += 1
            calls_at_once[1] = max(calls_at_once)
        if not seen:  # hold the first batch until the other call has joined the same scheduler
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                shared = list(pipeline._SHARED.values())
                if shared and len(shared[0][0]._jobs) >= 2:
                    break
                time.sleep(0.01)
        seen.append({it.job_id for it in batch.items})
        time.sleep(0.005)
        try:
            return generate(batch)
        finally:
            with lock:
                calls_at_once[0] -= 1

    model.generate = recording  # type: ignore[method-assign]
    results: dict[int, lsk.SyncResult] = {}
    start = threading.Barrier(2)

    def one(k: int) -> None:
        start.wait()
        results[k] = lsk.sync(
            carphone_mp4,
            speech_wavs[k],
            model=model,
            output=tmp_path / f"{k}.mkv",
            batch_size=8,
            progress=False,
        )

    threads = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(results) == [0, 1]
    for k in range(2):
        r = results[k]
        assert abs(r.frames / r.fps - lsk.load_audio(str(speech_wavs[k])).duration) <= 1 / r.fps
    assert any(len(jobs) == 2 for jobs in seen), seen
    assert calls_at_once[1] == 1  # one device thread: the model is never called concurrently
    assert pipeline._SHARED == {}


def test_auto_model_falls_back_to_viseme_and_says_why(
    caplog, astronaut_png: Path, speech_wav: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from lipsynckit.selection import choose_model

    with caplog.at_level("DEBUG", logger="lipsynckit.selection"):
        name, why = choose_model()
    assert name == "viseme"
    assert why.startswith("viseme (no weights installed for ") and "wav2lip" in why and "\n" not in why
    assert "not chosen: " in caplog.text and "wav2lip: weights not found" in caplog.text  # details: -v
    caplog.clear()
    with caplog.at_level("INFO", logger="lipsynckit"):
        r = lsk.sync(astronaut_png, speech_wav, output=tmp_path / "auto.mp4", progress=False)
    assert r.model == "viseme"
    assert "model auto: viseme (no weights installed" in caplog.text


def test_auto_model_choice_from_model_data(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """With every model's weights present, CPU picks the best model that runs at a sensible speed."""
    import lipsynckit.selection as sel
    from lipsynckit.registry import list_models

    rows = [r.model_copy(update={"usable": True, "reason": ""}) for r in list_models() if r.info is not None]
    monkeypatch.setattr(sel, "list_models", lambda weights=None: rows)
    with caplog.at_level("DEBUG", logger="lipsynckit.selection"):
        name, why = sel.choose_model(device="cpu")
    assert name == "wav2lip_gan", why
    assert why == (  # one line; the per-model figures are in the log (-v)
        "wav2lip_gan (quality 0.6, the highest usable on this CPU; "
        "too slow on CPU: latentsync, latentsync_15, musetalk, musetalk_v10)"
    )
    assert "musetalk: about 6.8 s per frame on CPU" in caplog.text  # the figures: -v
    monkeypatch.setattr(sel, "_gpu_memory_gb", lambda: 80.0)
    assert sel.choose_model(device="cuda")[0] == "latentsync"
    monkeypatch.setattr(sel, "_gpu_memory_gb", lambda: 6.0)
    with caplog.at_level("DEBUG", logger="lipsynckit.selection"):
        name, why = sel.choose_model(device="cuda")
    assert name == "musetalk" and why.endswith("too little VRAM: latentsync, latentsync_15)")
    # a third party's model that claims more is chosen, and named as third-party
    toy = rows[0].model_copy(
        update={
            "name": "toy",
            "distribution": "lsk-toy",
            "info": rows[0].info.model_copy(update={"name": "toy", "quality": 0.95, "min_vram_gb": 0.0}),
        }
    )
    monkeypatch.setattr(sel, "list_models", lambda weights=None: [*rows, toy])
    name, why = sel.choose_model(device="cuda")
    assert name == "toy" and why.startswith(
        "toy (quality 0.95, the highest usable on this GPU, a third-party plugin from lsk-toy;"
    )
    assert "latentsync: needs " in caplog.text and "this GPU has 6 GB" in caplog.text


def test_cache_entries_read_once_per_process_stay_fresh_and_private(tmp_path: Path) -> None:
    """The in-memory copy of a cache entry is dropped when its file changes, and a caller that
    changes what it got does not change what the next job gets."""
    import os

    from lipsynckit.avatar import PreparedCache, file_digest
    from lipsynckit.types import Face, FaceTrack, PreparedFace

    cache = PreparedCache(tmp_path, "k")
    crop = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    cache.put(0, PreparedFace(box=(1, 2, 5, 6), crop=crop, data={"m": np.ones(3, np.float32)}))
    first = cache.get(0)
    assert first is not None and np.array_equal(first.crop, crop)
    first.crop[:] = 0  # a model painting into its crop
    first.data["m"][:] = 7
    again = cache.get(0)
    assert (
        again is not None and np.array_equal(again.crop, crop) and np.array_equal(again.data["m"], np.ones(3))
    )

    cache.save_track(FaceTrack(faces=[Face(box=np.array([0.0, 0, 4, 4]), score=0.9)], detector="a"))
    assert cache.load_track().detector == "a"  # type: ignore[union-attr]
    cache.save_track(FaceTrack(faces=[None, None], detector="b"))  # a new file in its place
    track = cache.load_track()
    assert track is not None and track.detector == "b" and len(track) == 2

    video = tmp_path / "t.bin"
    video.write_bytes(b"one")
    d1 = file_digest(video)
    video.write_bytes(b"two")
    os.utime(video, ns=(1, 1))  # a new mtime whatever the clock's resolution
    assert file_digest(video) != d1
