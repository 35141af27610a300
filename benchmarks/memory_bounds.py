"""Peak RSS of the inputs issue 18 found without a memory bound, old behaviour against new.

Cases (each in a fresh process; the parent reads the child's peak RSS from ``wait4``):

- ``resample44101``: ``load_audio`` of 7 s of real speech at 44101 Hz, resampled to 16 kHz. Old: the
  torchaudio-style filter bank for a gcd of 1 (2.8 GB of kernel), forced by lifting
  ``KERNEL_BUDGET_BYTES``; new: the direct path in 16 MiB blocks.
- ``sync44101``: the whole ``lsk.sync`` (viseme) of a photo with that 44101 Hz audio (new only).
- ``photo10000``: ``lsk.sync`` of a 10000x10000 JPEG. Old: no pixel budget (``max_pixels=None``);
  new: refused from the header (default ``max_pixels``).
- ``photo4000``: ``lsk.sync`` of a 4000x4000 JPEG with 2 s of speech to mp4 at the default preset
  (accepted under the default budget). Old: a frame queue of 48 frames and x264's look-ahead of 40
  pictures whatever their size (``frame_queue_bytes``, ``X264_LOOKAHEAD_BYTES`` lifted); new: the
  default 512 MiB queue and 256 MiB look-ahead.

An old variant runs under an address-space cap (``resource.setrlimit(RLIMIT_AS)``, set in the child
after its imports to its size then plus ``--cap-gb``) so that it cannot take the machine down; hitting
the cap is reported as such. Usage: ``python benchmarks/memory_bounds.py [--cases a,b] [--cap-gb 6]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CASES = ("resample44101", "sync44101", "photo10000", "photo4000")


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _speech(seconds: float, rate: int, folder: Path) -> Path:
    import numpy as np
    import soundfile as sf
    import torch

    from lipsynckit.media import load_audio, resample

    parts = [load_audio(p).numpy() for p in sorted(LIBRIVOX.glob("*.wav"))[:4]]
    x = np.concatenate(parts)[: int(seconds * 16000)]
    y = resample(torch.from_numpy(x)[None], 16000, rate)[0].numpy()
    out = folder / f"speech_{rate}.wav"
    sf.write(str(out), y, rate, subtype="PCM_16")
    return out


def _photo(size: int, folder: Path) -> Path:
    import cv2
    import skimage.data

    out = folder / f"photo_{size}.jpg"
    bgr = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(
        str(out),
        cv2.resize(bgr, (size, size), interpolation=cv2.INTER_LINEAR),
        [cv2.IMWRITE_JPEG_QUALITY, 90],
    )
    return out


def child(case: str, old: bool, cap_gb: float, folder: Path) -> dict:
    """Run one case here (a child process) and say how it ended."""
    import lipsynckit as lsk
    from lipsynckit.errors import LipSyncError
    from lipsynckit.media import load_audio

    resample_module = sys.modules["lipsynckit.media.resample"]
    if old:
        resample_module.KERNEL_BUDGET_BYTES = 1 << 62  # the bank for every pair of rates, as before
        size = _vm_size()
        cap = size + int(cap_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    opts: dict = {"progress": False}
    try:
        if case == "resample44101":
            clip = load_audio(folder / "speech_44101.wav", sample_rate=16000)
            return {"outcome": f"ok: {clip.num_samples} samples at 16 kHz"}
        if case == "sync44101":
            r = lsk.sync(
                folder / "photo_512.jpg",
                folder / "speech_44101.wav",
                model="viseme",
                output=folder / "o1.mp4",
                **opts,
            )
            return {"outcome": f"ok: {r.frames} frames {r.width}x{r.height}"}
        if case == "photo10000":
            if old:
                opts["max_pixels"] = None
            r = lsk.sync(
                folder / "photo_10000.jpg",
                folder / "speech_16000.wav",
                model="viseme",
                output=folder / "o2.mp4",
                **opts,
            )
            return {"outcome": f"ok: {r.frames} frames {r.width}x{r.height}"}
        if case == "photo4000":
            if old:
                opts["frame_queue_bytes"] = 1 << 62
                sys.modules["lipsynckit.media.sink"].X264_LOOKAHEAD_BYTES = 1 << 62  # x264's 40 pictures
            r = lsk.sync(
                folder / "photo_4000.jpg",
                folder / "speech_16000.wav",
                model="viseme",
                output=folder / "o3.mp4",
                **opts,
            )
            q = r.scheduler.get("frame_queue_frames")
            return {"outcome": f"ok: {r.frames} frames {r.width}x{r.height}, frame queue {q} frames"}
    except LipSyncError as e:
        return {"outcome": "refused: " + str(e).splitlines()[0]}
    except MemoryError as e:
        return {"outcome": f"MemoryError at the {cap_gb:g} GB cap ({str(e)[:80]})"}
    raise ValueError(case)


def run(case: str, old: bool, cap_gb: float, folder: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--folder", str(folder), "--cap-gb", str(cap_gb)]
    if old:
        cmd.append("--old")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    out, err = p.stdout.read(), p.stderr.read()  # type: ignore[union-attr]
    row = {"case": case, "variant": "old" if old else "new", "peak_rss_mb": round(usage.ru_maxrss / 1024)}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    try:
        row.update(json.loads(out.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        code = os.waitstatus_to_exitcode(status)
        tail = err.strip().splitlines()[-1:] or [""]
        row["outcome"] = f"died (exit {code}) at the {cap_gb:g} GB cap: {tail[0][:100]}"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--cap-gb", type=float, default=6.0, help="address space the old variants may add")
    ap.add_argument("--child")
    ap.add_argument("--folder")
    ap.add_argument("--old", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.old, args.cap_gb, Path(args.folder))))
        return
    from lipsynckit.bench import machine_name

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _speech(7.0, 44101, folder)
        _speech(2.0, 16000, folder)
        for size in (512, 4000, 10000):
            _photo(size, folder)
        print(f"# {machine_name()}, load average {os.getloadavg()[0]:.1f} at start")
        for case in args.cases.split(","):
            for old in (True, False):
                if case == "sync44101" and old:
                    continue  # the old resampler fails as in resample44101
                row = run(case, old, args.cap_gb, folder)
                row["load"] = round(os.getloadavg()[0], 1)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
