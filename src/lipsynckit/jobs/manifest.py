"""Job manifests: one row a job (CSV or JSONL), parsed into validated :class:`JobSpec` rows.

Columns: ``template``, ``audio``, ``output`` and optional ``model``, ``options`` (SyncOptions fields),
``model_options`` and ``segments`` (time ranges of the template to re-sync). In CSV the last three
hold JSON text. Relative inputs resolve against the manifest's folder, relative outputs against the
output folder, and outputs stay in that folder (``..`` escapes and absolute paths elsewhere are refused
unless ``allow_outside``). Every output is normalised before the duplicate check and may not be any
row's input. A row that does not parse becomes a :class:`BadRow` naming its column and the fix, so it
fails alone.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lipsynckit.errors import LipSyncError, RowError
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
    """A manifest row that could not be used: its job fails with this message, naming the column and
    saying what would fix it."""

    row: int
    output: str | None = None
    message: str
    column: str | None = None
    remedy: str = "fix this row of the manifest"


#: the columns a manifest may have
COLUMNS = ("template", "audio", "output", "model", "options", "model_options", "segments")
#: a path cell longer than this is not a path (PATH_MAX); a JSON cell longer than this is refused
MAX_PATH_CHARS = 4096
MAX_JSON_CHARS = 1 << 20

_REMEDY = {
    "template": "give the path of a video or image (relative paths start at the manifest's folder)",
    "audio": "give the path of an audio file (relative paths start at the manifest's folder)",
    "output": "name a .mp4, .mov or .mkv file inside the output folder (-o), used by no other row",
    "model": "use a model name from `lipsynckit list-models`, or leave the cell empty",
    "options": 'write a JSON object of sync options, e.g. {"crf": 20} (see `lipsynckit sync --help`)',
    "model_options": 'write a JSON object of model options, e.g. {"face_detector": "scrfd"}',
    "segments": 'write a JSON list of non-overlapping ranges, e.g. [{"start": 1.0, "end": 2.5}]',
    "row": "fix this row of the manifest",
}


def _readable(err: Any) -> str:
    """One pydantic error in plain words (no "Input should be", no "Value error,")."""
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "value_error":
        return str(ctx.get("error", err.get("msg", ""))).removeprefix("Value error, ")
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        key = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
        return f"must be {bounds[kind]} {ctx.get(key[kind])} (got {err.get('input')!r})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {err.get('input')!r})"
    msg = str(err.get("msg", "is not valid"))
    msg = msg.replace("Input should be", "should be").replace("Value error, ", "")
    return f"{msg} (got {_clip(err.get('input'))})"


def _clip(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _row_error(e: ValidationError, default_column: str | None = None) -> RowError:
    """The first problem of a validation error, as the column it concerns and plain words."""
    err = e.errors()[0]
    loc = [str(x) for x in err.get("loc", ())]
    if default_column is not None:
        field = ".".join(loc)
        column = default_column
        text = f"{field}: {_readable(err)}" if field else _readable(err)
    else:
        column = loc[0] if loc else "row"
        rest = ".".join(
            f"segment {int(x) + 1}" if column == "segments" and x.isdigit() else x for x in loc[1:]
        )
        text = f"{rest}: {_readable(err)}" if rest else _readable(err)
        if err.get("type") == "extra_forbidden" and len(loc) == 1:
            return RowError(
                column,
                f"unknown column {column!r}",
                f"remove the column or rename it to one of {', '.join(COLUMNS)}",
            )
        if column == "row":
            column = "audio" if "audio is required" in text else "segments" if "segment" in text else "row"
    extra = len(e.errors()) - 1
    if extra:
        text += f" (and {extra} more problem{'s' if extra > 1 else ''} in this row)"
    return RowError(column, text)


def _json_cell(value: Any, name: str) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    if len(text) > MAX_JSON_CHARS:
        raise RowError(name, f"the cell holds {len(text):,} characters (at most {MAX_JSON_CHARS:,})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RowError(name, f"not valid JSON ({e.msg} at character {e.pos})") from e
    except RecursionError as e:
        raise RowError(name, "JSON nested too deeply") from e


def _path_cell(value: Any, base: Path, column: str) -> Path | None:
    """A path cell made absolute against ``base`` and normalised (``..`` and ``.`` removed)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise RowError(column, f"must be a path (text), got {_clip(value)}")
    if len(value) > MAX_PATH_CHARS:
        raise RowError(column, f"the cell holds {len(value):,} characters, more than any path")
    if "\x00" in value:
        raise RowError(column, "the path contains a NUL character")
    p = Path(value).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _real(p: Path) -> Path:
    """Where a path really points (symbolic links followed), for comparing outputs with inputs."""
    try:
        return Path(os.path.realpath(p))
    except (OSError, ValueError):
        return p


def _options_cell(value: Any, column: str) -> Any:
    if column == "options" and isinstance(value, dict):
        try:
            SyncOptions(**value)
        except ValidationError as e:
            raise _row_error(e, default_column="options") from None
        except TypeError as e:
            raise RowError("options", f"option names must be text ({e})") from None
    if value is not None and not isinstance(value, dict if column != "segments" else list):
        kind = "a JSON object" if column != "segments" else "a JSON list"
        raise RowError(column, f"must be {kind}, got {_clip(value)}")
    return value


