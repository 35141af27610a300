"""Model options on the command line, made from each plugin's own options model.

A plugin declares ``options_model`` (a pydantic model) on its :class:`~lipsynckit.model.ModelPlugin`;
with ``--model NAME`` the ``sync``, ``batch`` and ``bench`` commands gain one flag per field of that
model (``Literal`` → choices, ``bool`` → ``--x/--no-x``, the field's description → help, its default
shown but kept in one place: the model). ``--model-help NAME`` prints the same page. ``-O key=value``
sets any option, and ``--dtype`` (``--fp16`` = ``--dtype float16``) is the one precision switch: a
model honours the dtypes its ``ModelInfo.dtypes`` lists and ignores any other with one line saying so
(the weight-free viseme runs float32 only), so ``--model auto`` may always fall back. A third-party plugin gets its flags without touching core.

The run's own options (:class:`~lipsynckit.options.SyncOptions`) become flags the same way
(:func:`add_sync_flags`), grouped for ``--help``; the few spellings older than the fields are kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from lipsynckit.errors import LipSyncError
from lipsynckit.options import SyncOptions

log = logging.getLogger(__name__)

DEST_PREFIX = "model_option__"
MODEL_COMMANDS = ("sync", "batch")  # bench takes --models a,b: its options go by -O


def options_model(name: str) -> type[BaseModel] | None:
    """The options model a registered plugin declares (None when it declares none)."""
    from lipsynckit.registry import get_plugin

    return get_plugin(name).options_model


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _flag_kwargs(annotation: Any) -> dict[str, Any]:
    """argparse keywords for one field: choices for a Literal, a --x/--no-x pair for a bool."""
    ann = _unwrap_optional(annotation)
    if ann is bool:
        return {"action": argparse.BooleanOptionalAction}
    if get_origin(ann) is Literal:
        choices = [c for c in get_args(ann) if c is not None]
        return {"choices": choices, "type": type(choices[0])}
    if ann in (int, float, str):
        return {"type": ann, "metavar": ann.__name__.upper()}
    if ann is Path:
        return {"type": str, "metavar": "PATH"}
    return {"type": str, "metavar": "VALUE"}  # tuples, lists: pydantic parses the text


def bounds(info: Any) -> str:
    """A field's ``ge``/``gt``/``le``/``lt`` bounds as text (``>= 1, <= 4``); empty when unbounded."""
    out = []
    for meta in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return ", ".join(out)


def _help(info: Any, show_none: bool = True) -> str:
    """A flag's help: the field's description, its default (kept in the model, shown here) and bounds."""
    default = info.get_default(call_default_factory=True)
    text = (info.description or "").replace("%", "%%")
    limits = bounds(info)
    if show_none or default is not None:
        return f"{text} (default: {default!r}{'; ' + limits if limits else ''})".strip()
    return f"{text} ({limits})" if limits else text


