"""SyncNet / LSE / MFCC against the goldens made by running the official syncnet_python code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lipsynckit.errors import WeightsError
from lipsynckit.metrics import (
    SyncNetOptions,
    SyncNetS,
    SyncNetScorer,
    lse_from_features,
    num_windows,
    syncnet_mfcc,
)
from lipsynckit.testing import deterministic_state_dict, load_manifest
from lipsynckit.types import AudioClip

from refdata import load_npz

W2L = "wav2lip"


@pytest.fixture(scope="module")
def manifest(reference_dir: Path) -> dict[str, tuple[int, ...]]:
    return load_manifest(reference_dir / W2L / "manifest_syncnet_eval.json")


@pytest.fixture(scope="module")
def checkpoint(manifest: dict[str, tuple[int, ...]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``syncnet_v2.model``-shaped file: plain tensor dict, old-style (no ``num_batches_tracked``)."""
    sd = {
        k: v for k, v in deterministic_state_dict(manifest).items() if not k.endswith("num_batches_tracked")
    }
    p = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(sd, p, _use_new_zipfile_serialization=False)  # the 2016 file predates the zip format
    return p


@pytest.fixture(scope="module")
def scorer(checkpoint: Path) -> SyncNetScorer:
    return SyncNetScorer.load(checkpoint)


def test_module_names_and_shapes_follow_manifest(manifest: dict[str, tuple[int, ...]]) -> None:
    sd = SyncNetS().state_dict()
    assert list(sd) == list(manifest)
    assert {k: tuple(v.shape) for k, v in sd.items()} == manifest
    assert sum(p.numel() for p in SyncNetS().parameters()) == 13_631_616


def test_load_accepts_missing_num_batches_tracked_but_not_missing_weights(
    manifest: dict[str, tuple[int, ...]], tmp_path: Path
) -> None:
    full = deterministic_state_dict(manifest)
    SyncNetScorer.from_state_dict(full)  # with num_batches_tracked: fine too
    broken = {k: v for k, v in full.items() if k != "netfclip.3.weight"}
    p = tmp_path / "syncnet_v2.model"
    torch.save(broken, p)
    with pytest.raises(WeightsError, match="netfclip.3.weight"):
        SyncNetScorer.load(p)
    torch.save({**full, "extra.weight": torch.zeros(1)}, p)
    with pytest.raises(WeightsError, match="unexpected"):
        SyncNetScorer.load(p)


def test_missing_file_names_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="robots.ox.ac.uk"):
        SyncNetScorer.load(tmp_path)


def test_golden_syncnet_eval(scorer: SyncNetScorer, reference_dir: Path) -> None:
    g = load_npz(reference_dir / W2L / "golden_syncnet_eval.npz")
    with torch.inference_mode():
        lip = scorer.net.forward_lip(torch.from_numpy(g["lip"]).float())
        aud = scorer.net.forward_aud(torch.from_numpy(g["mfcc"]))
    np.testing.assert_allclose(lip.numpy(), g["lip_feat"], rtol=1e-5, atol=5e-4)
    np.testing.assert_allclose(aud.numpy(), g["aud_feat"], rtol=1e-5, atol=5e-4)


@pytest.mark.parametrize("name", ["golden_audio", "golden_lse"])
def test_golden_mfcc(reference_dir: Path, name: str) -> None:
    g = load_npz(reference_dir / W2L / f"{name}.npz")
    got = syncnet_mfcc(g["pcm16"])
    assert got.shape == g["mfcc"].shape and got.dtype == np.float64
    np.testing.assert_allclose(got, g["mfcc"], rtol=1e-9, atol=0)


