"""golden_pipeline: the model as ``lipsynckit.load_model("latentsync", weights=checkpoints/)`` returns
it, with its DEFAULT output path, driven through the protocol (adjust_track, prepare, generate chunk by
chunk, composite) with the golden's frames, 106-point landmarks and Whisper features, against the
official ``LipsyncPipeline.__call__`` output. The checkpoints/ folder is the official layout with
deterministic weights; it carries the golden's small architectures in ``unet_config.yaml`` and the
VAE's ``config.json``, as a user's folder would carry a non-released config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lipsynckit
from lipsynckit.types import Face, FaceTrack, ModelBatch, WorkItem
from lipsynckit_latentsync.audio import feature_chunks
from lipsynckit_latentsync.runtime import LatentSyncRuntime

from ls_testutil import make_small_checkpoints, npz, ref

# the official settings of the golden run (3 DDIM steps, guidance 1.5, seed 1247, no DeepCache);
# everything else, the output path included, is the default
GOLDEN_OPTIONS = {"steps": 3, "guidance": 1.5, "seed": 1247, "deepcache": False}


@pytest.fixture(scope="module")
def checkpoints(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_checkpoints(tmp_path_factory.mktemp("golden") / "checkpoints", reference_dir)


@pytest.fixture(scope="module")
def run(reference_dir: Path, checkpoints: Path) -> dict[str, Any]:
    g = npz(ref(reference_dir, "golden_pipeline.npz"))
    rt = lipsynckit.load_model("latentsync", weights=checkpoints, device="cpu", options=GOLDEN_OPTIONS)
    assert isinstance(rt, LatentSyncRuntime)
    assert rt.info.face_size == 64 and rt.latent_size == 32  # the architecture the folder carries

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
        "windows": windows,
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


def composite_all(run: dict[str, Any], rt: Any, outputs: list[np.ndarray]) -> np.ndarray:
    g, order = run["g"], run["order"]
    return np.stack(
        [
            rt.composite(g["frames_in"][order[i]], run["prepared"][order[i]], face)
            for i, face in enumerate(outputs)
        ]
    )


def test_frames_out(run: dict[str, Any]) -> None:
    """The default output path restores the un-quantised decoder output in float16, as the official
    AlignRestore: at most 1 grey level off, all but a handful of values exact (README tolerance:
    a few grey levels)."""
    g, order = run["g"], run["order"]
    assert all(o.dtype == np.float32 for o in run["outputs"])
    out = composite_all(run, run["rt"], run["outputs"])
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


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_uint8_faces_option_is_the_documented_approximation(run: dict[str, Any], checkpoints: Path) -> None:
    """``exact_restore=False`` (uint8 faces, a quarter of the memory per face waiting for composite)
    is NOT exact: the golden's random decoder drives values far outside [-1, 1], which the uint8 faces
    clamp before the warp and the official code only after it. Measured on the first chunk (slow: a
    second model load and chunk)."""
    g = run["g"]
    rt = lipsynckit.load_model(
        "latentsync", weights=checkpoints, device="cpu", options={**GOLDEN_OPTIONS, "exact_restore": False}
    )
    items = [
        WorkItem(job_id=4, index=i, face=run["prepared"][run["order"][i]], audio=run["windows"][i])
        for i in range(16)
    ]
    faces = rt.generate(ModelBatch(items))
    assert all(f.dtype == np.uint8 for f in faces)
    out = composite_all(run, rt, faces)
    diff = np.abs(out.astype(int) - g["frames_out"][:16].astype(int))
    assert diff.max() > 1  # the reason exact restoration is the default
    assert diff.mean() < 1.0 and (diff <= 1).mean() > 0.9
