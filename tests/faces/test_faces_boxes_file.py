"""``--face-boxes`` JSON: formats, per-frame and single boxes, landmarks, and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lipsynckit.errors import InputNotFoundError, LipSyncError
from lipsynckit.faces import load_face_boxes


def _write(tmp_path: Path, data: Any, name: str = "boxes.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return p


def test_three_formats_give_the_same_boxes(tmp_path: Path) -> None:
    xyxy = [[10, 20, 110, 140], None, [12, 22, 114, 146]]
    xywh = [[10, 20, 100, 120], None, [12, 22, 102, 124]]
    y1y2x1x2 = [[20, 140, 10, 110], None, [22, 146, 12, 114]]  # Wav2Lip's --box order
    tracks = [
        load_face_boxes(_write(tmp_path, {"boxes": xyxy}, "a.json"), 3),
        load_face_boxes(_write(tmp_path, {"format": "xywh", "boxes": xywh}, "b.json"), 3),
        load_face_boxes(_write(tmp_path, {"format": "y1y2x1x2", "boxes": y1y2x1x2}, "c.json"), 3),
    ]
    for t in tracks:
        assert len(t) == 3 and t.num_found == 2 and t.faces[1] is None
        np.testing.assert_array_equal(t.boxes()[0], [10, 20, 110, 140])
        np.testing.assert_array_equal(t.boxes()[2], [12, 22, 114, 146])
        assert t.detector == "face-boxes"


def test_single_box_applies_to_every_frame_and_bare_list(tmp_path: Path) -> None:
    t = load_face_boxes(_write(tmp_path, {"boxes": [5, 6, 50, 70]}), 7)
    assert len(t) == 7 and t.num_found == 7
    assert np.all(t.boxes() == np.array([5, 6, 50, 70], np.float32))
    t2 = load_face_boxes(_write(tmp_path, [[5, 6, 50, 70]], "bare.json"), 4)
    assert t2.num_found == 4


def test_landmarks_per_frame_and_shared(tmp_path: Path) -> None:
    lm = [[30.0, 40.0], [60.0, 40.0], [45.0, 55.0], [35.0, 65.0], [55.0, 65.0]]
    t = load_face_boxes(_write(tmp_path, {"boxes": [[10, 20, 90, 100], None], "landmarks": [lm, None]}), 2)
    assert t.faces[0] is not None and t.faces[0].landmarks is not None
    np.testing.assert_array_equal(t.faces[0].landmarks, np.array(lm, np.float32))
    shared = load_face_boxes(_write(tmp_path, {"boxes": [10, 20, 90, 100], "landmarks": lm}, "s.json"), 3)
    assert all(
        f is not None and f.landmarks is not None and f.landmarks.shape == (5, 2) for f in shared.faces
    )


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ({"bxes": []}, '"boxes"'),
        ({"boxes": [[0, 0, 10, 10]] * 3}, "has 3 entries but the video has 5 frames"),
        ({"format": "cxcywh", "boxes": [0, 0, 10, 10]}, "unknown box format"),
        ({"boxes": [[0, 0, 10]] * 5}, "frame 0: a box must be 4 finite numbers"),
        ({"boxes": [[10, 10, 5, 20]] * 5}, "frame 0: empty box"),
        ({"boxes": [[0, 0, 10, 10], [0, 0, 10, "x"], None, None, None]}, "frame 1"),
        ({"boxes": [0, 0, 10, 10], "landmarks": [[[1, 2, 3]]] * 5}, "landmarks must be"),
        ({"boxes": [0, 0, 10, 10], "extra": 1}, "unknown keys"),
        ({"boxes": [-60, -50, -10, -5]}, "frame 0: .* outside the frame"),
    ],
)
def test_malformed_files_raise_clear_errors(tmp_path: Path, content: Any, match: str) -> None:
    p = _write(tmp_path, content)
    with pytest.raises(LipSyncError, match=match) as ei:
        load_face_boxes(p, 5)
    err = ei.value
    assert err.stage == "faces" and err.path == str(p) and err.remedy
    assert str(p) in str(err) and "->" in str(err)


def test_boxes_outside_the_frame(tmp_path: Path) -> None:
    p = _write(tmp_path, {"boxes": [[150, 100, 250, 200], [-10, -10, 60, 60]]})
    with pytest.raises(LipSyncError, match="frame 0: .* lies mostly outside the 176x144 frame"):
        load_face_boxes(p, 2, frame_size=(176, 144))
    ok = _write(tmp_path, {"boxes": [[140, 100, 190, 150], [-10, -10, 60, 60]]}, "ok.json")
    t = load_face_boxes(
        ok, 2, frame_size=(176, 144)
    )  # sticking out a little is allowed (the compositor clips)
    assert t.num_found == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        load_face_boxes(tmp_path / "nope.json", 3)


def test_boxes_for_the_whole_video_with_shorter_audio(
    carphone_mp4: Path, speech_wav: Path, tmp_path: Path
) -> None:
    """A user's boxes file covers all 120 frames; one second of speech needs only the first 30: the run
    uses those (it failed before with '120 entries but the video has 30 frames')."""
    import soundfile as sf

    import lipsynckit as lsk

    boxes = [[44 + i % 3, 16, 132 + i % 3, 120] for i in range(120)]
    path = _write(tmp_path, {"boxes": boxes, "landmarks": None})
    clip = lsk.load_audio(speech_wav, sample_rate=16000)
    short = tmp_path / "one_second.wav"
    sf.write(short, clip.numpy()[:16000], 16000)
    result = lsk.sync(carphone_mp4, short, "viseme", tmp_path / "o.mkv", face_boxes=path, progress=False)
    assert result.frames == 30 and result.frames_with_face == 30
    # fewer entries than needed is still an error that says how many are needed
    with pytest.raises(LipSyncError, match="has 10 entries"):
        load_face_boxes(_write(tmp_path, {"boxes": boxes[:10]}, "few.json"), 30, allow_more=True)
