"""golden_pipeline: the runtime methods (adjust_track, prepare, generate chunk by chunk, composite)
driven with the golden's frames, 106-point landmarks and Whisper features, against the official
``LipsyncPipeline.__call__`` output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lipsynckit.model import ModelInfo
from lipsynckit.types import Face, FaceTrack, ModelBatch, WorkItem
from lipsynckit_latentsync.audio import feature_chunks
from lipsynckit_latentsync.loader import load_unet
from lipsynckit_latentsync.options import LatentSyncOptions
from lipsynckit_latentsync.runtime import LatentSyncRuntime

from ls_testutil import golden_unet_config, golden_unet_state, golden_vae, npz, ref, save_official_unet


@pytest.fixture(scope="module")
def run(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    g = npz(ref(reference_dir, "golden_pipeline.npz"))
    path = save_official_unet(
        tmp_path_factory.mktemp("ckpt") / "latentsync_unet.pt", golden_unet_state(reference_dir)
    )
    unet = load_unet(path, golden_unet_config(reference_dir))
    info = ModelInfo(name="latentsync_golden", display_name="golden", face_size=64, chunk_frames=16)
    # official settings of the golden run: 3 DDIM steps, guidance 1.5, seed 1247, no DeepCache
    opts = LatentSyncOptions(steps=3, guidance=1.5, seed=1247, deepcache=False, exact_restore=True)
    rt = LatentSyncRuntime(info, unet, golden_vae(reference_dir), None, 64, opts)

    frames = g["frames_in"]
    track = rt.adjust_track(
        FaceTrack([Face(box=[0, 0, 1, 1], landmarks=lm) for lm in g["landmarks_106"]]), (96, 112)
    )
    prepared = [rt.prepare(f, track.faces[i]) for i, f in enumerate(frames)]  # type: ignore[arg-type]
    windows = feature_chunks(torch.from_numpy(g["whisper_features"]), 25)
    n = len(windows)
    order = (list(range(20)) + list(range(19, -1, -1)))[:n]  # the official ping-pong (end frame repeated)
    outputs: list[np.ndarray] = []
    decoded = []
    for start in range(0, n, 16):
        items = [
            WorkItem(job_id=3, index=i, face=prepared[order[i]], audio=windows[i])
            for i in range(start, min(n, start + 16))
        ]
        outputs += rt.generate(ModelBatch(items))
        assert rt.last_chunk is not None
        decoded.append(rt.last_chunk.decoded)
    return {
        "g": g,
        "rt": rt,
        "prepared": prepared,
        "order": order,
        "outputs": outputs,
        "decoded": torch.cat(decoded),
    }


def test_alignment_matches(run: dict[str, Any]) -> None:
    g = run["g"]
    crops = np.stack([p.crop for p in run["prepared"]]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(crops, g["aligned_faces"])
    mats = np.stack([p.data["affine"] for p in run["prepared"]])
    mats16 = torch.from_numpy(mats).half().float().numpy()
    np.testing.assert_array_equal(mats16, g["affine_matrices"][:, 0])


def test_decoded_matches(run: dict[str, Any]) -> None:
    g = run["g"]
    assert len(run["outputs"]) == 32
    np.testing.assert_allclose(run["decoded"].numpy(), g["decoded"], atol=1e-4, rtol=0)


def test_frames_out(run: dict[str, Any]) -> None:
    """Restoration in float16 as the official AlignRestore: with the float decoder output
    (``exact_restore``) we match to at most 1 grey level, and all but a handful of values exactly."""
    g, rt, order = run["g"], run["rt"], run["order"]
    out = np.stack(
        [
            rt.composite(g["frames_in"][order[i]], run["prepared"][order[i]], face)
            for i, face in enumerate(run["outputs"])
        ]
    )
    diff = np.abs(out.astype(int) - g["frames_out"].astype(int))
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.9999
    # untouched pixels (outside every restored region) are the source's, bit for bit
    far = np.ones(out.shape[1:3], bool)
    for p in run["prepared"]:
        x1, y1, x2, y2 = p.box
        far[y1:y2, x1:x2] = False
    if far.any():
        src = np.stack([g["frames_in"][o] for o in order])
        np.testing.assert_array_equal(out[:, far], src[:, far])


def test_frames_out_uint8_faces(run: dict[str, Any]) -> None:
    """The default protocol path hands uint8 faces to composite. The golden's random decoder drives
    values far outside [-1, 1], which the float path clamps only after warping, so differences stay
    local; they are measured here (real decoders stay in range)."""
    g, rt, order = run["g"], run["rt"], run["order"]
    out = []
    for i, face in enumerate(run["outputs"]):
        u8 = np.round((np.clip(face / 2 + 0.5, 0, 1)) * 255).astype(np.uint8)
        out.append(rt.composite(g["frames_in"][order[i]], run["prepared"][order[i]], u8))
    diff = np.abs(np.stack(out).astype(int) - g["frames_out"].astype(int))
    assert diff.mean() < 1.0
    assert (diff <= 1).mean() > 0.9
