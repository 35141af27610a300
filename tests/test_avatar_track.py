"""The avatar cache's face track: stored as a few arrays, read back exactly (and old caches still read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lipsynckit.avatar import PreparedCache, _pack
from lipsynckit.faces import TrackOptions, get_face_detector, track_faces
from lipsynckit.media import read_video_frames
from lipsynckit.types import FaceTrack


def _real_track(carphone_mp4: Path) -> FaceTrack:
    frames = list(read_video_frames(carphone_mp4)[:24])
    frames[5] = np.zeros_like(frames[5])  # a frame without a face: None in the track
    return track_faces(frames, get_face_detector("auto"), TrackOptions(fill_gaps=0))


def _same(a: FaceTrack, b: FaceTrack) -> None:
    assert a.detector == b.detector and len(a) == len(b)
    for f, g in zip(a.faces, b.faces, strict=True):
        assert (f is None) == (g is None)
        if f is not None and g is not None:
            assert np.array_equal(f.box, g.box) and f.score == g.score
            assert (f.landmarks is None) == (g.landmarks is None)
            if f.landmarks is not None:
                assert np.array_equal(f.landmarks, g.landmarks)


def test_track_round_trips_exactly(carphone_mp4: Path, tmp_path: Path) -> None:
    track = _real_track(carphone_mp4)
    assert track.faces[5] is None and track.num_found > 10
    cache = PreparedCache(tmp_path, "k")
    cache.save_track(track)
    raw = torch.load(cache.dir / "track.pt", weights_only=True)
    assert raw["boxes"].shape == (track.num_found, 4)  # one array, not one tensor per face
    loaded = cache.load_track()
    assert loaded is not None
    _same(track, loaded)


def test_track_written_per_face_still_reads(carphone_mp4: Path, tmp_path: Path) -> None:
    track = _real_track(carphone_mp4)
    cache = PreparedCache(tmp_path, "k")
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
    torch.save(_pack({"faces": faces, "detector": track.detector}), cache.dir / "track.pt")
    loaded = cache.load_track()
    assert loaded is not None
    _same(track, loaded)
