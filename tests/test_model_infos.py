"""Weight records against files. Every installed model's ModelInfo is checked against reality by the
plugin-meta contract (lipsynckit.testing.meta, run on ours in tests/test_plugin_meta.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lipsynckit.errors import WeightsError
from lipsynckit.model import WeightFile
from lipsynckit.weights import verify


def test_verify_reads_the_recorded_size_before_hashing(tmp_path: Path) -> None:
    path = tmp_path / "s3fd.pth"
    path.write_bytes(b"x" * 100)
    wf = WeightFile(key="detector", filename="s3fd.pth", size_bytes=89_843_225, sha256="0" * 64)
    with pytest.raises(WeightsError, match="100 bytes, the release is 89843225"):
        verify(path, wf)
    assert verify(path, wf.model_copy(update={"size_bytes": 100, "sha256": None})) is False
