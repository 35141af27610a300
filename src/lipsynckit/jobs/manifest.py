"""Job manifests: one row a job (CSV or JSONL), parsed into validated :class:`JobSpec` rows.

Columns: ``template``, ``audio``, ``output`` and optional ``model``, ``options`` (SyncOptions fields),
``model_options`` and ``segments`` (time ranges of the template to re-sync). In CSV the last three
hold JSON text. Relative inputs resolve against the manifest's folder, relative outputs against the
output folder. A row that does not parse becomes a :class:`BadRow`, so it fails alone.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lipsynckit.errors import LipSyncError
from lipsynckit.options import SyncOptions

#: output kinds a job may write: single files, so that size and checksum verify them
OUTPUT_SUFFIXES = (".mp4", ".mov", ".mkv")


class Segment(BaseModel):
    """A time range of the template (seconds) that is re-synced to ``audio`` (default: the row's audio),
    read from ``offset`` seconds into that audio."""

    model_config = ConfigDict(extra="forbid")

    start: float = Field(ge=0)
    end: float = Field(gt=0)
    audio: Path | None = None
    offset: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Segment:
        if self.end <= self.start:
            raise ValueError(f"segment end {self.end} must be after its start {self.start}")
        return self


class JobSpec(BaseModel):
    """One validated manifest row."""

    model_config = ConfigDict(extra="forbid")

    row: int = Field(description="1-based row number in the manifest")
    template: Path
    audio: Path | None = None
    output: Path
    model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    model_options: dict[str, Any] = Field(default_factory=dict)
    segments: list[Segment] = Field(default_factory=list)

    @field_validator("options")
    @classmethod
    def _known_options(cls, v: dict[str, Any]) -> dict[str, Any]:
        SyncOptions(**v)  # raises naming the unknown or invalid field
        return v

    @field_validator("output")
    @classmethod
    def _file_output(cls, v: Path) -> Path:
        if v.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ValueError(f"output must end in one of {', '.join(OUTPUT_SUFFIXES)}, got {v.name!r}")
        return v

    @model_validator(mode="after")
    def _audio_given(self) -> JobSpec:
        if self.audio is None and not (self.segments and all(s.audio for s in self.segments)):
            raise ValueError("audio is required (unless every segment names its own audio)")
        ends = sorted((s.start, s.end) for s in self.segments)
        for (_a0, a1), (b0, _b1) in zip(ends, ends[1:], strict=False):
            if b0 < a1:
                raise ValueError(f"segments overlap at {b0} s")
        return self

    def key(self) -> str:
        """What identifies the job's result: a changed row (audio, model, options...) runs again."""
        d = self.model_dump(mode="json", exclude={"row"})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def group(self) -> tuple[str, str, str]:
        """Rows sharing a template, model and options share one prepared template (avatar cache)."""
        return (str(self.template), self.model or "", json.dumps(self.options, sort_keys=True))


class BadRow(BaseModel):
    """A manifest row that could not be parsed: its job fails with this message."""

    row: int
    output: str | None = None
    message: str


def _json_cell(value: Any, name: str) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"column {name!r} is not valid JSON ({e.msg})") from e


def _resolve(value: Any, base: Path) -> Any:
    if value in (None, ""):
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def parse_row(raw: dict[str, Any], row: int, base: Path, out_dir: Path) -> JobSpec | BadRow:
    """One raw row (strings from CSV or values from JSON) into a job, or the reason it is not one."""
    data = {k.strip(): v for k, v in raw.items() if k is not None and v not in (None, "")}
    output = data.get("output")
    try:
        for name in ("options", "model_options", "segments"):
            if name in data:
                parsed = _json_cell(data[name], name)
                if parsed is None:
                    del data[name]
                else:
                    data[name] = parsed
        data["template"] = _resolve(data.get("template"), base)
        data["audio"] = _resolve(data.get("audio"), base)
        data["output"] = _resolve(output, out_dir)
        for seg in data.get("segments") or []:
            if isinstance(seg, dict) and seg.get("audio"):
                seg["audio"] = _resolve(seg["audio"], base)
        return JobSpec(row=row, **{k: v for k, v in data.items() if v is not None})
    except (ValidationError, ValueError, TypeError) as e:
        msg = str(e).replace("\n", "; ") if not isinstance(e, ValidationError) else _short(e)
        resolved = _resolve(output, out_dir) if isinstance(output, str) else None
        return BadRow(row=row, output=str(resolved) if resolved else None, message=msg)


def _short(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(x) for x in err["loc"]) or "row"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def read_manifest(path: str | Path, out_dir: str | Path | None = None) -> list[JobSpec | BadRow]:
    """Every row of a ``.csv`` or ``.jsonl`` manifest, in order (rows that fail to parse included)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise LipSyncError("manifest not found", path=p, stage="manifest", remedy="check the path")
    base = p.resolve().parent
    out = Path(out_dir).expanduser().resolve() if out_dir is not None else base
    rows: list[tuple[int, dict[str, Any] | str]] = []
    if p.suffix.lower() == ".csv":
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"template", "output"} - set(reader.fieldnames or [])
            if missing:
                raise LipSyncError(
                    f"manifest has no column {', '.join(sorted(missing))}",
                    path=p,
                    stage="manifest",
                    remedy="the header row needs template,audio,output (and optionally model,options,segments)",
                )
            rows = [(i, r) for i, r in enumerate(reader, start=1)]
    elif p.suffix.lower() in (".jsonl", ".ndjson"):
        with open(p, encoding="utf-8") as f:
            n = 0
            for line in f:
                if not line.strip():
                    continue
                n += 1
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    rows.append((n, f"not valid JSON ({e.msg})"))
                    continue
                rows.append((n, obj if isinstance(obj, dict) else "a row must be a JSON object"))
    else:
        raise LipSyncError(
            "unknown manifest format", path=p, stage="manifest", remedy="name it .csv or .jsonl"
        )
    jobs = [parse_row(r, i, base, out) if isinstance(r, dict) else BadRow(row=i, message=r) for i, r in rows]
    seen: dict[Path, int] = {}
    for k, j in enumerate(jobs):
        if isinstance(j, JobSpec):
            first = seen.setdefault(j.output, j.row)
            if first != j.row:
                jobs[k] = BadRow(
                    row=j.row, output=str(j.output), message=f"output is the same as row {first}'s"
                )
    return jobs
