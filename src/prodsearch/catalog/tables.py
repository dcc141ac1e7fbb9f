"""Raw catalog tables: CSV/TSV, JSON Lines, JSON arrays and Parquet read into string rows.

Every value becomes a string (numbers via ``str``, integral floats without ``.0``, missing -> ``""``);
nothing is interpreted, so the literal ``NA`` stays ``"NA"``. Rows that cannot be parsed become
:class:`RowProblem` entries instead of stopping the read.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from prodsearch.catalog.schema import RowProblem
from prodsearch.errors import CatalogError

log = logging.getLogger(__name__)

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_CSV_FIELD_LIMIT = 64 * 1024 * 1024


@dataclass
class RawTable:
    """String cells of a catalog file. ``rows[i]`` is aligned with ``columns``; ``row_numbers[i]`` is its
    1-based data-row number (blank lines are not rows)."""

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    row_numbers: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    total_rows: int = 0  # rows read, including the rejected ones


def format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise CatalogError(
            f"{path}: unsupported catalog format {path.suffix!r}; expected one of {sorted(FORMATS)} "
            "(spreadsheets: save as CSV)"
        )
    return fmt


def read_table(path: Path, *, limit: int | None = None, encoding: str | None = None) -> RawTable:
    """Read ``path`` (format by extension) into a :class:`RawTable`, at most ``limit`` data rows."""
    fmt = format_of(path)
    if limit is not None and limit < 0:
        raise CatalogError(f"limit must be >= 0, got {limit}")
    if fmt == "parquet":
        return _read_parquet(path, limit)
    try:
        if fmt in ("csv", "tsv"):
            return _read_csv(path, limit, encoding, tab=fmt == "tsv")
        if fmt == "jsonl":
            return _read_jsonl(path, limit, encoding)
        return _read_json(path, limit, encoding)
    except UnicodeDecodeError as err:
        raise _encoding_error(path, encoding, err) from None


#: Encodings tried, in order, to suggest one when a file is not UTF-8.
_CANDIDATE_ENCODINGS = ("utf-16", "cp1252", "latin-1")


def guess_encoding(data: bytes) -> str | None:
    """The likely encoding of bytes that are not UTF-8: UTF-16 if a byte-order mark says so, else
    Windows-1252 when it decodes (the usual spreadsheet export), else Latin-1 (which decodes anything)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    for enc in _CANDIDATE_ENCODINGS[1:]:
        try:
            data.decode(enc)
            return enc
        except UnicodeDecodeError:
            continue
    return None  # pragma: no cover - latin-1 decodes every byte


def _encoding_error(path: Path, encoding: str | None, err: UnicodeDecodeError) -> CatalogError:
    if encoding:
        return CatalogError(f"{path}: cannot decode as {encoding!r}: {err}")
    data = path.read_bytes()
    try:
        data.decode("utf-8")  # absolute offset (utf-8-sig would count from after the BOM)
        offset, bad = -1, b""
    except UnicodeDecodeError as e:
        offset, bad = e.start, data[e.start : e.start + 4]
    line = data.count(b"\n", 0, max(offset, 0)) + 1
    guess = guess_encoding(data)
    seen = ""
    if guess and offset >= 0:
        start = data.rfind(b"\n", 0, offset) + 1
        end = data.find(b"\n", offset)
        text = data[start : end if end >= 0 else len(data)].decode(guess, errors="replace").strip()
        seen = f"; as {guess} line {line} reads {text[:80]!r}"
    return CatalogError(
        f"{path}: not valid UTF-8 at byte offset {offset}, line {line} (bytes {bad!r}); the file looks like "
        f"{guess or 'another encoding'}{seen}. Pass --encoding {guess or 'ENCODING'} (Python: "
        f"encoding={guess!r}) or re-save the file as UTF-8 (e.g. `iconv -f {guess or 'latin1'} -t utf-8`)"
    )


def _open_text(path: Path, encoding: str | None):
    # utf-8-sig decodes plain UTF-8 and drops a leading byte-order mark (Excel writes one)
    return open(path, encoding=encoding or "utf-8-sig", newline="", errors="strict")


