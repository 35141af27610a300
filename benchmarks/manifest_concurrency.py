"""A 200-job manifest run one job at a time against several jobs in flight on one loaded model.

Each setting runs in a fresh child process over the same manifest (the carphone template, prepared
once beforehand so only jobs are timed; N different 1 s LibriVox cuts; H.264 + AAC outputs). On a CPU
a concurrency above 1 runs the jobs on that many worker processes of the child. Reported per setting:
wall time, jobs per hour, CPU busy % (user + system CPU time of the child and its workers over wall
time x cores), peak RSS (the child and its workers summed, sampled every 0.2 s), and the ratio to the
first setting, all from one run of this script, and how many rows have the same output bytes as in
the first setting.

    python benchmarks/manifest_concurrency.py --jobs 200 --concurrency 1,2
    python benchmarks/manifest_concurrency.py --jobs 40 --model wav2lip   # stand-in deterministic weights
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _tree_rss_mb() -> float:
    """RSS of this process and all its descendants (the worker processes), from /proc."""
    me = os.getpid()
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/statm") as f:
                rss[int(d)] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, grew = {me}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        grew = bool(more)
        tree |= more
    return sum(rss.get(p, 0) for p in tree) / 2**20


def child(manifest: Path, out: Path, model: str, weights: str | None, avatar: Path, concurrency: int) -> None:
    import threading

    import lipsynckit as lsk

    peak = [0.0]
    done = threading.Event()

    def sample() -> None:  # the runner and its worker processes together
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_rss_mb())

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    rows = lsk.run_manifest(
        manifest,
        out,
        model=model,
        weights=weights,
        avatar_dir=avatar,
        concurrency=concurrency,
        progress=False,
        summary=False,
    )
    wall = time.perf_counter() - t0
    done.set()
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker processes, joined at the end
    bad = [r.error for r in rows if r.state != "ok"]
    assert not bad, bad[:3]
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                "peak_rss_mb": max(peak[0], me.ru_maxrss / 1024),
                "processes_peak_rss_mb": kids.ru_maxrss / 1024,
                "sha256": [r.sha256 for r in rows],
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--model", default="viseme", choices=["viseme", "wav2lip"])
    ap.add_argument("--concurrency", default="1,2")
    ap.add_argument("--child", nargs=6, metavar=("MANIFEST", "OUT", "MODEL", "WEIGHTS", "AVATAR", "N"))
    args = ap.parse_args()
    if args.child:
        m, o, model, w, a, n = args.child
        child(Path(m), Path(o), model, None if w == "-" else w, Path(a), int(n))
        return

    from batch_throughput import carphone, short_audios

    import lipsynckit as lsk
    from lipsynckit.bench import machine_name

    work = Path(tempfile.mkdtemp(prefix="lsk-conc-"))
    audios = short_audios(work, args.jobs, args.seconds)
    template = carphone()
    manifest = work / "jobs.csv"
    manifest.write_text("template,audio,output\n" + "".join(f"{template},{a},{a.stem}.mp4\n" for a in audios))
    weights = "-"
    if args.model == "wav2lip":
        from official_layouts import wav2lip_checkpoint

        weights = str(wav2lip_checkpoint(work / "w" / "wav2lip.pth", HERE.parent / "tests" / "reference"))
    lsk.prepare_avatar(
        template,
        lsk.load_model(args.model, weights=None if weights == "-" else weights),
        work / "avatar",
    )
    report: dict[str, object] = {
        "machine": machine_name(),
        "cores": os.cpu_count(),
        "model": args.model,
        "jobs": args.jobs,
        "audio_s": args.seconds,
        "load_before": os.getloadavg(),
        "settings": {},
    }
    first_sha: list[str] | None = None
    for n in [int(x) for x in args.concurrency.split(",")]:
        cmd = [sys.executable, __file__, "--child", str(manifest), str(work / f"c{n}"), args.model, weights]
        cmd += [str(work / "avatar"), str(n)]
        load = os.getloadavg()
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        fig = json.loads(done.stdout.strip().splitlines()[-1])
        sha = fig.pop("sha256")
        if first_sha is None:
            first_sha = sha
        # rows whose output bytes equal the first setting's (all of them when the run is deterministic)
        fig["same_bytes_as_first"] = sum(a == b for a, b in zip(sha, first_sha, strict=True))
        fig["jobs_per_hour"] = args.jobs / fig["wall_s"] * 3600
        fig["cpu_busy_pct"] = 100 * fig["cpu_s"] / (fig["wall_s"] * (os.cpu_count() or 1))
        fig["load_at_start"] = load
        report["settings"][f"concurrency={n}"] = fig  # type: ignore[index]
        print(n, json.dumps(fig), flush=True)
    base = next(iter(report["settings"].values()))  # type: ignore[attr-defined]
    for fig in report["settings"].values():  # type: ignore[attr-defined]
        fig["jobs_per_hour_ratio"] = fig["jobs_per_hour"] / base["jobs_per_hour"]
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
