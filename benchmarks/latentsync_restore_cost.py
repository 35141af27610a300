"""What LatentSync's exact default output path costs on the CPU against the uint8 faces it replaced.

``exact_restore=True`` (the default) hands ``composite`` the float32 decoder output, as the official
pipeline restores it; ``exact_restore=False`` quantises the faces to uint8 in ``generate``. Measured
here, per frame, on a 1280x720 frame at both released face sizes (256 for 1.5, 512 for 1.6):

- ``generate``'s hand-off: the chunk tensor (16 faces) to per-frame numpy arrays;
- ``composite``: the official restoration (resize, inverse warp, eroded and blurred mask, float16);
- memory of one face waiting between ``generate`` and ``composite``.

Both paths run interleaved in one process (ratios, not absolute times, are what carries over).
Usage: ``python benchmarks/latentsync_restore_cost.py [--repeats 15]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lipsynckit.bench import machine_name
from lipsynckit_latentsync.face import Aligner


def handoff(pasted: torch.Tensor, exact: bool) -> list[np.ndarray]:
    """The two branches of ``LatentSyncRuntime.generate`` after the chunk is decoded."""
    if exact:
        return list(pasted.float().permute(0, 2, 3, 1).cpu().numpy())
    img = ((pasted.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return list(img.permute(0, 2, 3, 1).cpu().numpy())


def composite(aligner: Aligner, frame: np.ndarray, face: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``LatentSyncRuntime.composite``: uint8 faces are mapped back to [-1, 1] first."""
    g = torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1)
    if g.dtype == torch.uint8:
        g = g.float() / 255.0 * 2 - 1
    return aligner.restore(frame, g.float(), affine)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    anchors = np.array([[560.0, 300.0], [720.0, 300.0], [640.0, 420.0]])  # brows and nose of a 400 px face
    print(f"machine: {machine_name()}, torch threads {torch.get_num_threads()}")
    print(
        "| face size | path | hand-off per frame (ms) | composite per frame (ms) | bytes per waiting face |"
    )
    print("|---|---|---|---|---|")
    for res in (256, 512):
        aligner = Aligner(res, torch.float16)
        affine, _ = aligner.transform(anchors, None)
        pasted = torch.tanh(torch.randn(16, 3, res, res) * 0.8)  # decoder-like values in [-1, 1]
        times: dict[bool, tuple[list[float], list[float]]] = {True: ([], []), False: ([], [])}
        faces = {e: handoff(pasted, e) for e in (True, False)}
        for _ in range(args.repeats):
            for exact in (True, False):  # interleaved: load changes hit both alike
                t0 = time.perf_counter()
                faces[exact] = handoff(pasted, exact)
                t1 = time.perf_counter()
                composite(aligner, frame, faces[exact][0], affine)
                t2 = time.perf_counter()
                times[exact][0].append((t1 - t0) / 16 * 1e3)
                times[exact][1].append((t2 - t1) * 1e3)
        for exact in (True, False):
            h, c = (statistics.median(x) for x in times[exact])
            name = "exact_restore=True (float32, default)" if exact else "exact_restore=False (uint8)"
            print(f"| {res} | {name} | {h:.2f} | {c:.1f} | {faces[exact][0].nbytes:,} |")
        ratio = statistics.median(times[True][1]) / statistics.median(times[False][1])
        print(f"| {res} | composite float32 / uint8 | | {ratio:.2f}x | 4x |")


if __name__ == "__main__":
    main()
