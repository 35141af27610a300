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


def run_manifest_command(
    args: argparse.Namespace, model_options: dict[str, Any], overrides: dict[str, Any]
) -> int:
    """Run the manifest; print one line per failed job and a summary. Exit 1 if any job failed."""
    from lipsynckit.jobs.run import run_manifest, summarize

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
        ray=args.ray,
        **overrides,
    )
    for r in rows:
        if r.state == "failed" and r.error is not None:
            where = " ".join(
                x for x in (f"[{r.error.stage}]" if r.error.stage else "", r.error.file or "") if x
            )
            print(f"row {r.row} failed: {where} {r.error.message}".replace("  ", " "))
    c = summarize(rows)
    print(f"{len(rows)} jobs: {c['ok']} ok, {c['skipped']} skipped (already done), {c['failed']} failed")
    return 1 if c["failed"] else 0
