"""Persistent per-item feature cache: (encoder spec hash, content sha256) -> float32 vector.

One SQLite file per encoder spec (``<root>/<spec_hash>.sqlite``) holding raw float32 blobs.
SQLite gives crash safety (a write is one transaction: a killed run leaves the previous state),
cheap batched lookups for tens of thousands of keys, and safe concurrent readers. A file that is
not a readable cache (corrupt, truncated, wrong dim) is moved aside and rebuilt: the cache can
only cost a recomputation, never a crash or a wrong vector.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.catalog.images import file_sha256
from prodsearch.encoders.base import Encoder
from prodsearch.paths import cache_dir

log = logging.getLogger(__name__)

_CHUNK = 500  # keys per SELECT ... IN (...) (SQLite's default variable limit is 32766; stay small)


class FeatureCache:
    """Feature store under ``root`` (default ``cache_dir()/features``); see the module docstring."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "features"
        self._conns: dict[str, sqlite3.Connection] = {}
        self._lock = threading.Lock()

    def path(self, spec_hash: str) -> Path:
        return self.root / f"{spec_hash}.sqlite"

    def _connect(self, spec_hash: str, spec: dict[str, Any] | None = None) -> sqlite3.Connection:
        conn = self._conns.get(spec_hash)
        if conn is not None:
            return conn
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(spec_hash)
        try:
            conn = self._open(path, spec)
        except sqlite3.DatabaseError as err:
            bad = path.with_name(path.name + ".corrupt")
            log.warning(
                "feature cache %s is unreadable (%s); moving it to %s and starting afresh", path, err, bad
            )
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(path) + suffix)
                if p.exists():
                    os.replace(p, Path(str(bad) + suffix))
            conn = self._open(path, spec)
        self._conns[spec_hash] = conn
        return conn

    @staticmethod
    def _open(path: Path, spec: dict[str, Any] | None) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=60, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            if spec is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('spec', ?)", (json.dumps(spec, sort_keys=True),)
                )
            conn.commit()
            conn.execute("SELECT count(*) FROM features").fetchone()  # touches the pages: detects garbage
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def get_many(self, spec_hash: str, keys: Sequence[str], dim: int) -> list[np.ndarray | None]:
        """Vectors for ``keys`` (``None`` where missing or unreadable), each ``(dim,)`` float32."""
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            try:
                conn = self._connect(spec_hash)
                for s in range(0, len(uniq), _CHUNK):
                    chunk = uniq[s : s + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for key, blob in conn.execute(
                        f"SELECT key, vec FROM features WHERE key IN ({marks})", chunk
                    ):
                        if isinstance(blob, bytes) and len(blob) == 4 * dim:
                            found[key] = np.frombuffer(blob, dtype=np.float32).copy()
            except sqlite3.DatabaseError as err:
                log.warning("feature cache read failed (%s); recomputing", err)
                self._drop(spec_hash)
        return [found.get(k) for k in keys]

    def put_many(
        self, spec_hash: str, keys: Sequence[str], vectors: np.ndarray, spec: dict[str, Any] | None = None
    ) -> None:
        """Store ``vectors`` ``(N, dim)`` under ``keys`` in one transaction (best effort: failures are logged)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys but {len(vectors)} vectors")
        rows = [(k, vectors[i].tobytes()) for i, k in enumerate(keys)]
        with self._lock:
            try:
                conn = self._connect(spec_hash, spec)
                with conn:  # one transaction
                    conn.executemany("INSERT OR REPLACE INTO features VALUES (?, ?)", rows)
            except sqlite3.DatabaseError as err:
                log.warning("feature cache write failed (%s); continuing without caching", err)
                self._drop(spec_hash)

    def __len__(self) -> int:
        return sum(self.count(p.stem) for p in self.root.glob("*.sqlite"))

    def count(self, spec_hash: str) -> int:
        with self._lock:
            return int(self._connect(spec_hash).execute("SELECT count(*) FROM features").fetchone()[0])

    def _drop(self, spec_hash: str) -> None:
        conn = self._conns.pop(spec_hash, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            for key in list(self._conns):
                self._drop(key)


def encode_with_cache(
    encoder: Encoder,
    cache: FeatureCache,
    paths: Sequence[str | os.PathLike[str]],
    hashes: Sequence[str | None] | None = None,
    *,
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """``encoder.encode(paths)`` ``(N, dim)``, computing only the files whose content hash is not cached.

    ``hashes``: sha256 hex of each file's bytes where known (``None`` entries are computed here).
    """
    paths = list(paths)
    if hashes is None:
        hashes = [None] * len(paths)
    if len(hashes) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(hashes)} hashes")
    keys = [h or file_sha256(p) for p, h in zip(paths, hashes, strict=True)]
    sh = encoder.spec_hash()
    got = cache.get_many(sh, keys, encoder.dim)
    out = np.zeros((len(paths), encoder.dim), np.float32)
    todo: dict[str, int] = {}  # key -> first position needing it (duplicates computed once)
    for i, (k, v) in enumerate(zip(keys, got, strict=True)):
        if v is not None:
            out[i] = v
        else:
            todo.setdefault(k, i)
    if todo:
        log.info(
            "image feature cache: %d hits, %d to compute", len(paths) - sum(v is None for v in got), len(todo)
        )
        new = encoder.encode([paths[i] for i in todo.values()], batch_size=batch_size, progress=progress)
        cache.put_many(sh, list(todo), new, spec=encoder.spec())
        fresh = dict(zip(todo, new, strict=True))
        for i, (k, v) in enumerate(zip(keys, got, strict=True)):
            if v is None:
                out[i] = fresh[k]
    return out


class CachedImageEncoder(Encoder):
    """Wraps any image :class:`Encoder` with :meth:`encode_paths` backed by a :class:`FeatureCache`.

    ``encode`` is passed through unchanged (PIL images have no stable content key).
    """

    modality = "image"

    def __init__(self, encoder: Encoder, cache: FeatureCache | None = None):
        self.inner = encoder
        self.cache = cache if cache is not None else FeatureCache()
        self.name = encoder.name
        self.dim = encoder.dim

    def encode(self, items: Sequence[Any], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        return self.inner.encode(items, batch_size=batch_size, progress=progress)

    def spec(self) -> dict[str, Any]:
        return self.inner.spec()

    def encode_paths(
        self,
        paths: Sequence[str | os.PathLike[str]],
        hashes: Sequence[str | None] | None = None,
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        return encode_with_cache(
            self.inner, self.cache, paths, hashes, batch_size=batch_size, progress=progress
        )