def parse_row(
    raw: dict[str, Any], row: int, base: Path, out_dir: Path, allow_outside: bool = False
) -> JobSpec | BadRow:
    """One raw row (strings from CSV or values from JSON) into a job, or the reason it is not one.

    ``out_dir`` must be absolute and normalised; an output outside it is refused unless
    ``allow_outside``.
    """
    data = {str(k).strip(): v for k, v in raw.items() if k is not None and v not in (None, "")}
    output: Path | None = None
    try:
        if not isinstance(data.get("output", ""), str):
            raise RowError("output", f"must be a file name (text), got {_clip(data['output'])}")
        raw_output = data.get("output")
        output = _path_cell(raw_output, out_dir, "output")
        for name in ("options", "model_options", "segments"):
            if name in data:
                parsed = _options_cell(_json_cell(data[name], name), name)
                if parsed is None:
                    del data[name]
                else:
                    data[name] = parsed
        data["template"] = _path_cell(data.get("template"), base, "template")
        data["audio"] = _path_cell(data.get("audio"), base, "audio")
        data["output"] = output
        if "model" in data and not isinstance(data["model"], str):
            raise RowError("model", f"must be a model name (text), got {_clip(data['model'])}")
        for seg in data.get("segments") or []:
            if isinstance(seg, dict) and seg.get("audio"):
                seg["audio"] = _path_cell(seg["audio"], base, "segments")
        if output is not None and not allow_outside:
            real_out, real_root = _real(output), _real(out_dir)
            if not real_out.is_relative_to(real_root) or real_out == real_root:
                raise RowError(
                    "output",
                    f"output {raw_output} is outside the output folder {out_dir}",
                    "name a file inside the output folder (-o), or pass --allow-outside "
                    "(allow_outside=True) to write there on purpose",
                )
        return JobSpec(row=row, **{k: v for k, v in data.items() if v is not None})
    except (ValidationError, RowError) as e:
        err = _row_error(e) if isinstance(e, ValidationError) else e
        remedy = err.remedy or _REMEDY.get(err.column, _REMEDY["row"])
        return BadRow(row=row, output=_text(output), column=err.column, message=err.message, remedy=remedy)
    except (ValueError, TypeError) as e:
        return BadRow(row=row, output=_text(output), message=str(e).replace("\n", "; "))


def _text(p: Path | None) -> str | None:
    return str(p) if p is not None else None


def _manifest_error(path: Path, message: str, remedy: str) -> LipSyncError:
    return LipSyncError(message, path=path, stage="manifest", remedy=remedy)


