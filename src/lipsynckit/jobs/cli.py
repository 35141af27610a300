"""``lipsynckit batch --manifest jobs.csv [--ray [ADDRESS]]``: the CLI side of manifest runs."""

from __future__ import annotations

import argparse
from typing import Any


def add_manifest_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("manifest (many jobs; see docs/user-guide.md)")
    g.add_argument(
        "--manifest",
        help="CSV or JSONL of jobs (template,audio,output[,model,options,segments]); "
        "writes <manifest>.status.jsonl beside the outputs and skips jobs already done",
    )
    g.add_argument(
        "--avatar-dir",
        help="prepared-template cache (default: <out-dir>/.avatar; on a cluster: a folder every node sees)",
    )
    g.add_argument(
        "--status", help="status manifest path (default: <out-dir or manifest folder>/<name>.status.jsonl)"
    )
    g.add_argument(
        "--ray",
        nargs="?",
        const=True,
        default=False,
        metavar="ADDRESS",
        help="run the manifest on Ray: a cluster address (ray://host:10001, auto) or, alone, a local one",
    )
    g.add_argument(
        "--allow-outside",
        action="store_true",
        help="let manifest outputs be written outside the output folder (absolute paths, ..)",
    )
    g.add_argument(
        "--ray-workers",
        type=int,
        metavar="N",
        help="Ray workers (one model each; default: one per GPU, else one per CPU of the cluster)",
    )
    g.add_argument(
        "--ray-gpus-per-worker",
        type=float,
        metavar="G",
        help="GPUs each Ray worker reserves (default: 1 where the cluster has GPUs, else none; "
        "0.5 puts two workers on a GPU)",
    )


def run_manifest_command(
    args: argparse.Namespace, model_options: dict[str, Any], overrides: dict[str, Any]
) -> int:
    """Run the manifest; print one line per failed job and a summary. Exit 1 if any job failed."""
    from lipsynckit.jobs.run import run_manifest

    avatar_dir = overrides.pop("avatar_dir", None)
    rows = run_manifest(
        args.manifest,
        args.out_dir,
        model=args.model,
        weights=args.weights,
        device=args.device,
        model_options=model_options,
        avatar_dir=avatar_dir,
        status_path=args.status,
        concurrency=args.concurrency,
        allow_outside=args.allow_outside,
        ray=args.ray,
        ray_workers=args.ray_workers,
        ray_gpus_per_worker=args.ray_gpus_per_worker,
        summary=False,
        **overrides,
    )
    for line in rows.failure_lines():
        print(line)
    print(rows.summary())
    return 0 if rows.ok else 1
