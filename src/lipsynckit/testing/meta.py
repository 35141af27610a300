"""The plugin-meta contract: what a model plugin says about itself, checked against reality, for ours
and any third party's alike. Nothing here loads a model, so it runs in a second.

A plugin's test module subclasses :class:`PluginMetaContract` (named ``Test...``), sets :attr:`plugin`
to its entry-point object, and pytest runs the checks: the :class:`~lipsynckit.model.ModelInfo` against
the records it holds (licences stated, weight records that can be fetched and verified, the extra it
names exists), the ``quality`` claim on the documented scale (:data:`lipsynckit.model.QUALITY_SCALE`),
the entry-point module importing no torch (``lipsynckit list-models`` imports every plugin), and every
option described with its bounds shown in ``--model-help``. Each check is also a plain function
(``check_*``) that raises ``AssertionError``, for use outside pytest.

Face detectors are declared the same way and have their twin, :class:`DetectorMetaContract` (set
:attr:`~DetectorMetaContract.plugin` to the ``lipsynckit.face_detectors`` entry-point object): the
:class:`~lipsynckit.model_info.DetectorInfo` against its records, the module importing no torch, and
every option described with its bounds shown by ``lipsynckit detectors``.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from lipsynckit.model import DetectorInfo, ModelInfo, ModelPlugin, WeightFile

if TYPE_CHECKING:
    from lipsynckit.faces.base import FaceDetectorPlugin

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RATES = {8000, 16000, 22050, 24000, 32000, 44100, 48000}
DTYPES = {"float32", "float16", "bfloat16", "int8"}
#: modules an entry-point module must not import (each costs seconds on every `lipsynckit list-models`)
HEAVY_MODULES = ("torch", "diffusers", "transformers", "onnxruntime", "tensorflow", "jax")


def check_info(info: ModelInfo, name: str, distribution: str = "") -> None:
    """The record is complete and agrees with itself (as torchvision checks its weights' meta)."""
    assert info.name == name, f"ModelInfo.name {info.name!r} must equal the entry-point name {name!r}"
    assert info.display_name and info.description, f"{name}: display_name and description are shown to users"
    assert info.face_size >= 0 and info.chunk_frames >= 1, name
    assert info.audio_sample_rate in RATES, f"{name}: audio_sample_rate {info.audio_sample_rate}"
    for field in ("license", "weights_license"):
        assert getattr(info, field) not in ("", "unknown"), f"{name}: {field} not stated"
    required = [wf for wf in info.weights if not wf.optional]
    assert info.needs_weights == bool(required), f"{name}: needs_weights disagrees with its weight records"
    keys = [wf.key for wf in info.weights]
    assert len(keys) == len(set(keys)), f"{name}: duplicate weight keys {keys}"
    assert info.dtypes and set(info.dtypes) <= DTYPES, (
        f"{name}: dtypes {info.dtypes} (known: {sorted(DTYPES)})"
    )
    assert info.cpu_seconds_per_frame is None or info.cpu_seconds_per_frame > 0, name
    assert info.min_vram_gb >= 0, name
    _check_extra(name, info.extra, distribution)
    for wf in info.weights:
        check_weight_record(name, wf)


def check_weight_record(model: str, wf: WeightFile) -> None:
    """A weight record says where to get the file, under what licence, and how to verify it."""
    where = f"{model}/{wf.key}"
    assert wf.sources, f"{where}: no source to get it from"
    assert wf.license not in ("", "unknown"), f"{where}: licence not stated"
    assert wf.sha256 is None or HEX64.match(wf.sha256), f"{where}: sha256 {wf.sha256!r} is not a hex digest"
    assert wf.size_bytes is None or wf.size_bytes > 0, where
    if wf.relpath is not None:
        assert not Path(wf.relpath).is_absolute() and ".." not in Path(wf.relpath).parts, where
    for s in wf.sources:
        assert s.url or s.hf_repo, f"{where}: an empty source"
        assert s.url is None or s.url.startswith("https://"), f"{where}: {s.url}"
        digest = re.search(r"/([0-9a-f]{64})/", s.url or "")
        if digest and wf.sha256:  # a URL that carries its digest (openai-whisper) agrees with the record
            assert wf.sha256 == digest.group(1), f"{where}: the URL says {digest.group(1)}"


def check_quality(info: ModelInfo) -> None:
    """``quality`` is on the documented 0..1 scale; a claim above the weight-free fallback says what it
    rests on (an anchor it compares with, a measurement), since it decides ``--model auto``."""
    assert 0.0 <= info.quality <= 1.0, (
        f"{info.name}: quality {info.quality} is off the 0..1 scale (QUALITY_SCALE)"
    )
    if info.quality > 0:
        assert info.quality_basis.strip(), (
            f"{info.name}: quality {info.quality} claims more than the weight-free fallback without a "
            "quality_basis saying what it rests on (see lipsynckit.model.QUALITY_SCALE)"
        )


def check_imports_no_torch(module: str, python: str = sys.executable) -> None:
    """Importing ``module`` (a plugin's entry-point module) in a fresh interpreter loads none of
    :data:`HEAVY_MODULES`: the registry imports it for every ``lipsynckit list-models`` and ``--help``."""
    probe = (
        "import importlib, json, sys, time; t = time.perf_counter(); importlib.import_module(sys.argv[1]); "
        "print(json.dumps({'seconds': time.perf_counter() - t, "
        f"'heavy': [m for m in {HEAVY_MODULES!r} if m in sys.modules]}}))"
    )
    proc = subprocess.run([python, "-c", probe, module], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"importing {module} failed: {proc.stderr[-2000:]}"
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not found["heavy"], (
        f"importing {module} (an entry-point module) imports {', '.join(found['heavy'])} "
        f"({found['seconds']:.1f} s): import them inside build(), where the model is loaded"
    )


def check_options_help(plugin: ModelPlugin) -> None:
    """Every option is described, and ``--model-help`` shows each field's bounds (``ge``/``le``)."""
    from lipsynckit.cli_options import bounds, model_help

    model = plugin.options_model
    if model is None:
        return
    page = " ".join(model_help(plugin.name).split())
    for field, info in model.model_fields.items():
        assert info.description, f"{plugin.name}: option {field!r} has no description (it is the flag's help)"
        limits = bounds(info)
        if limits:
            assert limits in page, f"{plugin.name}: --model-help does not show {field}'s bounds ({limits})"


def _check_extra(name: str, extra: str | None, distribution: str) -> None:
    if extra and distribution:  # the extra an install hint names must exist in its distribution
        provided = importlib.metadata.metadata(distribution).get_all("Provides-Extra") or []
        assert extra in provided, f"{name}: extra {extra!r} not in {distribution}'s extras {provided}"


def check_detector_info(info: DetectorInfo, name: str, distribution: str = "") -> None:
    """A face detector's record is complete: its name is its entry point's, its licence is stated
    (a non-commercial one is announced at run time from it), its landmark count is a count, and the
    weight files it reads (if any) say where to get them."""
    assert isinstance(info, DetectorInfo), f"{name}: info is a {type(info).__name__}, not a DetectorInfo"
    assert info.name == name, f"DetectorInfo.name {info.name!r} must equal the entry-point name {name!r}"
    assert info.display_name and info.description, f"{name}: display_name and description are shown to users"
    assert info.license not in ("", "unknown"), f"{name}: license not stated"
    assert info.landmarks >= 0, f"{name}: landmarks {info.landmarks} (points per face; 0 = boxes only)"
    keys = [wf.key for wf in info.weights]
    assert len(keys) == len(set(keys)), f"{name}: duplicate weight keys {keys}"
    if info.weights:
        assert not info.offline, f"{name}: reads weight files that may need a download, yet says offline"
    _check_extra(name, info.extra, distribution)
    for wf in info.weights:
        check_weight_record(name, wf)


def check_detector_options(plugin: FaceDetectorPlugin) -> None:
    """The detector declares a pydantic options model (empty where it takes none), every option is
    described, and ``lipsynckit detectors`` shows each field's bounds."""
    from lipsynckit.cli_options import bounds, detector_lines

    model = plugin.options_model
    assert isinstance(model, type) and issubclass(model, BaseModel), (
        f"{plugin.info.name}: options_model must be a pydantic model class (an empty one where it takes none)"
    )
    page = " ".join(" ".join(detector_lines(plugin)).split())
    for field, info in model.model_fields.items():
        assert info.description, (
            f"{plugin.info.name}: option {field!r} has no description (it is shown to users)"
        )
        limits = bounds(info)
        if limits:
            assert limits in page, (
                f"{plugin.info.name}: `lipsynckit detectors` does not show {field}'s bounds"
            )
    model()  # the defaults alone make a valid set of options (what a run without --detector-options uses)


def entry_point_module(plugin: object) -> str:
    """The module that defines the plugin object (what its entry point imports)."""
    return type(plugin).__module__


class PluginMetaContract:
    """Inherit and set :attr:`plugin` (the entry-point object); nothing is loaded."""

    #: the plugin object an entry point of ``lipsynckit.models`` names
    plugin: ModelPlugin
    #: the module its entry point imports; default: the module that defines the plugin's class
    module: str | None = None

    def _distribution(self) -> str:
        from lipsynckit.registry import model_plugins

        entry = model_plugins().get(self.plugin.name)
        return entry.distribution if entry is not None and entry.plugin is self.plugin else ""

    def test_meta_info_matches_reality(self) -> None:
        check_info(self.plugin.info, self.plugin.name, self._distribution())

    def test_meta_quality_is_on_the_documented_scale(self) -> None:
        check_quality(self.plugin.info)

    def test_meta_entry_point_module_imports_no_torch(self) -> None:
        check_imports_no_torch(self.module or entry_point_module(self.plugin))

    def test_meta_options_are_described_with_their_bounds(self) -> None:
        check_options_help(self.plugin)


class DetectorMetaContract:
    """Inherit and set :attr:`plugin` (a ``lipsynckit.face_detectors`` entry-point object); nothing is
    loaded."""

    plugin: FaceDetectorPlugin
    #: the module its entry point imports; default: the module that defines the plugin's class
    module: str | None = None

    def _distribution(self) -> str:
        from lipsynckit.registry import face_detector_plugins

        entry = face_detector_plugins().get(self.plugin.info.name)
        return entry.distribution if entry is not None and entry.plugin is self.plugin else ""

    def test_meta_detector_info_matches_reality(self) -> None:
        check_detector_info(self.plugin.info, self.plugin.name, self._distribution())

    def test_meta_detector_module_imports_no_torch(self) -> None:
        check_imports_no_torch(self.module or entry_point_module(self.plugin))

    def test_meta_detector_options_are_described_with_their_bounds(self) -> None:
        check_detector_options(self.plugin)
