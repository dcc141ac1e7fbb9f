"""Row validation: raw string rows + a column mapping -> :class:`Product` records and :class:`RowProblem` s.

Cheap field checks (id, duplicate id, title, image path present) run in order; the image checks
(path containment, existence, full decode under the pixel cap, SHA-256) run in a thread pool:
Pillow's decoders, ``hashlib`` and file reads release the GIL. Image cells that are http(s) URLs are
fetched first (:mod:`prodsearch.catalog.fetch`), concurrently and cached by content hash.

Every problem reason starts with a short kind followed by ``":"`` where details follow (``"image file
not found: ..."``); :func:`problem_kind` reads it back for summaries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prodsearch.catalog.fetch import FetchOptions, ImageFetcher, is_url
from prodsearch.catalog.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, check_image
from prodsearch.catalog.mapping import compile_field
from prodsearch.catalog.schema import ColumnMapping, Product, RowProblem
from prodsearch.catalog.tables import RawTable
from prodsearch.errors import CatalogError, ImageError

log = logging.getLogger(__name__)

#: Threads for the image checks (I/O + decode; more than the core count helps on cold disks).
DEFAULT_IMAGE_WORKERS = 4
_CHUNK = 64  # image checks per thread-pool task
_REMOTE = ("ftp://", "s3://", "gs://")  # http(s) URLs are fetched; these are not


class _Rejected(Exception):
    """An image check failed; ``args[0]`` is the problem reason."""


@dataclass
class _Pending:
    row: int
    id: str
    title: str
    text: dict[str, str]
    attributes: dict[str, str]
    image: str | None  # the raw image-path cell, or None for a text-only catalog


def problem_kind(reason: str) -> str:
    """``"image file not found: images/x.jpg"`` -> ``"image file not found"``."""
    return reason.split(":", 1)[0].strip()


def validate_rows(
    table: RawTable,
    mapping: ColumnMapping,
    root: Path,
    *,
    strict: bool = False,
    check_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    workers: int = DEFAULT_IMAGE_WORKERS,
    progress: bool = False,
    fetch_options: FetchOptions | None = None,
) -> tuple[list[Product], list[RowProblem]]:
    """Validate every row of ``table``; image paths resolve inside the folder ``root`` (the catalog's
    folder, or ``mapping.image_root`` when set).

    Returns the accepted products (in file order) and all problems (table parse problems included)
    sorted by row. With ``strict`` raise :class:`CatalogError` for the first problem by row instead.
    ``check_images=False`` skips decoding (paths are still confined, checked to exist and hashed).
    Image URLs are fetched with ``fetch_options`` (default :class:`FetchOptions` with these caps).
    """
    problems = sorted(table.problems, key=lambda p: p.row or 0)
    stop_row = problems[0].row if (strict and problems) else None
    pending, field_problems = _check_fields(table, mapping, stop_row, strict)
    problems.extend(field_problems)
    problems.sort(key=lambda p: p.row or 0)
    first = problems[0] if (strict and problems) else None
    if first is not None:  # only rows before the first known problem still need their images checked
        pending = [p for p in pending if p.row < (first.row or 0)]

    products: list[Product] = []
    image_problems: list[RowProblem] = []
    with_image = [p for p in pending if p.image is not None]
    urls = [p.image for p in with_image if p.image and is_url(p.image)]
    fetched = {}
    if urls:
        opts = fetch_options or FetchOptions(max_bytes=max_bytes, max_pixels=max_pixels)
        fetched = ImageFetcher(opts).fetch_many(urls, progress=progress)
    outcomes = _check_images(
        with_image, root, check_images, max_pixels, max_bytes, workers, progress, mapping.image, fetched,
        "image root" if mapping.image_root else "catalog folder",
    )  # fmt: skip
    try:
        for p in pending:
            path = digest = None
            if p.image is not None:
                outcome = next(outcomes)  # same order as ``with_image``
                if isinstance(outcome, RowProblem):
                    if strict:
                        raise CatalogError(str(outcome))
                    image_problems.append(outcome)
                    continue
                path, digest = outcome
            products.append(
                Product(
                    id=p.id,
                    title=p.title,
                    text=p.text,
                    attributes=p.attributes,
                    image_path=path,
                    image_hash=digest,
                    row=p.row,
                )
            )
    finally:
        outcomes.close()  # strict mode: cancel the image checks still queued
    if first is not None:
        raise CatalogError(str(first))
    problems.extend(image_problems)
    problems.sort(key=lambda p: p.row or 0)
    return products, problems


def _check_fields(
    table: RawTable, mapping: ColumnMapping, stop_row: int | None, strict: bool
) -> tuple[list[_Pending], list[RowProblem]]:
    idx = {c: i for i, c in enumerate(table.columns)}
    i_id = idx[mapping.id]
    title_of = compile_field(mapping.title, table.columns)
    i_img = idx[mapping.image] if mapping.image else None
    text_cols = [(spec, compile_field(spec, table.columns)) for spec in mapping.text]
    attr_cols = [(c, idx[c]) for c in mapping.attributes]
    seen: dict[str, int] = {}
    pending: list[_Pending] = []
    problems: list[RowProblem] = []
    for cells, n in zip(table.rows, table.row_numbers, strict=True):
        if stop_row is not None and n >= stop_row:
            break
        title = title_of(cells)
        problem = _row_problem(cells, n, mapping, i_id, title, i_img, seen)
        if problem is not None:
            problems.append(problem)
            if strict:
                break
            continue
        pid = cells[i_id].strip()
        seen[pid] = n
        pending.append(
            _Pending(
                row=n,
                id=pid,
                title=title,
                text={spec: render(cells) for spec, render in text_cols},
                attributes={c: cells[i].strip() for c, i in attr_cols},
                image=cells[i_img].strip() if i_img is not None else None,
            )
        )
    return pending, problems


def _row_problem(cells, n, mapping, i_id, title, i_img, seen) -> RowProblem | None:
    pid = cells[i_id].strip()
    if not pid:
        return RowProblem(n, None, mapping.id, "missing id")
    if pid in seen:
        return RowProblem(n, pid, mapping.id, f"duplicate id: {pid!r} was first seen in row {seen[pid]}")
    if not title:
        return RowProblem(n, pid, mapping.title, "empty title")
    if i_img is not None:
        value = cells[i_img].strip()
        if not value:
            return RowProblem(n, pid, mapping.image, "empty image path")
        if value.lower().startswith(_REMOTE):
            return RowProblem(
                n,
                pid,
                mapping.image,
                f"unsupported image URL: {value!r}; give an http(s) URL or a local path",
            )
    return None


def _check_images(
    pending: list[_Pending],
    root: Path,
    decode: bool,
    max_pixels: int,
    max_bytes: int,
    workers: int,
    progress: bool,
    field: str | None,
    fetched: dict,
    root_label: str,
) -> Generator[tuple[str, str] | RowProblem, None, None]:
    """Outcomes in the order of ``pending``: ``(path, sha256)`` or the row's problem.

    ``fetched`` maps image URLs to their :class:`~prodsearch.catalog.fetch.FetchResult` (the fetcher
    already applied the byte and pixel caps and the decode check to the downloaded bytes).
    """
    resolver = PathResolver(root, label=root_label)

    def chunk(items: list[_Pending]) -> list[tuple[str, str] | RowProblem]:
        out: list[tuple[str, str] | RowProblem] = []
        for p in items:
            got = fetched.get(p.image) if p.image else None
            if got is not None:
                if got.error is not None:
                    out.append(RowProblem(p.row, p.id, field, got.error))
                else:
                    out.append((got.path, got.sha256))
                continue
            try:
                out.append(
                    check_image_file(
                        p.image or "", resolver, decode=decode, max_pixels=max_pixels, max_bytes=max_bytes
                    )
                )
            except _Rejected as err:
                out.append(RowProblem(p.row, p.id, field, str(err.args[0])))
        return out

    if not pending:
        return
    from tqdm.auto import tqdm

    # tasks of _CHUNK rows: one future per image would cost as much main-thread time as a small image
    chunks = [pending[i : i + _CHUNK] for i in range(0, len(pending), _CHUNK)]
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="catalog-images")
    try:
        with tqdm(total=len(pending), desc="checking images", unit="img", disable=not progress) as bar:
            for outcomes in pool.map(chunk, chunks):
                bar.update(len(outcomes))
                yield from outcomes
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class PathResolver:
    """Resolve image-path cells inside a catalog folder, refusing any that escape it.

    Equivalent to ``os.path.realpath`` + a containment check, but resolves each parent folder once
    (cached) and then only ``lstat`` s the file itself: one system call per image instead of one per
    path component.
    """

    def __init__(self, root: str | Path, *, label: str = "catalog folder"):
        self.label = label  # "catalog folder" or "image root", for messages
        self.root = os.path.realpath(root)
        self._prefix = self.root if self.root.endswith(os.sep) else self.root + os.sep
        self._dirs: dict[str, str] = {}

    def resolve(self, value: str) -> str:
        """Absolute real path of ``value`` (relative to the root, or absolute); raises ``_Rejected``."""
        raw = os.path.expanduser(value) if value.startswith("~") else value
        path = self._real(os.path.join(self.root, raw))  # join keeps an absolute ``raw`` as is
        if "\\" in value and not os.path.exists(path):  # a catalog exported on Windows
            alt = self._real(os.path.join(self.root, value.replace("\\", "/")))
            if os.path.exists(alt):
                path = alt
        if not (path == self.root or path.startswith(self._prefix)):
            hint = (
                "" if self.label != "catalog folder" else "; photos kept elsewhere: set image_root / --images"
            )
            raise _Rejected(
                f"image path escapes the {self.label}: {value!r} resolves to {path}, outside {self.root}{hint}"
            )
        return path

    def _real(self, joined: str) -> str:
        parent, name = os.path.split(joined)
        if ".." in joined or name in (
            "",
            ".",
        ):  # '..' after a symlink must follow the link: let realpath walk
            return os.path.realpath(joined)
        real_parent = self._dirs.get(parent)
        if real_parent is None:
            real_parent = os.path.realpath(parent)
            if len(self._dirs) < 100_000:
                self._dirs[parent] = real_parent
        path = os.path.join(real_parent, name)
        return os.path.realpath(path) if os.path.islink(path) else path


def check_image_file(
    value: str,
    resolver: PathResolver,
    *,
    decode: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[str, str]:
    """Resolve the image-path cell ``value`` inside the resolver's folder, check and hash the file.

    Returns ``(absolute real path, sha256 hex of the file bytes)``; raises ``_Rejected(reason)``.
    Absolute paths, ``..`` and symlinks are allowed only if they resolve inside the folder.
    """
    path = resolver.resolve(value)
    try:
        st = os.stat(path)  # before open(): opening a FIFO would block
    except OSError:
        raise _Rejected(f"image file not found: {value!r} (looked for {path})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _Rejected(f"image file not found: {value!r} is not a regular file ({path})")
    if st.st_size > max_bytes:
        raise _Rejected(f"image too large: {value!r} is {st.st_size} bytes, over the {max_bytes}-byte cap")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise _Rejected(f"image file not found: {value!r} cannot be read ({err.strerror})") from None
    if decode:
        try:
            check_image(data, max_pixels=max_pixels, max_bytes=max_bytes, name=value)
        except ImageError as err:
            raise _Rejected(f"{_image_error_kind(str(err))}: {err}") from None
    return path, hashlib.sha256(data).hexdigest()


def _image_error_kind(message: str) -> str:
    if "truncated" in message:
        return "truncated image"
    if "decompression bomb" in message or "cap" in message:
        return "image too large"
    return "undecodable image"
