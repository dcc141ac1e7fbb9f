"""Read a catalog file into validated products: format by extension, mapping given or detected,
bad rows skipped and reported (or, with ``strict``, the first one raised)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from prodsearch.catalog.fetch import FetchOptions
from prodsearch.catalog.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from prodsearch.catalog.mapping import (
    DETECT_SAMPLE_ROWS,
    DetectionReport,
    check_mapping_columns,
    detect_mapping_report,
)
from prodsearch.catalog.schema import ColumnMapping, Product, RowProblem
from prodsearch.catalog.tables import RawTable, read_table
from prodsearch.catalog.validate import DEFAULT_IMAGE_WORKERS, problem_kind, validate_rows
from prodsearch.errors import CatalogError
from prodsearch.paths import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class CatalogReadResult:
    """What :func:`read_catalog` found: accepted products in file order and the rejected rows."""

    products: list[Product]
    problems: list[RowProblem]
    mapping: ColumnMapping
    source: str
    rows: int  # data rows read (accepted + rejected)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: read, validate
    detection: DetectionReport | None = None  # how the mapping was detected (None: it was given)

    @property
    def accepted(self) -> int:
        return len(self.products)

    @property
    def rejected(self) -> int:
        return len(self.problems)


def read_catalog(
    path: str | Path,
    mapping: ColumnMapping | None = None,
    *,
    strict: bool = False,
    check_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    limit: int | None = None,
    progress: bool = False,
    encoding: str | None = None,
    workers: int = DEFAULT_IMAGE_WORKERS,
    image_root: str | Path | None = None,
    fetch_options: FetchOptions | None = None,
    detection: DetectionReport | None = None,
) -> CatalogReadResult:
    """Read and validate a ``.csv``/``.tsv``/``.jsonl``/``.ndjson``/``.json``/``.parquet`` catalog.

    Args:
        path: the catalog file; image paths in it resolve relative to its folder and must stay inside
            (or inside ``image_root``); http(s) URLs are fetched and cached.
        mapping: which columns are id/title/text/attributes/image; detected from the header if None.
        strict: raise :class:`CatalogError` naming the first bad row instead of skipping bad rows.
        check_images: fully decode every image (under ``max_pixels``); paths are checked and files
            hashed either way.
        limit: read only the first ``limit`` data rows.
        encoding: text encoding of CSV/JSON files; default UTF-8 (with or without a byte-order mark).
        workers: threads for the image checks.
        image_root: the folder image paths resolve in and may not leave, overriding
            ``mapping.image_root``; relative roots resolve against the current directory.
        fetch_options: timeouts, caps and retries for image URLs.
        detection: how ``mapping`` was detected, when the caller detected it (kept in the report).

    Raises:
        CatalogError: unreadable file, unknown format, no id/title column, a mapping naming missing
            columns, or (with ``strict``) any bad row.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found")
    t0 = time.perf_counter()
    table = read_table(path, limit=limit, encoding=encoding)
    t_read = time.perf_counter() - t0
    if mapping is None:
        detection = detect_table_mapping(path, table)
        mapping = detection.mapping
        log.info("%s: no column mapping given; %s", path, detection.summary())
    else:
        check_mapping_columns(mapping, table.columns, str(path))
    if image_root is not None:
        mapping = replace(mapping, image_root=str(Path(image_root).expanduser().absolute()))
    root = path.absolute().parent
    if mapping.image_root:
        root = (root / Path(mapping.image_root).expanduser()).absolute()  # absolute roots stay as given
        if not root.is_dir():
            raise CatalogError(f"{path}: image root {mapping.image_root!r} is not a folder ({root})")
        mapping = replace(mapping, image_root=str(root))
    t1 = time.perf_counter()
    products, problems = validate_rows(
        table,
        mapping,
        root,
        strict=strict,
        check_images=check_images,
        max_pixels=max_pixels,
        max_bytes=max_bytes,
        workers=workers,
        progress=progress,
        fetch_options=fetch_options,
    )
    t_validate = time.perf_counter() - t1
    result = CatalogReadResult(
        products=products,
        problems=problems,
        mapping=mapping,
        source=str(path),
        rows=table.total_rows,
        timings={"read": t_read, "validate": t_validate},
        detection=detection,
    )
    log.info(
        "%s: %d rows, %d accepted, %d rejected (read %.2fs, validate %.2fs)",
        path, result.rows, result.accepted, result.rejected, t_read, t_validate,
    )  # fmt: skip
    if problems:
        log.warning("%s: %s", path, summarize_problems(problems))
    return result


def detect_table_mapping(path: Path, table: RawTable) -> DetectionReport:
    """Detect the column mapping of a read table; errors name the file."""
    if not table.columns:
        raise CatalogError(f"{path}: no columns found (empty catalog?)")
    try:
        return detect_mapping_report(table.columns, sample_rows=table.rows[:DETECT_SAMPLE_ROWS])
    except CatalogError as err:
        raise CatalogError(f"{path}: {err}") from None


def suggest_mapping(path: str | Path, *, encoding: str | None = None) -> DetectionReport:
    """Detect the mapping of the catalog at ``path`` from its head (``prodsearch mapping CATALOG``)."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found")
    return detect_table_mapping(path, read_table(path, limit=DETECT_SAMPLE_ROWS, encoding=encoding))


def summarize_problems(problems: list[RowProblem], *, show: int = 5) -> str:
    """Human summary: ``"3 rows rejected: 2 image file not found, 1 empty title; first: row 4 ..."``."""
    if not problems:
        return "no rows rejected"
    counts = Counter(problem_kind(p.reason) for p in problems)
    by_kind = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
    lines = [f"{len(problems)} row{'s' if len(problems) != 1 else ''} rejected: {by_kind}"]
    lines += [f"  {p}" for p in problems[:show]]
    if len(problems) > show:
        lines.append(f"  ... and {len(problems) - show} more")
    return "\n".join(lines)


def problem_report(result: CatalogReadResult) -> dict:
    """The machine-readable report written by :func:`write_problem_report`."""
    counts = Counter(problem_kind(p.reason) for p in result.problems)
    return {
        "source": result.source,
        "rows": result.rows,
        "accepted": result.accepted,
        "rejected": result.rejected,
        "mapping": result.mapping.to_dict(),
        "detection": result.detection.to_dict() if result.detection else None,
        "by_kind": dict(counts.most_common()),
        "problems": [p.to_dict() for p in result.problems],
    }


def write_problem_report(result: CatalogReadResult, path: str | Path) -> Path:
    """Write :func:`problem_report` as JSON to ``path`` atomically; return the path."""
    path = Path(path)
    atomic_write_text(path, json.dumps(problem_report(result), indent=2, ensure_ascii=False) + "\n")
    return path