# ---------------------------------------------------------------------------- values
def to_cell(value: Any) -> str:
    """One value as catalog text: ``None``/NaN -> ``""``, ``2011.0`` -> ``"2011"``, lists joined by ``"; "``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, (int,)):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "; ".join(s for s in (to_cell(v) for v in value) if s)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if isinstance(value, (bytes, bytearray)):
        return ""  # embedded binary (e.g. image bytes) is not catalog text
    if hasattr(value, "item"):  # numpy scalars
        return to_cell(value.item())
    return str(value)


# ---------------------------------------------------------------------------- CSV
def _sniff_delimiter(header_line: str) -> str:
    """The most frequent of ``, ; | TAB`` in the header line (European exports often use ``;``)."""
    counts = {d: header_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _read_csv(path: Path, limit: int | None, encoding: str | None, *, tab: bool) -> RawTable:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)  # long descriptions exceed the 128 KiB default
    with _open_text(path, encoding) as fh:
        first = fh.readline()
        delimiter = "\t" if tab else _sniff_delimiter(first)
        fh.seek(0)
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise CatalogError(f"{path}: the file is empty (expected a header row)") from None
        columns = [c.strip().lstrip("\ufeff") for c in header]
        _check_header(path, columns)
        table = RawTable(columns=columns)
        width = len(columns)
        n = 0
        while limit is None or n < limit:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                n += 1
                table.problems.append(
                    RowProblem(n, None, None, f"malformed row: {err} (line {reader.line_num})")
                )
                continue
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank line
            n += 1
            if len(cells) > width:
                if any(c.strip() for c in cells[width:]):
                    table.problems.append(
                        RowProblem(
                            n,
                            cells[0].strip() or None,
                            None,
                            f"malformed row: {len(cells)} fields but the header has {width} "
                            f"(line {reader.line_num}; an unquoted {delimiter!r} inside a value?)",
                        )
                    )
                    continue
                cells = cells[:width]
            elif len(cells) < width:
                cells = cells + [""] * (width - len(cells))
            table.rows.append(cells)
            table.row_numbers.append(n)
        table.total_rows = n
    log.debug("%s: read %d rows, delimiter %r", path, n, delimiter)
    return table


def _check_header(path: Path, columns: list[str]) -> None:
    if not any(columns):
        raise CatalogError(f"{path}: the header row is empty")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise CatalogError(f"{path}: duplicate column name(s) {dupes} in the header {columns}")


# ---------------------------------------------------------------------------- JSON
def _objects_to_table(path: Path, objects: Iterator[tuple[int, Any]], limit: int | None) -> RawTable:
    columns: dict[str, None] = {}
    records: list[tuple[int, dict[str, Any]]] = []
    problems: list[RowProblem] = []
    n = 0
    for n, obj in objects:
        if isinstance(obj, RowProblem):
            problems.append(obj)
        elif not isinstance(obj, dict):
            problems.append(
                RowProblem(n, None, None, f"malformed row: expected a JSON object, got {type(obj).__name__}")
            )
        else:
            for k in obj:
                columns.setdefault(str(k), None)
            records.append((n, obj))
        if limit is not None and n >= limit:
            break
    cols = list(columns)
    table = RawTable(columns=cols, problems=problems, total_rows=n)
    for num, obj in records:
        table.rows.append([to_cell(obj.get(c)) for c in cols])
        table.row_numbers.append(num)
    if not cols and not problems:
        log.warning("%s: no rows", path)
    return table


def _read_jsonl(path: Path, limit: int | None, encoding: str | None) -> RawTable:
    def objects() -> Iterator[tuple[int, Any]]:
        n = 0
        with _open_text(path, encoding) as fh:
            for line in fh:
                if not line.strip():
                    continue
                n += 1
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as err:
                    yield n, RowProblem(n, None, None, f"malformed row: invalid JSON ({err})")

    if limit == 0:
        return RawTable(columns=[])
    return _objects_to_table(path, objects(), limit)


def _read_json(path: Path, limit: int | None, encoding: str | None) -> RawTable:
    with _open_text(path, encoding) as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as err:
            raise CatalogError(f"{path}: invalid JSON ({err})") from None
    if isinstance(data, dict):  # {"products": [...]} and similar: the one list-valued key
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise CatalogError(
                f"{path}: expected a JSON array of product objects (or an object holding one array)"
            )
        data = lists[0]
    if not isinstance(data, list):
        raise CatalogError(f"{path}: expected a JSON array of product objects, got {type(data).__name__}")
    if limit == 0:
        return RawTable(columns=[])
    return _objects_to_table(path, ((i + 1, obj) for i, obj in enumerate(data)), limit)


# ---------------------------------------------------------------------------- Parquet
def _read_parquet(path: Path, limit: int | None) -> RawTable:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError for non-Parquet files
        raise CatalogError(f"{path}: cannot read Parquet ({err.__class__.__name__}: {err})") from err
    columns = [str(c) for c in pf.schema_arrow.names]
    _check_header(path, columns)
    table = RawTable(columns=columns)
    n = 0
    for batch in pf.iter_batches(batch_size=8192):
        cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        for j in range(batch.num_rows):
            if limit is not None and n >= limit:
                break
            n += 1
            table.rows.append([to_cell(col[j]) for col in cols])
            table.row_numbers.append(n)
        if limit is not None and n >= limit:
            break
    table.total_rows = n
    return table
