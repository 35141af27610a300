"""Every error class lives in lipsynckit/errors.py, and its docstring draws the whole hierarchy."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import lipsynckit.errors as errors

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = [ROOT / "src", *sorted((ROOT / "plugins").glob("*/src"))]  # the core and the plugins


def test_no_error_class_is_defined_outside_errors_py() -> None:
    outside = []
    for path in (path for root in SOURCE_ROOTS for path in root.rglob("*.py")):
        if path == Path(errors.__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and (
                node.name.endswith("Error") or node.name.endswith("Exception")
            ):
                outside.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not outside, outside


def test_the_docstring_names_every_error_class_under_its_parent() -> None:
    doc = errors.__doc__ or ""
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.LipSyncError)
    ]
    assert len(classes) >= 14
    tree = [
        line
        for line in doc.splitlines()
        if "Error" in line and ("──" in line or line.strip().startswith("LipSyncError"))
    ]
    depth = {}
    for line in tree:
        name = next(w for w in line.replace("─", " ").split() if w.endswith("Error"))
        depth[name] = len(line) - len(line.lstrip(" │├└─"))
    for cls in classes:
        assert cls.__name__ in depth, f"{cls.__name__} missing from the errors.py docstring"
        parent = cls.__bases__[0]
        if parent is not Exception:
            assert depth[parent.__name__] < depth[cls.__name__], (
                f"{cls.__name__} not drawn under {parent.__name__}"
            )
