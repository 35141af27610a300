"""The `lipsynckit` command line. User errors print one clear message and exit non-zero, no traceback."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lipsynckit.errors import LipSyncError

log = logging.getLogger("lipsynckit")


def _setup_logging(verbosity: int) -> None:
    level = logging.INFO if verbosity == 0 else (logging.DEBUG if verbosity > 0 else logging.WARNING)
    if verbosity <= -2:
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s" if verbosity > 0 else "%(message)s"))
    root = logging.getLogger("lipsynckit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    from lipsynckit.registry import plugin_packages

    for name in plugin_packages():  # every discovered plugin's package, ours or a third party's
        if name == "lipsynckit":
            continue
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(level)


def _sync_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from lipsynckit.cli_options import sync_options_from_args

    return sync_options_from_args(args)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", "-m", default="auto", help="model name (see list-models); auto = best usable")
    g.add_argument("--weights", "-w", help="weight file, or a folder in the model's official layout")
    g.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    g.add_argument(
        "--fp16", action="store_true", help="half precision (dtype float16) where the model and device allow"
    )
    g.add_argument("--option", "-O", action="append", metavar="KEY=VALUE", help="any model option")
    g.add_argument(
        "--model-help", metavar="MODEL", help="the options of MODEL (with --model MODEL they are flags)"
    )
    from lipsynckit.cli_options import add_sync_flags

    add_sync_flags(p)  # faces, silence, output: one flag per SyncOptions field


def cmd_sync(args: argparse.Namespace) -> int:
    from lipsynckit.api import sync
    from lipsynckit.cli_options import dtype_from_args, model_options_from_args

    overrides = _sync_overrides(args)
    out = args.output
    if out is None:
        lossless = overrides.get("output_mode") == "ffv1"
        out = str(Path(args.video).with_suffix("").name + ".lipsync" + (".mkv" if lossless else ".mp4"))
    result = sync(
        args.video,
        args.audio,
        model=args.model,
        output=out,
        weights=args.weights,
        device=args.device,
        dtype=dtype_from_args(args),
        model_options=model_options_from_args(args),
        **overrides,
    )
    print(result.summary())
    if args.json:
        Path(args.json).write_text(_result_json(result))
    return 0


def _result_json(result: Any) -> str:
    """Statistics indented for reading; the per-frame face columns on one line each (compact)."""
    d = _result_dict(result)
    faces = d.pop("faces")
    head = json.dumps(d, indent=2, default=str)
    columns = ",\n".join(
        f"    {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in faces.items()
    )
    return head[:-2] + ',\n  "faces": {\n' + columns + "\n  }\n}\n"


def _result_dict(result: Any) -> dict[str, Any]:
    """The run's statistics and, under ``faces``, the box and landmarks of every output frame."""
    from dataclasses import asdict, replace

    d = asdict(replace(result, face_track=None, frame_index=[]))  # the track is written compactly
    del d["face_track"], d["frame_index"]
    d["duration"] = result.duration
    d["faces"] = result.face_frames()
    return d


def cmd_batch(args: argparse.Namespace) -> int:
    from lipsynckit.api import sync_batch
    from lipsynckit.cli_options import dtype_from_args, model_options_from_args

    if args.manifest:
        from lipsynckit.jobs.cli import run_manifest_command

        return run_manifest_command(args, model_options_from_args(args), _sync_overrides(args))
    if not args.template or not args.audios or not args.out_dir:
        raise LipSyncError("batch needs TEMPLATE AUDIO... -o OUT_DIR, or --manifest", stage="options")

    results = sync_batch(
        args.template,
        args.audios,
        args.out_dir,
        model=args.model,
        weights=args.weights,
        device=args.device,
        dtype=dtype_from_args(args),
        model_options=model_options_from_args(args),
        concurrency=args.concurrency,
        **_sync_overrides(args),
    )
    for r in results:
        print(r.summary())
    return 0


def cmd_list_models(args: argparse.Namespace) -> int:
    from lipsynckit.registry import list_models

    rows = list_models(args.weights)
    if args.json:
        print(json.dumps([r.model_dump(exclude={"info"}) for r in rows], indent=2))
        return 0
    print(rows)
    return 0


