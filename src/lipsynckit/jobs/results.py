"""What a manifest run returns: one status row per manifest row, readable at a glance.

:class:`ManifestResult` is a list of :class:`~lipsynckit.jobs.status.JobStatus` (so code that iterates
rows keeps working) with a plain-text table as its ``repr``, an HTML table in notebooks, the counts,
and :meth:`~ManifestResult.to_pandas` when pandas is installed.
"""

from __future__ import annotations

import html
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lipsynckit.jobs.status import JobStatus

log = logging.getLogger(__name__)

_COLUMNS = ("row", "state", "output", "seconds", "frames", "error")


def _error_text(st: JobStatus) -> str:
    if st.error is None:
        return ""
    where = f"[{st.error.stage}] " if st.error.stage else ""
    return f"{where}{st.error.message}"


def _cells(st: JobStatus) -> dict[str, Any]:
    return {
        "row": st.row,
        "state": st.state,
        "output": Path(st.output).name if st.output else "",
        "seconds": st.seconds,
        "frames": st.frames,
        "error": _error_text(st),
    }


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class ManifestResult(list[JobStatus]):
    """The status rows of a manifest run, in manifest order."""

    def __init__(self, rows: Iterable[JobStatus] = (), status_path: str | Path | None = None) -> None:
        super().__init__(sorted(rows, key=lambda s: s.row))
        self.status_path = Path(status_path) if status_path is not None else None

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "skipped": 0, "failed": 0}
        for r in self:
            out[r.state] += 1
        return out

    @property
    def failed(self) -> list[JobStatus]:
        return [r for r in self if r.state == "failed"]

    @property
    def ok(self) -> bool:
        """Whether every row succeeded (ran now or verified from an earlier pass)."""
        return not self.failed

    def summary(self) -> str:
        c = self.counts()
        return f"{len(self)} jobs: {c['ok']} ok, {c['skipped']} skipped (already done), {c['failed']} failed"

    def failure_lines(self) -> list[str]:
        """One line per failed row: the row, stage, file, message and what to do."""
        lines = []
        for r in self.failed:
            if r.error is None:
                continue
            where = " ".join(
                x for x in (f"[{r.error.stage}]" if r.error.stage else "", r.error.file or "") if x
            )
            text = f"row {r.row} failed: {where} {r.error.message}".replace("  ", " ")
            if r.error.remedy:
                text += f" -> {r.error.remedy}"
            lines.append(text)
        return lines

    def __repr__(self) -> str:
        rows = [_cells(r) for r in self]
        widths = {c: len(c) for c in _COLUMNS}
        limit = {"output": 32, "error": 70}
        for r in rows:
            for c in _COLUMNS:
                widths[c] = max(widths[c], min(len(str(r[c])), limit.get(c, 12)))
        head = "  ".join(c.ljust(widths[c]) for c in _COLUMNS)
        body = [
            "  ".join(_clip(str(r[c]), widths[c]).ljust(widths[c]) for c in _COLUMNS).rstrip() for r in rows
        ]
        return "\n".join([f"ManifestResult({self.summary()})", head.rstrip(), *body])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in _cells(r).values()) + "</tr>"
            for r in self
        )
        return f"<p>{html.escape(self.summary())}</p><table><tr>{head}</tr>{body}</table>"

    def to_pandas(self) -> Any:
        """A DataFrame with one row per job (every status field; the error as text)."""
        try:
            import pandas as pd
        except ImportError as e:
            from lipsynckit.errors import LipSyncError

            raise LipSyncError("pandas is not installed", stage="results", remedy="pip install pandas") from e
        records = []
        for r in self:
            d = r.model_dump(exclude={"error"})
            d["error"] = _error_text(r) or None
            d["remedy"] = r.error.remedy if r.error is not None else None
            records.append(d)
        return pd.DataFrame.from_records(records, columns=[*JobStatus.model_fields, "remedy"])


def logging_configured() -> bool:
    """Whether lipsynckit's log records reach a real handler (the CLI's, or the user's)."""
    lg: logging.Logger | None = logging.getLogger("lipsynckit")
    while lg is not None:
        if any(not isinstance(h, logging.NullHandler) for h in lg.handlers):
            return True
        if not lg.propagate:
            return False
        lg = lg.parent
    return False


def announce(result: ManifestResult) -> None:
    """The closing summary and one line per failure: logged when logging is set up, else written to
    stderr (a notebook shows it under the cell) so that failures are never silent."""
    lines = [result.summary(), *result.failure_lines()]
    if logging_configured():
        for line in lines[1:]:
            log.warning("%s", line)
        log.info("%s", lines[0])
    else:
        sys.stderr.write("\n".join(lines) + "\n")
