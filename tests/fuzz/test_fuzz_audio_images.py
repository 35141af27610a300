"""Property-based fuzz of audio arrays, sample rates and image shapes (issue 18).

Whatever comes in (any shape, dtype, NaN/inf, amplitude, length, rate; 1x1, odd, grey, RGBA images,
PNG headers that claim gigapixels), each case ends in a result or in one :class:`LipSyncError` (a
message and a remedy, no traceback): no other exception type, and no memory blow-up (the process's
peak RSS grows by less than 300 MB over each test's examples). Sizes stay small so the suite stays fast.
"""

from __future__ import annotations

import math
import resource
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch
from hostile import png_with_header
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lipsynckit.errors import LipSyncError
from lipsynckit.inputs import check_run
from lipsynckit.limits import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from lipsynckit.media import VideoSource, load_audio
from lipsynckit.media.audio import check_clip
from lipsynckit.types import AudioClip

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
_RSS_GROWTH_MB = 300
_START_RSS = [0]  # the process's peak RSS when the current test began (other tests ran before)


@pytest.fixture(autouse=True)
def _rss_baseline() -> None:
    _START_RSS[0] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _one_line(e: LipSyncError) -> None:
    """A message and at most a remedy line: what the CLI prints, never a traceback."""
    text = str(e)
    lines = text.splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].strip(), text
    assert "Traceback" not in text
    if len(lines) == 2:
        assert lines[1].lstrip().startswith("->")


def _no_blow_up() -> None:
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _START_RSS[0]) / 1024
    assert grown_mb < _RSS_GROWTH_MB, f"peak RSS grew by {grown_mb:.0f} MB"


_rates = st.one_of(
    st.sampled_from([1, 7, MIN_SAMPLE_RATE - 1, MIN_SAMPLE_RATE, 8000, 11025, 16000, 22050, 44100, 44101]),
    st.sampled_from([48000, 96000, MAX_SAMPLE_RATE, MAX_SAMPLE_RATE + 1, 0, -16000]),
    st.integers(1, 200_000),
)
_float_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(-1.0, 1.0, width=32),
    st.sampled_from([0.0, 1e-6, 1e30, -1e30]),
)
# (samples,), (channels, samples), or a 3-D or 0-D array AudioClip must refuse: small, whatever the dims
_shapes = st.one_of(
    st.tuples(st.integers(0, 3000)),
    st.tuples(st.integers(0, 3), st.integers(0, 3000)),
    st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 50)),
    st.just(()),
)
_float_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    shape=_shapes,
    elements=_float_values.map(lambda v: v if abs(v) < 6e4 or not math.isfinite(v) else 6e4),
)
_int_arrays = hnp.arrays(dtype=st.sampled_from([np.int16, np.int32, np.uint8]), shape=_shapes)


@FUZZ
@given(arr=st.one_of(_float_arrays, _int_arrays), rate=_rates, allow_silent=st.booleans())
def test_audio_arrays_through_the_api_checks_and_resampler(
    arr: np.ndarray, rate: int, allow_silent: bool
) -> None:
    """An in-memory clip, as lsk.sync receives it: checked, then resampled to the models' 16 kHz."""
    try:
        clip = check_clip(AudioClip(torch.from_numpy(arr), rate), allow_silent=allow_silent)
        out = clip.mono().resample(16000)
    except LipSyncError as e:
        _one_line(e)
    else:
        assert MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE
        assert out.samples.shape == (1, math.ceil(clip.num_samples * 16000 / rate))
        assert torch.isfinite(out.samples).all()
    _no_blow_up()


@FUZZ
@given(
    data=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 4000), st.integers(1, 3)),
        elements=st.one_of(st.floats(-1, 1, width=32), st.just(float("nan")), st.just(float("inf"))),
    ),
    rate=st.integers(1, 400_000),
    subtype=st.sampled_from(["FLOAT", "PCM_16"]),
)
def test_audio_files_through_the_reader(
    data: np.ndarray, rate: int, subtype: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wav = tmp_path_factory.mktemp("fuzz") / "x.wav"
    sf.write(str(wav), data, rate, subtype=subtype)
    try:
        clip = load_audio(wav, sample_rate=16000, allow_silent=True)
    except LipSyncError as e:
        _one_line(e)
        assert str(wav) in str(e)
    else:
        assert clip.sample_rate == 16000 and torch.isfinite(clip.samples).all()
        assert clip.num_samples == math.ceil(len(data) * 16000 / rate)
    _no_blow_up()


_images = st.tuples(
    st.integers(1, 48),  # height
    st.integers(1, 48),  # width
    st.sampled_from([0, 1, 3, 4]),  # channels (0: a 2-D grey array)
    st.sampled_from([np.uint8, np.uint16]),
    st.sampled_from([".png", ".jpg", ".bmp", ".webp"]),
)


@FUZZ
@given(spec=_images, seed=st.integers(0, 2**16))
def test_image_shapes_through_the_checks_and_reader(
    spec: tuple[int, int, int, type, str],
    seed: int,
    speech_wav: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    h, w, ch, dtype, suffix = spec
    rng = np.random.default_rng(seed)
    shape = (h, w) if ch == 0 else (h, w, ch)
    img = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    path = tmp_path_factory.mktemp("img") / f"x{suffix}"
    if not cv2.imwrite(str(path), img if suffix == ".png" else img.astype(np.uint8)):
        return  # a combination OpenCV cannot write: nothing to read
    try:
        check_run(path, speech_wav, None)
        src = VideoSource(path)
        frame = next(iter(src))
    except LipSyncError as e:
        _one_line(e)
    else:
        assert (src.info.width, src.info.height) == (w, h)
        assert frame.shape == (h, w, 3) and frame.dtype == np.uint8
    _no_blow_up()


@FUZZ
@given(
    w=st.integers(1, 2**31 - 1),
    h=st.integers(1, 2**31 - 1),
    color=st.sampled_from([0, 2, 6]),
    cap=st.booleans(),
)
def test_png_headers_claiming_any_size(
    w: int, h: int, color: int, cap: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A header states the size, the data is 64 zero bytes: refused, or decoded as what it is."""
    path = png_with_header(tmp_path_factory.mktemp("hdr") / "x.png", w, h, color)
    try:
        src = VideoSource(path, max_pixels=4096 * 4096 if cap else 64 * 64)
    except LipSyncError as e:
        _one_line(e)
    else:
        assert src.info.width * src.info.height <= (4096 * 4096 if cap else 64 * 64)
    _no_blow_up()