def _taken(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def add_model_flags(parser: argparse.ArgumentParser, name: str, model: type[BaseModel]) -> list[str]:
    """One flag per field of ``model``; fields whose flag the command already has stay ``-O`` only."""
    taken = _taken(parser)
    skipped = [f for f in model.model_fields if f"--{f.replace('_', '-')}" in taken]
    group = parser.add_argument_group(
        f"{name} options (from {model.__name__})",
        "also settable with -O KEY=VALUE: "
        + ", ".join(
            f"{f} ({bounds(model.model_fields[f])})" if bounds(model.model_fields[f]) else f for f in skipped
        )
        if skipped
        else None,
    )
    for field, info in model.model_fields.items():
        flag = f"--{field.replace('_', '-')}"
        if flag in taken:
            continue
        group.add_argument(
            flag,
            dest=DEST_PREFIX + field,
            default=argparse.SUPPRESS,
            help=_help(info),
            **_flag_kwargs(info.annotation),
        )
    return skipped


SYNC_DEST = "sync_option__"
#: SyncOptions fields shown as flags, by help group; every other field is in SYNC_API_ONLY
SYNC_GROUPS: dict[str, tuple[str, ...]] = {
    "faces": (
        "detector",
        "detector_options",
        "face_boxes",
        "face_select",
        "face_index",
        "face_box",
        "exact_detection",
        "detect_every",
        "face_workers",
    ),
    "silence": ("gate", "gate_hangover_s", "gate_fade_frames", "vad", "rest"),
    "output": (
        "length_mode",
        "fps",
        "output_mode",
        "crf",
        "preset",
        "encode_threads",
        "batch_size",
        "prepare_workers",
        "avatar_dir",
        "keep_going",
        "allow_silent_audio",
        "max_pixels",
        "frame_queue_bytes",
        "progress",
    ),
}
#: fields with no flag (set through the Python API)
SYNC_API_ONLY = ("extra",)
#: flags spelled otherwise than ``--field-name`` (older than the field)
SYNC_FLAG_NAMES = {"gate_hangover_s": "--gate-hangover", "allow_silent_audio": "--allow-silent"}
#: flags that set a field to one value: flag -> (field, value, help)
SYNC_SHORTHANDS = {
    "--lossless": (
        "output_mode",
        "ffv1",
        "lossless FFV1 output, the same as --output-mode ffv1 (-o must be .mkv or a folder; default name .mkv)",
    ),
}
#: a field given on the command line that picks a value of another: --face-index 2 selects by index
SYNC_IMPLIES = {"face_index": ("face_select", "index"), "face_box": ("face_select", "box")}


def sync_flag(field: str) -> str:
    """The command-line spelling of a SyncOptions field."""
    return SYNC_FLAG_NAMES.get(field, f"--{field.replace('_', '-')}")


def add_sync_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per SyncOptions field (see :data:`SYNC_GROUPS`), made as the model flags are; a flag
    the command already has (sync's ``--avatar-dir``) is left to it. Nothing given, nothing set: the
    defaults stay in SyncOptions."""
    taken = _taken(parser)
    fields = SyncOptions.model_fields
    for title, names in SYNC_GROUPS.items():
        group = parser.add_argument_group(title)
        for field in names:
            if sync_flag(field) in taken:
                continue
            info = fields[field]
            group.add_argument(
                sync_flag(field),
                dest=SYNC_DEST + field,
                default=argparse.SUPPRESS,
                help=_help(info, show_none=False),
                **_flag_kwargs(info.annotation),
            )
            for flag, (target, value, text) in SYNC_SHORTHANDS.items():
                if target == field:
                    group.add_argument(
                        flag,
                        dest=SYNC_DEST + field,
                        action="store_const",
                        const=value,
                        default=argparse.SUPPRESS,
                        help=text,
                    )


def sync_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The SyncOptions fields a parsed command line sets (only those given)."""
    opts: dict[str, Any] = {
        key[len(SYNC_DEST) :]: value for key, value in vars(args).items() if key.startswith(SYNC_DEST)
    }
    for names in SYNC_GROUPS.values():
        for field in names:  # a flag the command had of its own, under the field's name
            if field not in opts and getattr(args, field, None) is not None:
                opts[field] = getattr(args, field)
    for field, (target, value) in SYNC_IMPLIES.items():
        if field in opts:
            opts.setdefault(target, value)
    return opts


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _prescan(argv: Sequence[str]) -> argparse.Namespace:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", "-m")
    pre.add_argument("--model-help")
    return pre.parse_known_args(list(argv))[0]


def add_flags_for_argv(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Give the model commands the flags of the model ``argv`` names (``--model NAME``)."""
    name = _prescan(argv).model
    command = next((a for a in argv if a in MODEL_COMMANDS), None)
    if not name or name == "auto" or command is None:
        return
    sub = _subcommands(parser).get(command or "")
    if sub is None:
        return
    try:
        model = options_model(name)
    except LipSyncError:
        return  # an unknown or broken model is reported when the command loads it
    if model is not None:
        add_model_flags(sub, name, model)


def model_help(name: str) -> str:
    """The options page of one model: its flags, choices, defaults, bounds and descriptions, and the
    dtypes it honours."""
    from lipsynckit.registry import get_plugin

    info = get_plugin(name).info
    dtypes = f"dtypes (--dtype): {', '.join(info.dtypes)}; any other is ignored with one line saying so\n"
    model = options_model(name)
    if model is None:
        return f"{name} takes no options\n{dtypes}"
    parser = argparse.ArgumentParser(
        prog=f"lipsynckit sync --model {name}", add_help=False, usage=argparse.SUPPRESS
    )
    sync_flags = [sync_flag(f) for names in SYNC_GROUPS.values() for f in names]
    for core in (
        "--fp16",
        "--dtype",
        "--official",
        *sync_flags,
    ):  # the command's own flags win; such fields stay -O only
        parser.add_argument(core, help=argparse.SUPPRESS)
    add_model_flags(parser, name, model)
    return parser.format_help() + dtypes


def detector_lines(plugin: Any) -> list[str]:
    """What ``lipsynckit detectors`` says of one detector plugin beyond usable or not: its licence,
    landmarks and options (each with its default, bounds and description), set with
    ``--detector-options '{"name": value}'``."""
    info = plugin.info
    nc = "  [NON-COMMERCIAL]" if info.non_commercial else ""
    points = f"{info.landmarks} points" if info.landmarks else "none (boxes only)"
    out = [
        info.description or info.display_name,
        f"licence:   {info.license}{nc}",
        f"landmarks: {points}",
    ]
    fields = plugin.options_model.model_fields
    if not fields:
        return [*out, "options:   none"]
    out.append("options:   (--detector-options JSON)")
    out.extend(f"  {field}: {_help(f_info).replace('%%', '%')}" for field, f_info in fields.items())
    return out


def handle_model_help(argv: Sequence[str]) -> str | None:
    """The page ``--model-help NAME`` asks for, if it does."""
    name = _prescan(argv).model_help
    return model_help(name) if name else None


def official_settings(
    args: argparse.Namespace, sync: dict[str, Any], model_options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """With ``--official``: the run's settings and model options the model declares as its official
    pipeline (``ModelPlugin.official_sync`` / ``official_options``) under the ones given on the command
    line; without it, both unchanged."""
    if not getattr(args, "official", False):
        return sync, model_options
    from lipsynckit.registry import get_plugin

    name = getattr(args, "model", None)
    if not name or name == "auto":
        raise LipSyncError(
            "--official needs a model: each model has its own official pipeline",
            stage="options",
            remedy="add --model NAME (list-models names them)",
        )
    plugin = get_plugin(name)
    if not plugin.official_sync and not plugin.official_options:
        raise LipSyncError(
            f"model {name!r} declares no official pipeline to reproduce",
            stage="options",
            remedy="leave --official out",
        )
    merged = {**plugin.official_sync, **sync}, {**plugin.official_options, **model_options}
    said = ", ".join(f"{k}={v}" for k, v in sorted({**merged[0], **merged[1]}.items()))
    log.info("--official: %s as its official pipeline (%s)", name, said)
    return merged


def model_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The model options a parsed command line asks for: generated flags, then ``-O key=value`` pairs."""
    opts: dict[str, Any] = {
        key[len(DEST_PREFIX) :]: value for key, value in vars(args).items() if key.startswith(DEST_PREFIX)
    }
    for kv in getattr(args, "option", None) or []:
        if "=" not in kv:
            raise LipSyncError(f"--option expects key=value, got {kv!r}", stage="options")
        k, v = kv.split("=", 1)
        try:
            opts[k] = json.loads(v)
        except json.JSONDecodeError:
            opts[k] = v
    return opts


#: ``--dtype``: the one precision knob (``--fp16`` = float16); each model honours its ``ModelInfo.dtypes``
DTYPE_CHOICES = ("float32", "float16", "bfloat16", "int8")


def dtype_from_args(args: argparse.Namespace) -> Any:
    """``--dtype NAME`` (``--fp16``: float16) → ``torch.NAME``; None when not given (the model's own)."""
    name = getattr(args, "dtype", None)
    if not name:
        return None
    import torch

    return getattr(torch, name)
