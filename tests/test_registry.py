"""The registry: entry points discovered once, every plugin checked at discovery, one shape for both
groups, install hints from the plugin's own distribution."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lipsynckit import registry

PLUGIN_MODULE = """
from pydantic import BaseModel

from lipsynckit.faces.base import FaceDetectorPlugin
from lipsynckit.model import DetectorInfo, ModelInfo, ModelPlugin


class Model(ModelPlugin):
    def __init__(self, name):
        self.info = ModelInfo(name=name, display_name=name, face_size=0, needs_weights=False,
                              license="MIT", weights_license="none", requires=["cv2"])

    def build(self, files, options, device, dtype):
        raise NotImplementedError


class Detector(FaceDetectorPlugin):
    options_model = BaseModel

    def __init__(self, name):
        self.info = DetectorInfo(name=name, display_name=name, license="MIT", requires=["cv2"])

    def create(self, options):
        raise NotImplementedError


good = Model("{prefix}good")
misnamed = Model("{prefix}something_else")
not_a_plugin = object()
detector = Detector("{prefix}det")
"""


def make_dist(site: Path, dist: str, package: str, prefix: str, entries: str) -> None:
    """A distribution as pip leaves it: a package and its .dist-info with entry_points.txt."""
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(PLUGIN_MODULE.replace("{prefix}", prefix))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\nProvides-Extra: gpu\n"
    )
    (info / "entry_points.txt").write_text(entries)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    registry.refresh()
    yield site
    for name in [m for m in sys.modules if m.startswith("lskt_")]:
        del sys.modules[name]
    registry.refresh()


def test_discovery_is_cached_until_refresh(site: Path) -> None:
    first = registry.model_plugins()
    assert registry.model_plugins() is first  # one discovery per process
    make_dist(site, "lskt-one", "lskt_one", "one_", "[lipsynckit.models]\none_good = lskt_one:good\n")
    importlib.invalidate_caches()
    assert "one_good" not in registry.model_plugins()
    registry.refresh()
    entry = registry.model_plugins()["one_good"]
    assert entry.plugin is not None and entry.plugin is sys.modules["lskt_one"].good
    assert entry.distribution == "lskt-one"


def test_each_plugin_is_checked_at_discovery(site: Path) -> None:
    make_dist(
        site,
        "lskt-two",
        "lskt_two",
        "two_",
        "[lipsynckit.models]\n"
        "two_misnamed = lskt_two:misnamed\n"
        "two_object = lskt_two:not_a_plugin\n"
        "two_broken = lskt_two:no_such_attribute [gpu]\n"
        "[lipsynckit.face_detectors]\n"
        "two_wrong_det = lskt_two:detector\n"
        "two_det = lskt_two:detector\n",
    )
    registry.refresh()
    models = registry.model_plugins()
    assert models["two_misnamed"].plugin is None
    assert (
        "declares the name 'two_something_else' but its entry point is 'two_misnamed'"
        in models["two_misnamed"].error
    )
    assert "is a object, not a lipsynckit ModelPlugin" in models["two_object"].error
    assert models["two_broken"].error.startswith("cannot import lskt_two:no_such_attribute")
    assert models["two_broken"].install_hint == 'pip install "lskt-two[gpu]"'  # its own distribution
    rows = {r.name: r for r in registry.list_models()}
    assert not rows["two_misnamed"].usable and "two_something_else" in rows["two_misnamed"].reason
    # installing cannot fix a misnamed plugin: list-models says what can (as loading it does)
    assert rows["two_misnamed"].install_hint == "uninstall or fix that plugin (lskt-two)"
    assert "pip install" not in rows["two_object"].install_hint
    assert rows["two_broken"].install_hint == 'pip install "lskt-two[gpu]"'
    # detectors are declared and checked the same way
    dets = registry.face_detector_plugins()
    assert dets["two_det"].plugin is sys.modules["lskt_two"].detector
    assert "declares the name 'two_det' but its entry point is 'two_wrong_det'" in dets["two_wrong_det"].error
    assert "lskt_two" in registry.plugin_packages()


def test_a_name_two_distributions_claim_names_both(site: Path, caplog: pytest.LogCaptureFixture) -> None:
    entries = "[lipsynckit.models]\nclash_good = {pkg}:good\n"
    make_dist(site, "lskt-alpha", "lskt_alpha", "clash_", entries.format(pkg="lskt_alpha"))
    make_dist(site, "lskt-beta", "lskt_beta", "clash_", entries.format(pkg="lskt_beta"))
    registry.refresh()
    entry = registry.model_plugins()["clash_good"]
    assert entry.plugin is None
    assert "lskt-alpha (lskt_alpha:good)" in entry.error and "lskt-beta (lskt_beta:good)" in entry.error
    assert "lskt-alpha" in caplog.text and "lskt-beta" in caplog.text
    from lipsynckit.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="lskt-beta") as info:
        registry.get_plugin("clash_good")
    assert "uninstall or fix" in info.value.remedy
    row = next(r for r in registry.list_models() if r.name == "clash_good")
    assert row.install_hint.startswith("uninstall or fix") and "pip install" not in row.install_hint


OURS = ("lipsynckit", "lipsynckit-wav2lip", "lipsynckit-musetalk", "lipsynckit-latentsync")


def test_builtin_plugins_pass_discovery_and_hints_name_extras_that_exist() -> None:
    registry.refresh()
    for group in registry.GROUPS:
        for entry in registry.discover(group).values():
            if entry.distribution not in OURS:
                continue
            assert entry.plugin is not None, entry.error
            hint = entry.install_hint
            provided = set(importlib.metadata.metadata(entry.distribution).get_all("Provides-Extra") or [])
            if "[" in hint:
                assert hint.split("[")[1].rstrip(']"') in provided, hint
    s3fd = registry.face_detector_plugins()["s3fd"]
    assert s3fd.install_hint == "pip install lipsynckit-wav2lip"  # the detector ships with Wav2Lip
    assert set(registry.plugin_packages()) >= {"lipsynckit", "lipsynckit_wav2lip", "lipsynckit_musetalk"}


def test_cli_logging_covers_every_plugin_package(site: Path) -> None:
    import logging

    from lipsynckit.cli import _setup_logging

    make_dist(site, "lskt-log", "lskt_log", "log_", "[lipsynckit.models]\nlog_good = lskt_log:good\n")
    registry.refresh()
    try:
        _setup_logging(0)
        third = logging.getLogger("lskt_log")
        assert third.handlers == logging.getLogger("lipsynckit").handlers and third.level == logging.INFO
    finally:
        for name in ("lipsynckit", *registry.plugin_packages()):
            logging.getLogger(name).handlers[:] = []
            logging.getLogger(name).setLevel(logging.NOTSET)
