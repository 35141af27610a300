"""Every installed model's ModelInfo checked against reality (as torchvision checks its weights' meta)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

from lipsynckit.errors import WeightsError
from lipsynckit.model import ModelInfo, WeightFile
from lipsynckit.registry import list_models
from lipsynckit.weights import verify

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RATES = {8000, 16000, 22050, 24000, 32000, 44100, 48000}


def _rows() -> list[tuple[str, str, ModelInfo]]:
    return [(r.name, r.distribution, r.info) for r in list_models() if r.info is not None]


def test_every_model_of_the_distribution_has_an_info() -> None:
    names = {name for name, _, _ in _rows()}
    assert {
        "viseme",
        "wav2lip",
        "wav2lip_gan",
        "musetalk",
        "musetalk_v10",
        "latentsync",
        "latentsync_15",
    } <= names


@pytest.mark.parametrize(("name", "dist", "info"), _rows(), ids=lambda v: v if isinstance(v, str) else "")
def test_model_info_matches_reality(name: str, dist: str, info: ModelInfo) -> None:
    assert info.name == name, "ModelInfo.name must equal the entry-point name"
    assert info.display_name and info.description
    assert info.face_size >= 0 and info.chunk_frames >= 1 and info.audio_sample_rate in RATES
    for field in ("license", "weights_license"):
        assert getattr(info, field) not in ("", "unknown"), f"{name}: {field} not stated"
    required = [wf for wf in info.weights if not wf.optional]
    assert info.needs_weights == bool(required), f"{name}: needs_weights disagrees with its weight records"
    keys = [wf.key for wf in info.weights]
    assert len(keys) == len(set(keys)), f"{name}: duplicate weight keys {keys}"
    if info.extra:  # the extra an install hint names must exist in the distribution that declares it
        provided = importlib.metadata.metadata(dist).get_all("Provides-Extra") or []
        assert info.extra in provided, f"{name}: extra {info.extra!r} not in {dist}'s extras {provided}"
    for wf in info.weights:
        _check_weight_record(name, wf)


def _check_weight_record(model: str, wf: WeightFile) -> None:
    where = f"{model}/{wf.key}"
    assert wf.sources, f"{where}: no source to get it from"
    assert wf.license not in ("", "unknown"), f"{where}: licence not stated"
    assert wf.sha256 is None or HEX64.match(wf.sha256), f"{where}: sha256 {wf.sha256!r} is not a hex digest"
    assert wf.size_bytes is None or wf.size_bytes > 0
    if wf.relpath is not None:
        assert not Path(wf.relpath).is_absolute() and ".." not in Path(wf.relpath).parts, where
    for s in wf.sources:
        assert s.url or s.hf_repo, f"{where}: an empty source"
        assert s.url is None or s.url.startswith("https://"), f"{where}: {s.url}"
        digest = re.search(r"/([0-9a-f]{64})/", s.url or "")
        if digest and wf.sha256:  # a URL that carries its digest (openai-whisper) agrees with the record
            assert wf.sha256 == digest.group(1), f"{where}: the URL says {digest.group(1)}"


def test_verify_reads_the_recorded_size_before_hashing(tmp_path: Path) -> None:
    path = tmp_path / "s3fd.pth"
    path.write_bytes(b"x" * 100)
    wf = WeightFile(key="detector", filename="s3fd.pth", size_bytes=89_843_225, sha256="0" * 64)
    with pytest.raises(WeightsError, match="100 bytes, the release is 89843225"):
        verify(path, wf)
    assert verify(path, wf.model_copy(update={"size_bytes": 100, "sha256": None})) is False
