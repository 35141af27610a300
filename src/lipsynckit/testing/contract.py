"""The model contract as a pytest mixin: what every lip-sync plugin must do, checked for free.

A plugin's test module subclasses :class:`ModelContract` (name the subclass ``Test...`` so pytest
collects it), sets :attr:`ModelContract.plugin` to its entry-point object and supplies two fixtures:

- ``contract_model``: a loaded :class:`~lipsynckit.model.LipSyncModel` (a small stand-in is fine:
  deterministic weights from :mod:`lipsynckit.testing.detweights`, a shrunken architecture);
- ``contract_sample``: a :class:`ContractSample` (a real RGB frame, the face in it, real speech).

Tolerances and the composite region are class attributes and a method a subclass may override.
The checks mirror the protocol in :mod:`lipsynckit.model`; ``docs/dev/contracts.md`` shows an example.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsynckit.errors import LipSyncError, WeightsError
from lipsynckit.model import LipSyncModel, ModelPlugin
from lipsynckit.types import AudioClip, Face, ModelBatch, PreparedFace, WorkItem


@dataclass
class ContractSample:
    """One real frame (RGB uint8), the face in it (as the model's ``adjust_track`` leaves it) and speech."""

    frame: np.ndarray
    face: Face
    audio: AudioClip


def _fresh_job_ids() -> list[int]:
    _fresh_job_ids.counter += 10  # type: ignore[attr-defined]
    return list(range(_fresh_job_ids.counter, _fresh_job_ids.counter + 10))  # type: ignore[attr-defined]


_fresh_job_ids.counter = 1_000_000  # type: ignore[attr-defined]


class ModelContract:
    """Inherit, set :attr:`plugin`, supply the ``contract_model`` and ``contract_sample`` fixtures."""

    #: the plugin object (its entry point's target); bad options and missing weights are tried on it
    plugin: ModelPlugin
    #: frames per second the checks use
    fps: float = 25.0
    #: output frames may differ from ``duration * fps`` by this many (models round their own way)
    frame_count_tolerance: int = 2
    #: a batch of 4 may differ from 4 single runs by this many grey levels (batched kernels)
    batch_atol: int = 1
    #: what ``generate`` hands ``composite``: uint8 faces, or float32 (unclamped, 0..255 scale) for a model
    #: whose paste-back needs the unrounded values to match its official output (LatentSync)
    output_dtypes: tuple[type, ...] = (np.uint8,)
    #: the precision switched to in the dtype check, and the mean grey-level change it may cause
    #: (None: not compared, for models whose random draws follow the dtype; the revert is still checked)
    other_dtype: torch.dtype = torch.bfloat16
    dtype_mean_atol: float | None = 16.0

    def composite_region(self, prepared: PreparedFace) -> tuple[int, int, int, int]:
        """The box ``composite`` may change (x1, y1, x2, y2); the face box unless the model widens it."""
        return prepared.box

    # -- helpers -------------------------------------------------------------------------------------

    def _audio(self, model: LipSyncModel, sample: ContractSample) -> AudioClip:
        return sample.audio.mono().resample(model.info.audio_sample_rate)

    def _prepared(self, model: LipSyncModel, sample: ContractSample) -> PreparedFace:
        return model.prepare(sample.frame, sample.face)

    def _windows(self, model: LipSyncModel, sample: ContractSample) -> torch.Tensor:
        return model.audio_features(self._audio(model, sample), self.fps)

    def _run(
        self, model: LipSyncModel, prepared: PreparedFace, windows: list[torch.Tensor]
    ) -> list[np.ndarray]:
        """One batch, each item its own fresh job at frame 0 (so chunked models start a chunk each)."""
        jobs = _fresh_job_ids()
        items = [WorkItem(jobs[k], 0, prepared, w) for k, w in enumerate(windows)]
        return model.generate(ModelBatch(items))

    def _four_windows(self, model: LipSyncModel, sample: ContractSample) -> list[torch.Tensor]:
        feats = self._windows(model, sample)
        n = len(feats)
        return [feats[i] for i in (0, n // 3, (2 * n) // 3, n - 1)]

    # -- the contract ----------------------------------------------------------------------------------

    def test_contract_one_feature_window_per_output_frame(
        self, contract_model: LipSyncModel, contract_sample: ContractSample
    ) -> None:
        audio = self._audio(contract_model, contract_sample)
        feats = contract_model.audio_features(audio, self.fps)
        assert isinstance(feats, torch.Tensor) and feats.is_floating_point()
        assert abs(len(feats) - audio.duration * self.fps) <= self.frame_count_tolerance, (
            f"{len(feats)} windows for {audio.duration:.2f} s at {self.fps} fps"
        )
        half = contract_model.audio_features(audio.slice(0.0, audio.duration / 2), self.fps)
        assert abs(len(half) - audio.duration / 2 * self.fps) <= self.frame_count_tolerance
        assert feats.shape[1:] == half.shape[1:], "every window has one shape whatever the clip length"

    def test_contract_crop_and_outputs_are_face_size(
        self, contract_model: LipSyncModel, contract_sample: ContractSample
    ) -> None:
        prepared = self._prepared(contract_model, contract_sample)
        size = contract_model.info.face_size
        assert prepared.crop.dtype == np.uint8 and prepared.crop.ndim == 3 and prepared.crop.shape[2] == 3
        if size > 0:  # 0 declares native resolution: the crop is the face region as found
            assert prepared.crop.shape[:2] == (size, size), f"crop {prepared.crop.shape} vs face_size {size}"
        h, w = contract_sample.frame.shape[:2]
        x1, y1, x2, y2 = prepared.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, f"box {prepared.box} outside a {w}x{h} frame"
        out = self._run(contract_model, prepared, self._four_windows(contract_model, contract_sample)[:1])
        assert len(out) == 1
        assert out[0].dtype in self.output_dtypes and out[0].shape == prepared.crop.shape

    def test_contract_batch_of_four_equals_four_single_runs(
        self, contract_model: LipSyncModel, contract_sample: ContractSample
    ) -> None:
        prepared = self._prepared(contract_model, contract_sample)
        windows = self._four_windows(contract_model, contract_sample)
        batched = self._run(contract_model, prepared, windows)
        single = [self._run(contract_model, prepared, [w])[0] for w in windows]
        assert len(batched) == 4
        for k, (a, b) in enumerate(zip(batched, single, strict=True)):
            diff = int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
            assert diff <= self.batch_atol, f"item {k} of a batch differs from its single run by {diff}"

    def test_contract_composite_touches_only_the_face_region(
        self, contract_model: LipSyncModel, contract_sample: ContractSample
    ) -> None:
        frame = contract_sample.frame
        original = frame.copy()
        prepared = self._prepared(contract_model, contract_sample)
        generated = self._run(
            contract_model, prepared, self._four_windows(contract_model, contract_sample)[1:2]
        )[0]
        # a generated face unlike the source, so that any pasted pixel shows
        inverted = (255 - generated).astype(np.uint8)
        result = contract_model.composite(frame, prepared, inverted)
        np.testing.assert_array_equal(frame, original, err_msg="composite modified its input frame")
        assert result.shape == frame.shape and result.dtype == np.uint8
        x1, y1, x2, y2 = self.composite_region(prepared)
        outside = np.ones(frame.shape[:2], dtype=bool)
        outside[max(0, y1) : y2, max(0, x1) : x2] = False
        changed = (result != frame).any(axis=2)
        assert not changed[outside].any(), (
            f"composite changed {int(changed[outside].sum())} pixels outside the face"
        )
        assert changed.any(), "composite pasted nothing"

    def test_contract_dtype_change_works_and_reverts(
        self, contract_model: LipSyncModel, contract_sample: ContractSample
    ) -> None:
        prepared = self._prepared(contract_model, contract_sample)
        window = self._four_windows(contract_model, contract_sample)[1:2]
        device = contract_model.device
        before = self._run(contract_model, prepared, window)[0]
        try:
            contract_model.to(device, self.other_dtype)
            other = self._run(contract_model, prepared, window)[0]
        finally:
            contract_model.to(device, torch.float32)
        assert other.dtype in self.output_dtypes and other.shape == before.shape
        if self.dtype_mean_atol is not None:
            mean = float(np.abs(other.astype(np.float32) - before.astype(np.float32)).mean())
            assert mean <= self.dtype_mean_atol, (
                f"{self.other_dtype} moved the output by {mean:.1f} grey levels"
            )
        back = self._run(contract_model, prepared, window)[0]
        diff = int(np.abs(back.astype(np.int16) - before.astype(np.int16)).max())
        assert diff <= self.batch_atol, f"float32 again differs from before by {diff}"

    def test_contract_a_bad_option_is_one_line_naming_it(self, tmp_path: Path) -> None:
        with pytest.raises(LipSyncError) as info:
            self.plugin.load(weights=None, options={"no_such_option_xyz": 1})
        err = info.value
        assert err.stage == "options"
        assert "\n" not in err.message and "no_such_option_xyz" in err.message
        assert (err.remedy or "").startswith("valid options: ")

    def test_contract_missing_weights_say_where_to_get_them(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if not self.plugin.info.needs_weights:
            pytest.skip(f"{self.plugin.info.name} needs no weights")
        monkeypatch.setenv("LIPSYNCKIT_HOME", str(tmp_path / "empty_cache"))
        empty = tmp_path / "no_weights_here"
        empty.mkdir()
        with pytest.raises(WeightsError) as info:
            self.plugin.load(weights=empty)
        err = info.value
        text = f"{err.message} {err.remedy}"
        sources = [s for wf in self.plugin.info.weights for s in wf.sources]
        assert sources, "the plugin records no source for its weights"
        assert any((s.hf_repo and s.hf_repo in text) or (s.url and s.url in text) for s in sources), text
        assert f"lipsynckit weights fetch {self.plugin.info.name}" in text