def _csv_rows(p: Path) -> list[tuple[int, dict[str, Any] | str]]:
    """The data rows of a CSV manifest (a BOM and CRLF line ends are fine)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, MAX_JSON_CHARS + 1))
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows: list[tuple[int, dict[str, Any] | str]] = []
            rows_end = 0
            try:
                names = [str(n).strip() for n in reader.fieldnames or []]
                missing = {"template", "output"} - set(names)
                if missing:
                    raise _manifest_error(
                        p,
                        f"manifest has no column {', '.join(sorted(missing))} (its header: "
                        f"{_clip(','.join(names))})",
                        "the first line must name the columns: template,audio,output (and optionally "
                        "model,options,model_options,segments)",
                    )
                unknown = [n for n in names if n and n not in COLUMNS]
                if unknown:
                    raise _manifest_error(
                        p,
                        f"manifest has unknown column {', '.join(map(repr, unknown))}",
                        f"remove it or rename it to one of {', '.join(COLUMNS)}",
                    )
                rows_end = reader.line_num  # the line the last whole record ended on
                for r in reader:
                    rows.append((len(rows) + 1, r))
                    rows_end = reader.line_num
                return rows
            except csv.Error as e:
                raise _manifest_error(
                    p,
                    f"row {len(rows) + 1} (from line {rows_end + 1}): not readable as CSV ({e})",
                    "check that line for an unclosed quote or binary data; cells hold paths or short "
                    "JSON text",
                ) from None
    except UnicodeDecodeError as e:
        raise _manifest_error(
            p, f"not UTF-8 text (byte {e.start})", "save the manifest as UTF-8 CSV or JSONL"
        ) from None
    finally:
        csv.field_size_limit(limit)


def _jsonl_rows(p: Path) -> list[tuple[int, dict[str, Any] | str]]:
    rows: list[tuple[int, dict[str, Any] | str]] = []
    try:
        with open(p, encoding="utf-8-sig") as f:
            n = 0
            for line in f:
                if not line.strip():
                    continue
                n += 1
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    rows.append((n, f"not valid JSON ({e.msg} at character {e.pos})"))
                    continue
                except RecursionError:
                    rows.append((n, "JSON nested too deeply"))
                    continue
                rows.append((n, obj if isinstance(obj, dict) else "a row must be a JSON object"))
    except UnicodeDecodeError as e:
        raise _manifest_error(
            p, f"not UTF-8 text (byte {e.start})", "save the manifest as UTF-8 JSONL"
        ) from None
    return rows


def read_manifest(
    path: str | Path, out_dir: str | Path | None = None, *, allow_outside: bool = False
) -> list[JobSpec | BadRow]:
    """Every row of a ``.csv`` or ``.jsonl`` manifest, in order (rows that fail to parse included).

    Outputs resolve under ``out_dir`` (default: the manifest's folder) and must stay there unless
    ``allow_outside``; an output that is another row's output or any row's input fails its row.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise LipSyncError("manifest not found", path=p, stage="manifest", remedy="check the path")
    base = p.resolve().parent
    out = Path(os.path.normpath(Path(out_dir).expanduser().absolute())) if out_dir is not None else base
    suffix = p.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(p)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(p)
    else:
        raise _manifest_error(p, "unknown manifest format", "name it .csv or .jsonl")
    jobs: list[JobSpec | BadRow] = [
        parse_row(r, i, base, out, allow_outside)
        if isinstance(r, dict)
        else BadRow(row=i, message=r, remedy="write each row as one JSON object on its own line")
        for i, r in rows
    ]
    return check_outputs(jobs, manifest=p)


def _inputs(j: JobSpec) -> list[tuple[str, Path]]:
    found = [("template", j.template)]
    if j.audio is not None:
        found.append(("audio", j.audio))
    found += [(f"segment {k + 1} audio", s.audio) for k, s in enumerate(j.segments) if s.audio is not None]
    return found


def check_outputs(jobs: Sequence[JobSpec | BadRow], manifest: Path | None = None) -> list[JobSpec | BadRow]:
    """Rows whose (normalised, links followed) output repeats an earlier row's output, or is any row's
    input (or the manifest), become :class:`BadRow` naming the other row."""
    inputs: dict[Path, str] = {}
    if manifest is not None:
        inputs[_real(manifest)] = "the manifest itself"
    for j in jobs:
        if isinstance(j, JobSpec):
            for what, path in _inputs(j):
                inputs.setdefault(_real(path), f"row {j.row}'s {what}")
    out: list[JobSpec | BadRow] = []
    seen: dict[Path, int] = {}
    for j in jobs:
        if isinstance(j, JobSpec):
            real = _real(j.output)
            clash = inputs.get(real)
            first = seen.setdefault(real, j.row)
            if clash is not None:
                j = BadRow(
                    row=j.row,
                    output=str(j.output),
                    column="output",
                    message=f"output {j.output} is {clash} (an input, which would be overwritten)",
                    remedy="name a new output file",
                )
            elif first != j.row:
                j = BadRow(
                    row=j.row,
                    output=str(j.output),
                    column="output",
                    message=f"output is the same file as row {first}'s",
                    remedy="give every row its own output file",
                )
        out.append(j)
    return out


def distinct_output_names(audios: Sequence[str | Path], suffix: str = ".mp4") -> list[str]:
    """Output file names for positional ``batch``: each audio's stem, or, where two stems clash, the
    stem prefixed with its folder names until every name is distinct; identical paths are refused."""
    from lipsynckit.errors import OutputError

    paths = [Path(os.path.normpath(Path(a).expanduser().absolute())) for a in audios]
    seen: dict[Path, int] = {}
    for k, p in enumerate(paths):
        first = seen.setdefault(p, k)
        if first != k:
            raise OutputError(
                f"{audios[first]} is given twice (audio {first + 1} and {k + 1})",
                path=p,
                stage="output",
                remedy="give each audio once",
            )
    depth = [0] * len(paths)  # how many parent folder names go in front of the stem
    ext = [False] * len(paths)  # whether the audio's own extension goes after it (a.wav vs a.flac)

    def name(k: int) -> str:
        folders = paths[k].parts[1:-1]  # without the root
        parts = list(folders[len(folders) - depth[k] :]) if depth[k] else []
        stem = paths[k].stem + (f"_{paths[k].suffix.lstrip('.')}" if ext[k] else "")
        return "_".join([*parts, stem]) + suffix

    while True:
        names = [name(k) for k in range(len(paths))]
        groups: dict[str, list[int]] = {}
        for k, n in enumerate(names):
            groups.setdefault(n, []).append(k)
        clashing = [ks for ks in groups.values() if len(ks) > 1]
        if not clashing:
            return names
        for ks in clashing:
            if not any(ext[k] for k in ks) and len({paths[k].suffix for k in ks}) == len(ks):
                for k in ks:
                    ext[k] = True
                continue
            for k in ks:
                if depth[k] >= len(paths[k].parts) - 2:
                    other = next(i for i in ks if i != k)
                    raise OutputError(
                        f"{audios[k]} and {audios[other]} would both write {names[k]}",
                        path=paths[k],
                        stage="output",
                        remedy="rename one of the audio files, or use a manifest with an output per row",
                    )
                depth[k] += 1
