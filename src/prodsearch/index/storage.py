"""Crash-safe saving of a multi-file index as one unit ("generations").

Layout inside ``root`` for an index called ``name``::

    name.json              pointer + metadata: {"generation": "name.gen-000007", "files": {...sha256...}, ...}
    name.gen-000007/       the files of the current generation
    name.gen-000006/       the previous generation (kept so a reader that just read the old pointer can finish)

Generation numbers only grow; a save removes every generation other than the new one and the one
the pointer named before it (so also orphans of saves that died before their pointer swap).

A save writes every file into a hidden temp folder, fsyncs them, renames the folder to
``name.gen-N`` and only then replaces ``name.json`` atomically. A crash at any point before that
last rename leaves the previous pointer, and the generation it names, untouched; leftovers of the
failed save are removed by the next save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from prodsearch.errors import IndexNotFoundError
from prodsearch.paths import atomic_write_text

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: Temp folders of failed saves older than this are removed by later saves (younger ones may be in progress).
STALE_TMP_S = 3600.0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - directories cannot be fsynced on some platforms
        pass
    finally:
        os.close(fd)


def _gen_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(name)}\.gen-(\d+)$")


class GenerationWriter:
    """Context manager that writes one new generation of ``root/name``.

    Usage::

        with GenerationWriter(root, "text") as gen:
            np.save(gen.path("text.vectors.npy"), vecs)
            gen.commit({"dim": 384, "count": 10})

    Leaving the block without :meth:`commit` (e.g. on an exception) deletes the temp folder and
    leaves the previous generation current.
    """

    def __init__(self, root: str | os.PathLike[str], name: str, *, keep_previous: bool = True):
        self.root = Path(root)
        self.name = name
        self.keep_previous = keep_previous
        self.root.mkdir(parents=True, exist_ok=True)
        self.dir = self.root / f".{name}.gen-tmp-{os.getpid()}-{time.time_ns()}"
        self._committed = False

    def __enter__(self) -> GenerationWriter:
        self.dir.mkdir(parents=True)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._committed:
            shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, filename: str) -> Path:
        return self.dir / filename

    def _next_number(self) -> int:
        pat = _gen_re(self.name)
        nums = [int(m.group(1)) for p in self.root.iterdir() if (m := pat.match(p.name))]
        return max(nums, default=0) + 1

    def commit(self, meta: dict[str, Any]) -> Path:
        """Seal the generation: fsync, rename, then atomically point ``name.json`` at it. Returns its folder."""
        files: dict[str, dict[str, Any]] = {}
        for p in sorted(self.dir.rglob("*")):
            if p.is_file():
                _fsync_path(p)
                files[p.relative_to(self.dir).as_posix()] = {
                    "sha256": file_sha256(p),
                    "bytes": p.stat().st_size,
                }
        for d in sorted({p.parent for p in self.dir.rglob("*")} | {self.dir}, key=lambda q: -len(q.parts)):
            _fsync_path(d)
        previous = _current_generation(self.root, self.name)
        final = self.root / f"{self.name}.gen-{self._next_number():06d}"
        os.rename(self.dir, final)
        _fsync_path(self.root)
        pointer = {"format_version": FORMAT_VERSION, **meta, "generation": final.name, "files": files}
        atomic_write_text(self.root / f"{self.name}.json", json.dumps(pointer, indent=1, sort_keys=True))
        _fsync_path(self.root)
        self._committed = True
        self._cleanup(keep={final.name, previous} if self.keep_previous else {final.name})
        return final

    def _cleanup(self, keep: set[str | None]) -> None:
        """Remove generations other than ``keep`` (orphans of saves that died before their pointer
        swap included) and temp folders of saves that died long ago."""
        pat = _gen_re(self.name)
        for p in self.root.iterdir():
            if pat.match(p.name) and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
        now = time.time()
        for p in self.root.glob(f".{self.name}.gen-tmp-*"):
            try:
                if now - p.stat().st_mtime > STALE_TMP_S:
                    shutil.rmtree(p, ignore_errors=True)
            except FileNotFoundError:  # removed concurrently
                pass


def _current_generation(root: Path, name: str) -> str | None:
    """The generation folder the pointer names now, or None (no pointer yet, or unreadable)."""
    try:
        return str(json.loads((root / f"{name}.json").read_text(encoding="utf-8"))["generation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_generation(
    root: str | os.PathLike[str], name: str, *, verify: bool = True
) -> tuple[dict[str, Any], Path]:
    """Read ``root/name.json`` and return ``(metadata, generation folder)``.

    With ``verify`` every file's size and sha256 is checked against the pointer; any mismatch
    raises :class:`IndexNotFoundError` naming the file.
    """
    root = Path(root)
    pointer = root / f"{name}.json"
    if not pointer.exists():
        raise IndexNotFoundError(f"no index {name!r} in {root} (missing {pointer})")
    try:
        meta = json.loads(pointer.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IndexNotFoundError(
            f"{pointer} is not valid JSON ({err}); the index is corrupt, rebuild it"
        ) from err
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        got = meta.get("format_version") if isinstance(meta, dict) else meta
        raise IndexNotFoundError(
            f"{pointer}: format_version {got!r} is not supported (expected {FORMAT_VERSION})"
        )
    for key in ("generation", "files"):
        if key not in meta:
            raise IndexNotFoundError(f"{pointer}: missing key {key!r}; the index is corrupt, rebuild it")
    gen = root / str(meta["generation"])
    if not gen.is_dir():
        raise IndexNotFoundError(
            f"{pointer} names generation folder {gen}, which does not exist; rebuild the index"
        )
    if verify:
        for rel, info in meta["files"].items():
            p = gen / rel
            if not p.is_file():
                raise IndexNotFoundError(f"index file {p} is missing; the index is corrupt, rebuild it")
            size = p.stat().st_size
            if size != info.get("bytes"):
                raise IndexNotFoundError(
                    f"index file {p} has {size} bytes, expected {info.get('bytes')}; the index is corrupt, rebuild it"
                )
            if file_sha256(p) != info.get("sha256"):
                raise IndexNotFoundError(
                    f"index file {p} fails its sha256 checksum; the index is corrupt, rebuild it"
                )
    return meta, gen
