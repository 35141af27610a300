"""Model options on the command line, made from each plugin's own options model.

A plugin declares ``options_model`` (a pydantic model) on its :class:`~lipsynckit.model.ModelPlugin`;
with ``--model NAME`` the ``sync``, ``batch`` and ``bench`` commands gain one flag per field of that
model (``Literal`` → choices, ``bool`` → ``--x/--no-x``, the field's description → help, its default
shown but kept in one place: the model). ``--model-help NAME`` prints the same page. ``-O key=value``
sets any option, and ``--fp16`` is the one precision switch: it asks for ``dtype=float16``, which every
plugin honours its own way (or ignores, like the weight-free viseme), so ``--model auto`` may always
fall back. A third-party plugin gets its flags without touching core.
"""

from __future__ import annotations

import argparse
import json
import types
from collections.abc import Sequence
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from lipsynckit.errors import LipSyncError

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
    return {"type": str, "metavar": "VALUE"}  # tuples, lists: pydantic parses the text


def _taken(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def add_model_flags(parser: argparse.ArgumentParser, name: str, model: type[BaseModel]) -> list[str]:
    """One flag per field of ``model``; fields whose flag the command already has stay ``-O`` only."""
    taken = _taken(parser)
    skipped = [f for f in model.model_fields if f"--{f.replace('_', '-')}" in taken]
    group = parser.add_argument_group(
        f"{name} options (from {model.__name__})",
        f"also settable with -O KEY=VALUE: {', '.join(skipped)}" if skipped else None,
    )
    for field, info in model.model_fields.items():
        flag = f"--{field.replace('_', '-')}"
        if flag in taken:
            continue
        default = info.get_default(call_default_factory=True)
        text = (info.description or "").replace("%", "%%")
        group.add_argument(
            flag,
            dest=DEST_PREFIX + field,
            default=argparse.SUPPRESS,
            help=f"{text} (default: {default!r})".strip(),
            **_flag_kwargs(info.annotation),
        )
    return skipped


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
    """The options page of one model: its flags, choices, defaults and descriptions."""
    model = options_model(name)
    if model is None:
        return f"{name} takes no options"
    parser = argparse.ArgumentParser(
        prog=f"lipsynckit sync --model {name}", add_help=False, usage=argparse.SUPPRESS
    )
    for core in ("--fp16", "--batch-size"):  # the command's own flags win; such fields stay -O only
        parser.add_argument(core, help=argparse.SUPPRESS)
    add_model_flags(parser, name, model)
    return parser.format_help()


def handle_model_help(argv: Sequence[str]) -> str | None:
    """The page ``--model-help NAME`` asks for, if it does."""
    name = _prescan(argv).model_help
    return model_help(name) if name else None


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


def dtype_from_args(args: argparse.Namespace) -> Any:
    """``--fp16`` → ``torch.float16`` (the precision knob every plugin honours), else None."""
    if not getattr(args, "fp16", False):
        return None
    import torch

    return torch.float16
