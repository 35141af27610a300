"""Progress bars that render as widgets in notebooks and as text in terminals."""

from __future__ import annotations

import logging
import sys
from typing import Any


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass


def in_notebook() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[attr-defined]

        shell = get_ipython()
        return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
    except Exception:  # noqa: BLE001 - no IPython means no notebook
        return False


def progress_bar(
    total: int | None, desc: str, unit: str = "it", enable: bool = True, respect_logging: bool = True
) -> Any:
    """A tqdm bar (``tqdm.auto`` in notebooks); silent when disabled or when logging is quiet.

    With ``respect_logging=False`` only a level set on purpose (``-q``, or the user's
    ``setLevel``) silences it, so a notebook without logging set up still sees progress.
    """
    lg = logging.getLogger("lipsynckit")
    level = lg.getEffectiveLevel() if respect_logging else (lg.level or logging.INFO)
    if not enable or level > logging.INFO:
        return _NullBar()
    if in_notebook():
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

        if not sys.stderr.isatty():
            return tqdm(total=total, desc=desc, unit=unit, mininterval=5.0, file=sys.stderr)
    return tqdm(total=total, desc=desc, unit=unit)