def cmd_detectors(args: argparse.Namespace) -> int:
    from lipsynckit.faces import list_face_detectors

    for name, usable, reason in list_face_detectors():
        print(f"{name:12s} {'usable' if usable else 'not usable'}" + (f"  ({reason})" if reason else ""))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import platform

    import torch

    print(f"python      {platform.python_version()} on {platform.machine()}")
    print(f"torch       {torch.__version__}; CUDA available: {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"  cuda:{i}    {p.name}, {p.total_memory / 1024**3:.0f} GB")
    for mod in ("cv2", "av", "soundfile", "diffusers", "onnxruntime", "insightface", "huggingface_hub"):
        try:
            m = __import__(mod)
            print(f"{mod:11s} {getattr(m, '__version__', 'installed')}")
        except Exception as exc:  # noqa: BLE001 - doctor reports, never fails
            print(f"{mod:11s} not available ({type(exc).__name__})")
    from lipsynckit.weights import cache_dir

    print(f"weights     cache {cache_dir()}")
    print("models:")
    cmd_list_models(argparse.Namespace(weights=args.weights, json=False))
    print("face detectors:")
    try:
        cmd_detectors(args)
    except LipSyncError as exc:
        print(f"  {exc}")
    from lipsynckit.selection import choose_model

    _name, why = choose_model(args.weights)
    print(f"--model auto would use: {why}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from lipsynckit.errors import OfflineError
    from lipsynckit.registry import get_plugin, list_models
    from lipsynckit.weights import download_file, locate, not_found_error, verify, where_to_get

    names = [args.model] if args.model else [r.name for r in list_models() if r.info is not None]
    status = 0
    for name in names:
        plugin = get_plugin(name)
        info = plugin.info
        if not info.weights:
            print(f"{name}: needs no weights")
            continue
        lic = f"licence {info.weights_license}" + (" (NON-COMMERCIAL)" if info.non_commercial else "")
        print(f"{name}: {lic}")
        found = locate(info.name, info.weights, args.weights)  # the resolver's own search, per record
        for wf in info.weights:
            try:
                path = found.get(wf.key)
                if path is None:
                    if args.action != "fetch":
                        raise not_found_error(wf, info.name, args.weights)
                    path = download_file(wf, info.name)
            except OfflineError:
                raise  # one line for the whole fetch, not one per file
            except LipSyncError as exc:
                if args.action == "fetch" and not wf.optional:
                    status = 2
                print(f"  {wf.key:12s} MISSING  {wf.filename}" + (" (optional)" if wf.optional else ""))
                if args.action != "list":
                    print("               " + str(exc).replace("\n", "\n               "))
                else:
                    print("               " + where_to_get(wf, info.name))
                continue
            note = ""
            if args.action == "verify":
                try:
                    note = "sha256 OK" if verify(path, wf) else "no known sha256"
                except LipSyncError as exc:
                    note, status = f"BAD: {exc.message}", 2
            print(f"  {wf.key:12s} found    {path} {note}")
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lipsynckit", description="Lip-sync a video or a still image to new audio."
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sync", help="lip-sync one video or image to one audio file")
    s.add_argument("video", help="video or still image with a face")
    s.add_argument("audio", nargs="?", help="audio file (default: the video's own audio track)")
    s.add_argument(
        "-o",
        "--output",
        help="output: .mp4/.mov (H.264 + AAC), .mkv (lossless FFV1), .webm (VP9 + Opus), or a folder "
        "(no suffix) for PNG frames; the suffix picks the container",
    )
    s.add_argument(
        "--json", help="write the run's statistics and each frame's face box and landmarks to this JSON file"
    )
    _add_run_args(s)
    s.set_defaults(func=cmd_sync)

    b = sub.add_parser("batch", help="one template video, many audio tracks (personalised videos)")
    b.add_argument("template", nargs="?")
    b.add_argument("audios", nargs="*")
    b.add_argument("--out-dir", "-o", help="output folder (with --manifest: where relative outputs go)")
    from lipsynckit.jobs.cli import add_manifest_args

    add_manifest_args(b)
    b.add_argument("--concurrency", type=int, default=2, help="jobs run at once (their frames share batches)")
    _add_run_args(b)
    b.set_defaults(func=cmd_batch)

    lm = sub.add_parser("list-models", help="installed model plugins and whether they can run")
    lm.add_argument("--weights", help="also look for weights here")
    lm.add_argument("--json", action="store_true")
    lm.set_defaults(func=cmd_list_models)

    d = sub.add_parser("doctor", help="check torch/CUDA, plugins, face detectors and weights")
    d.add_argument("--weights")
    d.set_defaults(func=cmd_doctor)

    det = sub.add_parser("detectors", help="installed face detectors")
    det.set_defaults(func=cmd_detectors)

    w = sub.add_parser("weights", help="list, fetch or verify model weights")
    w.add_argument("action", choices=["list", "fetch", "verify"])
    w.add_argument("model", nargs="?", help="model name (default: all)")
    w.add_argument("--weights", help="a file or folder to look in besides the cache")
    w.set_defaults(func=cmd_weights)

    from lipsynckit.bench import add_bench_parser  # light (no torch); an error here must be seen

    add_bench_parser(sub)
    from lipsynckit.streaming.serve import add_serve_parser

    add_serve_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from lipsynckit.cli_options import add_flags_for_argv, handle_model_help

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        page = handle_model_help(argv)  # --model-help NAME: that plugin's options page, nothing else
    except LipSyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if page is not None:
        print(page)
        return 0
    add_flags_for_argv(parser, argv)  # --model NAME: that plugin's options become flags
    args = parser.parse_args(argv)
    _setup_logging(args.verbose - args.quiet)
    try:
        return int(args.func(args) or 0)
    except LipSyncError as exc:
        log.debug("details", exc_info=True)
        print(f"error: {exc.cli_text()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
