"""The `lipsynckit` command line. User errors print one clear message and exit non-zero, no traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    from lipsynckit.cli_options import DTYPE_CHOICES

    g.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        help="the one precision knob: each model lists the dtypes it honours (--model-help) and says in one "
        "line when it ignores the one asked (default: the model's own)",
    )
    g.add_argument("--fp16", dest="dtype", action="store_const", const="float16", help="--dtype float16")
    g.add_argument(
        "--official",
        action="store_true",
        help="the model's official pipeline (what it means per model: its docs page; flags given win)",
    )
    g.add_argument("--option", "-O", action="append", metavar="KEY=VALUE", help="any model option")
    g.add_argument(
        "--model-help", metavar="MODEL", help="the options of MODEL (with --model MODEL they are flags)"
    )
    from lipsynckit.cli_options import add_sync_flags

    add_sync_flags(p)  # faces, silence, output: one flag per SyncOptions field


def cmd_sync(args: argparse.Namespace) -> int:
    from lipsynckit.cli_options import dtype_from_args, model_options_from_args, official_settings
    from lipsynckit.inputs import check_run
    from lipsynckit.limits import DEFAULT_MAX_PIXELS

    overrides, model_options = official_settings(args, _sync_overrides(args), model_options_from_args(args))
    out = args.output
    if out is None:
        lossless = overrides.get("output_mode") == "ffv1"
        out = str(Path(args.video).with_suffix("").name + ".lipsync" + (".mkv" if lossless else ".mp4"))
    # a mistyped path, an empty file or an output that would destroy something costs a fraction of a
    # second: all checked before torch and the model load
    check_run(
        args.video,
        args.audio,
        out,
        overrides.get("output_mode", "auto"),
        overrides.get("max_pixels", DEFAULT_MAX_PIXELS),
    )

    from lipsynckit.api import sync

    result = sync(
        args.video,
        args.audio,
        model=args.model,
        output=out,
        weights=args.weights,
        device=args.device,
        dtype=dtype_from_args(args),
        model_options=model_options,
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
    from lipsynckit.cli_options import dtype_from_args, model_options_from_args, official_settings
    from lipsynckit.limits import DEFAULT_MAX_PIXELS

    overrides, model_options = official_settings(args, _sync_overrides(args), model_options_from_args(args))
    if args.manifest:
        from lipsynckit.jobs.cli import run_manifest_command

        return run_manifest_command(args, model_options, overrides)
    if not args.template or not args.audios or not args.out_dir:
        raise LipSyncError("batch needs TEMPLATE AUDIO... -o OUT_DIR, or --manifest", stage="options")
    from lipsynckit.inputs import check_run

    for a in args.audios:  # before torch and the model load
        check_run(args.template, a, None, max_pixels=overrides.get("max_pixels", DEFAULT_MAX_PIXELS))
    from lipsynckit.api import sync_batch

    results = sync_batch(
        args.template,
        args.audios,
        args.out_dir,
        model=args.model,
        weights=args.weights,
        device=args.device,
        dtype=dtype_from_args(args),
        model_options=model_options,
        concurrency=args.concurrency,
        **overrides,
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
    from lipsynckit.cli_options import detector_lines
    from lipsynckit.faces import list_face_detectors
    from lipsynckit.registry import face_detector_plugins

    plugins = face_detector_plugins()
    for name, usable, reason in list_face_detectors():
        print(f"{name:12s} {'usable' if usable else 'not usable'}" + (f"  ({reason})" if reason else ""))
        entry = plugins.get(name)
        if entry is not None and entry.plugin is not None:
            for line in detector_lines(entry.plugin):
                print(f"{'':12s}   {line}")
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
    """``list``/``fetch``/``verify``; ``verify`` says what each file is (safetensors, torch zip, legacy
    pickle, TorchScript, unknown) and exits 2 on a missing, unknown-format, unsafe or wrong file."""
    from lipsynckit.errors import OfflineError
    from lipsynckit.registry import get_plugin, list_models
    from lipsynckit.weights import describe_file, download_file, locate, not_found_error, verify, where_to_get

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
        groups_found = {wf.any_of for wf in info.weights if wf.any_of and wf.key in found}
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
                needed = not wf.optional and not (wf.any_of and wf.any_of in groups_found)
                if args.action in ("fetch", "verify") and needed:
                    status = 2
                print(f"  {wf.key:12s} MISSING  {wf.filename}" + (" (optional)" if wf.optional else ""))
                if args.action != "list":
                    print("               " + str(exc).replace("\n", "\n               "))
                else:
                    print("               " + where_to_get(wf, info.name))
                continue
            note = ""
            if args.action == "verify":
                kind, verdict, problem = describe_file(path)
                try:
                    note = f"[{kind}] " + ("sha256 OK" if verify(path, wf) else "no known sha256")
                except LipSyncError as exc:
                    note, status = f"[{kind}] BAD: {exc.message}", 2
                if verdict != "ok":
                    note, status = f"[{kind}] {verdict.upper()}: {problem}", 2
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
    b.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="jobs in flight at once: on a GPU on threads of one loaded model, their frames batched "
        "together (default 4); on a CPU on as many worker processes (default: the usable cores)",
    )
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

    if argv is None:  # the process's own command line: a stop ends the process at once (see below)
        code = main(sys.argv[1:])
        if code in (130, 143):
            # Ctrl-C/SIGTERM: the clean-up ran on the way out; skip the interpreter's teardown of
            # torch and friends (seconds on a loaded machine) so that a stop takes well under 2 s
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    argv = list(argv)
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
    with _StopSignals() as stops:
        try:
            return int(args.func(args) or 0)
        except LipSyncError as exc:
            log.debug("details", exc_info=True)
            print(f"error: {exc.cli_text()}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("terminated" if stops.terminated else "interrupted", file=sys.stderr)
            return 143 if stops.terminated else 130


class _StopSignals:
    """Ctrl-C and SIGTERM end a command the same way: a ``KeyboardInterrupt`` in the main thread, so
    every ``with``/``finally`` on the way out runs (the sink removes its partial file) and the CLI
    prints one line (exit 130, or 143 for SIGTERM). A second signal while that clean-up runs ends the
    process at once, still with one line and no traceback (a later run removes what is left). Only
    installed when called on the main thread; the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.terminated = False
        self._count = 0
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        import signal

        self._count += 1
        self.terminated = self.terminated or signum == signal.SIGTERM
        if self._count > 1:
            sys.stderr.write("interrupted again: stopping now\n")
            sys.stderr.flush()
            os._exit(143 if self.terminated else 130)
        raise KeyboardInterrupt

    def __enter__(self) -> _StopSignals:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)


if __name__ == "__main__":
    sys.exit(main())