def test_golden_lse_case_a_full_evaluate(scorer: SyncNetScorer, reference_dir: Path) -> None:
    """Real forward passes on the stored frames and PCM, through the public entry points."""
    g = load_npz(reference_dir / W2L / "golden_lse.npz")
    assert num_windows(len(g["frames_bgr"]), len(g["pcm16"])) == 35
    n = 35
    im, cc = scorer.embed(g["frames_bgr"], syncnet_mfcc(g["pcm16"]), n)
    np.testing.assert_allclose(im.numpy(), g["im_feat"], rtol=1e-5, atol=5e-4)
    np.testing.assert_allclose(cc.numpy(), g["cc_feat"], rtol=1e-5, atol=5e-4)

    # the RGB + AudioClip entry point: frames flipped to RGB, audio as float in [-1, 1]
    rgb = np.ascontiguousarray(g["frames_bgr"][..., ::-1])
    audio = AudioClip(torch.from_numpy(g["pcm16"].astype(np.float32) / 32768.0), 16000)
    lossless = SyncNetScorer(scorer.net, SyncNetOptions(jpeg_roundtrip=False))  # the golden skipped ffmpeg
    for r in (scorer.score_bgr_pcm(g["frames_bgr"], g["pcm16"]), lossless.score_video(rgb, audio, fps=25.0)):
        assert r.av_offset == int(g["av_offset"]) == -15
        assert r.num_windows == n
        np.testing.assert_allclose(r.dists_array(), g["dists"], rtol=1e-5)
        np.testing.assert_allclose(r.mean_dist_array(), g["mean_dist"], rtol=1e-5)
        np.testing.assert_allclose(r.lse_d, float(g["lse_d"]), rtol=1e-5)
        np.testing.assert_allclose(r.lse_c, float(g["lse_c"]), rtol=1e-5)
        assert len(r.frame_conf) == n


def test_golden_lse_case_b_arithmetic(reference_dir: Path) -> None:
    g = load_npz(reference_dir / W2L / "golden_lse.npz")
    r = lse_from_features(torch.from_numpy(g["caseB_im_feat"]), torch.from_numpy(g["caseB_cc_feat"]))
    assert r.av_offset == int(g["caseB_av_offset"]) == -3
    np.testing.assert_allclose(r.dists_array(), g["caseB_dists"], rtol=1e-5)
    np.testing.assert_allclose(r.mean_dist_array(), g["caseB_mean_dist"], rtol=1e-5)
    np.testing.assert_allclose(r.lse_d, float(g["caseB_lse_d"]), rtol=1e-5)
    np.testing.assert_allclose(r.lse_c, float(g["caseB_lse_c"]), rtol=1e-5)


def test_case_b_shift_moves_offset(reference_dir: Path) -> None:
    """Moving the audio features by two more windows moves the offset by exactly two."""
    g = load_npz(reference_dir / W2L / "golden_lse.npz")
    im = torch.from_numpy(g["caseB_im_feat"])
    cc = torch.from_numpy(g["caseB_cc_feat"])
    cc2 = torch.cat([torch.zeros(2, cc.shape[1]), cc[:-2]])
    assert lse_from_features(im, cc2).av_offset == -5


def test_too_short_clip_is_a_clear_error(scorer: SyncNetScorer) -> None:
    from lipsynckit.errors import VideoError

    frames = np.zeros((5, 224, 224, 3), np.uint8)
    with pytest.raises(VideoError, match="too short"):
        scorer.score_video(frames, AudioClip(torch.zeros(1, 3200), 16000))


@pytest.mark.gpu
def test_golden_lse_on_cuda(manifest: dict[str, tuple[int, ...]], reference_dir: Path) -> None:
    """Same evaluate on the GPU; cuDNN may use TF32 convolutions, hence the looser tolerance."""
    g = load_npz(reference_dir / W2L / "golden_lse.npz")
    scorer = SyncNetScorer.from_state_dict(deterministic_state_dict(manifest), device="cuda")
    r = scorer.score_bgr_pcm(g["frames_bgr"], g["pcm16"])
    assert r.av_offset == int(g["av_offset"])
    np.testing.assert_allclose(r.dists_array(), g["dists"], rtol=2e-3)
    np.testing.assert_allclose(r.lse_d, float(g["lse_d"]), rtol=2e-3)
