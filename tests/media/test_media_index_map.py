"""index_map(): which source frame each output frame shows."""

from __future__ import annotations

import numpy as np
import pytest

from lipsynckit.media import index_map


def test_loop() -> None:
    assert index_map(7, 3, "loop").tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert index_map(2, 5, "loop").tolist() == [0, 1]


def test_pingpong_repeats_each_end_like_latentsync() -> None:
    m = index_map(45, 20, "pingpong")
    assert m[:20].tolist() == list(range(20))
    assert m[20:40].tolist() == list(range(19, -1, -1))  # 19, 19, 18, ... as LatentSync loops
    assert m[40:].tolist() == [0, 1, 2, 3, 4]
    assert np.abs(np.diff(m)).max() == 1  # never jumps
    assert index_map(4, 1, "pingpong").tolist() == [0, 0, 0, 0]
    assert index_map(5, 2, "pingpong").tolist() == [0, 1, 1, 0, 0]


def test_cut_stops_at_the_source_length() -> None:
    assert index_map(10, 4, "cut").tolist() == [0, 1, 2, 3]
    assert index_map(3, 4, "cut").tolist() == [0, 1, 2]


def test_dtype_empty_and_errors() -> None:
    assert index_map(5, 3, "loop").dtype == np.int64
    assert index_map(0, 3, "pingpong").shape == (0,)
    with pytest.raises(ValueError, match="unknown index mode"):
        index_map(5, 3, "bounce")
    with pytest.raises(ValueError):
        index_map(5, 0, "loop")
    with pytest.raises(ValueError):
        index_map(-1, 3, "loop")
