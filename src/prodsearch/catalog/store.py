"""The product store: one SQLite file (WAL mode) inside an index folder.

The same file holds the index's *operation log* (tables ``oplog``, ``oplog_items``,
``oplog_vectors``): :meth:`ProductStore.commit` writes the product rows and, in the same
transaction, one log entry with a sequence number, the iids it put or deleted and the vectors of
the put ones. The vector and lexical indexes are rebuilt from this log after a crash
(``prodsearch.search.writer``), so SQLite's commit is the one commit point of the whole index.

Every product gets a stable integer ``iid``, the id its vectors carry in the ANN indexes. iids come
from ``INTEGER PRIMARY KEY AUTOINCREMENT``, so SQLite never hands out a deleted product's iid again
(a stale vector can never point at another product). Each write is one transaction: a failure
rolls all of it back.

The store is safe to share between threads (one connection behind a lock). Reads on the query path
(:meth:`ProductStore.by_iids`) are served from a cache that is dropped whenever this or another
connection commits (``PRAGMA data_version``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prodsearch.catalog.schema import Product
from prodsearch.errors import CatalogError, ProductNotFoundError

if TYPE_CHECKING:
    from prodsearch.index.attributes import AttributeTable

log = logging.getLogger(__name__)

STORE_FILE = "products.sqlite"
SCHEMA_VERSION = 1
_CHUNK = 900  # bound variables per IN (...) query; SQLite builds before 3.32 allow 999
_CACHE_MAX = 200_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    iid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    attributes TEXT NOT NULL,
    image_path TEXT,
    image_hash TEXT,
    content_hash TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS oplog (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS oplog_items (
    seq INTEGER NOT NULL, iid INTEGER NOT NULL, op TEXT NOT NULL, PRIMARY KEY (seq, iid)
);
CREATE TABLE IF NOT EXISTS oplog_vectors (
    seq INTEGER NOT NULL, iid INTEGER NOT NULL, kind TEXT NOT NULL, vec BLOB NOT NULL,
    PRIMARY KEY (seq, iid, kind)
);
"""
_COLS = "iid, id, title, text, attributes, image_path, image_hash"


@dataclass
class UpsertResult:
    """iids of the products written, each list in input order."""

    added: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    by_id: dict[str, int] = field(default_factory=dict)  # product id -> iid, every product written


@dataclass
class Plan:
    """What a commit of a catalog would change (see :meth:`ProductStore.plan`)."""

    changed: list[Product] = field(default_factory=list)  # new or content changed: to encode
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


@dataclass
class SyncResult(UpsertResult):
    """An upsert plus the iids deleted because their products were no longer in the catalog."""

    deleted: list[int] = field(default_factory=list)


class ProductStore:
    """Products of one index, keyed by catalog ``id`` and by integer ``iid``.

    ``path`` is the SQLite file, or an existing folder (then ``<folder>/products.sqlite``). The file
    is created if needed; its folder must exist.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir():
            path = path / STORE_FILE
        if not path.parent.is_dir():
            raise CatalogError(f"cannot open product store {path}: folder {path.parent} does not exist")
        self.path = path
        self._lock = threading.RLock()
        self._cache: dict[int, Product] = {}
        self._attr_cache: AttributeTable | None = None
        self._count: int | None = None
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across crashes of the app
            self._version = self._data_version()
            with self._tx():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._conn.execute(stmt)
                row = self._conn.execute("SELECT value FROM meta WHERE key = 'store_schema'").fetchone()
                if row is None:
                    self._conn.execute(
                        "INSERT INTO meta VALUES ('store_schema', ?)", (json.dumps(SCHEMA_VERSION),)
                    )
                elif json.loads(row[0]) != SCHEMA_VERSION:
                    raise CatalogError(
                        f"{path}: product store schema {row[0]}, this prodsearch reads {SCHEMA_VERSION}"
                    )
        except BaseException:
            self._conn.close()
            raise
        self._version = self._data_version()

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _tx(self, *, invalidate: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: take the write lock up front), rolled back on
        error. ``invalidate=False``: the caller patches the caches itself after the commit."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            # holding SQLite's write lock, no other connection can commit until we do: drop caches
            # that miss their earlier commits now, so the caller may patch them after ours
            self._check_fresh()
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._invalidate()
                raise
            self._conn.execute("COMMIT")
            if invalidate:
                self._invalidate()

    def _data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _invalidate(self) -> None:
        self._cache.clear()
        self._attr_cache = None
        self._count = None

    def _check_fresh(self) -> None:
        """Drop the caches if another connection (another process) committed since we last looked."""
        version = self._data_version()
        if version != self._version:
            self._version = version
            self._invalidate()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ProductStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            self._check_fresh()
            if self._count is None:  # COUNT(*) scans the table: cached, kept by commit()
                self._count = int(self._conn.execute("SELECT COUNT(*) FROM products").fetchone()[0])
            return self._count

    def __contains__(self, product_id: object) -> bool:
        if not isinstance(product_id, str):
            return False
        with self._lock:
            return (
                self._conn.execute("SELECT 1 FROM products WHERE id = ?", (product_id,)).fetchone()
                is not None
            )

    def __repr__(self) -> str:
        return f"ProductStore({str(self.path)!r})"

    # ------------------------------------------------------------------ writes
    def upsert(self, products: Iterable[Product]) -> UpsertResult:
        """Insert new products and update changed ones, in one transaction.

        A product whose :meth:`Product.content_hash` equals the stored one is *unchanged* (its
        vectors need no work); only its image path is refreshed if the file moved.
        Raises :class:`CatalogError` for an invalid product or an id given twice; nothing is written then.
        """
        products = list(products)
        with self._tx() as conn:
            return self._upsert(conn, products, UpsertResult())

    def sync(self, products: Iterable[Product], *, delete_missing: bool) -> SyncResult:
        """Upsert ``products`` and, if ``delete_missing``, delete every stored product not among them.

        One transaction: a re-ingested catalog with a row removed loses that product atomically.
        """
        products = list(products)
        with self._tx() as conn:
            result = self._upsert(conn, products, SyncResult())
            if delete_missing:
                keep = {p.id for p in products}
                gone = [
                    (iid, pid) for iid, pid in conn.execute("SELECT iid, id FROM products") if pid not in keep
                ]
                result.deleted = [iid for iid, _ in gone]
                self._delete_iids(conn, result.deleted)
        log.info(
            "store sync: %d added, %d updated, %d unchanged, %d deleted",
            len(result.added), len(result.updated), len(result.unchanged), len(result.deleted),
        )  # fmt: skip
        return result

    def plan(self, products: Sequence[Product], *, delete_missing: bool = False) -> Plan:
        """What :meth:`commit` would change, without writing: the products that are new or changed
        (so need encoding) and, with ``delete_missing``, the ids no longer in ``products``."""
        with self._lock:
            existing = self._existing(self._conn, [p.id for p in products if isinstance(p, Product)])
            plan = Plan()
            for p in products:
                old = existing.get(p.id) if isinstance(p, Product) else None
                if old is not None and old[1] == p.content_hash():
                    plan.unchanged.append(p.id)
                else:
                    plan.changed.append(p)
            if delete_missing:
                keep = {p.id for p in products if isinstance(p, Product)}
                plan.deleted = [
                    pid for (pid,) in self._conn.execute("SELECT id FROM products") if pid not in keep
                ]
        return plan

    def commit(
        self,
        products: Sequence[Product] = (),
        *,
        delete: Sequence[str] = (),
        delete_missing: bool = False,
        vectors: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    ) -> tuple[SyncResult, int]:
        """Upsert ``products``, delete the ids ``delete`` (and, with ``delete_missing``, every product
        not in ``products``) and log the change, all in one transaction. Returns what changed and the
        log entry's sequence number (0 if nothing changed).

        ``vectors[product_id][kind]`` (D,) float32: the vectors of every product that is new or
        changed (a product's vectors replace all its old ones; a kind it lacks is dropped). A changed
        product without an entry raises :class:`ValueError`, and nothing is written.
        Raises :class:`ProductNotFoundError` for an unknown id in ``delete`` (nothing written)."""
        products, delete, vectors = list(products), list(dict.fromkeys(delete)), vectors or {}
        with self._tx(invalidate=False) as conn:
            result = self._upsert(conn, products, SyncResult())
            found = self._iids_by_id(conn, delete)
            missing = [i for i in delete if i not in found]
            if missing:
                raise ProductNotFoundError(f"cannot delete unknown product id(s) {_preview(missing)}")
            gone = [found[i] for i in delete]
            if delete_missing:
                keep = {p.id for p in products}
                gone += [iid for iid, pid in conn.execute("SELECT iid, id FROM products") if pid not in keep]
            self._delete_iids(conn, gone)
            result.deleted = gone
            put = result.added + result.updated
            if not put and not gone:
                seq = 0
            else:
                seq = int(conn.execute("INSERT INTO oplog (at) VALUES (?)", (_now(),)).lastrowid)
                conn.executemany(
                    "INSERT INTO oplog_items VALUES (?, ?, ?)",
                    [(seq, i, "put") for i in put] + [(seq, i, "del") for i in gone],
                )
                pid_of = {iid: pid for pid, iid in result.by_id.items()}
                rows = []
                for iid in put:
                    pid = pid_of[iid]
                    if pid not in vectors:
                        raise ValueError(f"product {pid!r} is new or changed but has no vectors")
                    for kind, vec in vectors[pid].items():
                        blob = np.ascontiguousarray(vec, dtype=np.float32).reshape(-1).tobytes()
                        rows.append((seq, iid, kind, blob))
                conn.executemany("INSERT INTO oplog_vectors VALUES (?, ?, ?, ?)", rows)
        self._patch_caches(products, result)
        return result, seq

    def _patch_caches(self, products: list[Product], result: SyncResult) -> None:
        """After :meth:`commit`: evict the touched products and patch the attribute table in
        O(batch) instead of re-reading it (folding its delta in once it holds 5% of the rows)."""
        put = set(result.added) | set(result.updated)
        with self._lock:
            self._version = self._data_version()
            for iid in [*put, *result.deleted, *result.unchanged]:
                self._cache.pop(iid, None)
            if self._count is not None:
                self._count += len(result.added) - len(result.deleted)
            if self._attr_cache is not None:
                attrs = {result.by_id[p.id]: p.attributes for p in products if result.by_id[p.id] in put}
                self._attr_cache.apply(result.deleted, attrs)
                if self._attr_cache.delta_size > max(1_000, 0.05 * len(self._attr_cache)):
                    self._attr_cache = self._attr_cache.merged()

    def delete(self, ids: Sequence[str]) -> list[int]:
        """Delete products by id; return their iids in the order given.

        Raises :class:`ProductNotFoundError` naming the unknown ids; nothing is deleted then.
        """
        ids = list(dict.fromkeys(ids))
        with self._tx() as conn:
            found = self._iids_by_id(conn, ids)
            missing = [i for i in ids if i not in found]
            if missing:
                raise ProductNotFoundError(f"cannot delete unknown product id(s) {_preview(missing)}")
            iids = [found[i] for i in ids]
            self._delete_iids(conn, iids)
        return iids

    def _upsert(
        self, conn: sqlite3.Connection, products: list[Product], result: UpsertResult
    ) -> UpsertResult:
        existing = self._existing(conn, [p.id for p in products if isinstance(p, Product)])
        now = _now()
        seen: set[str] = set()
        for i, p in enumerate(products):
            _check_product(p, i)
            if p.id in seen:
                raise CatalogError(f"product id {p.id!r} appears twice in one upsert (position {i})")
            seen.add(p.id)
            chash = p.content_hash()
            row = (p.title, _dumps(p.text), _dumps(p.attributes), p.image_path, p.image_hash, chash, now)
            old = existing.get(p.id)
            if old is None:
                cur = conn.execute(
                    "INSERT INTO products (title, text, attributes, image_path, image_hash, content_hash, "
                    "updated_at, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row, p.id),
                )
                result.added.append(int(cur.lastrowid))
                result.by_id[p.id] = int(cur.lastrowid)
                continue
            iid, old_hash, old_path = old
            result.by_id[p.id] = iid
            if old_hash == chash:
                if old_path != p.image_path:  # same bytes at a new place: keep the vectors, fix the path
                    conn.execute("UPDATE products SET image_path = ? WHERE iid = ?", (p.image_path, iid))
                result.unchanged.append(iid)
                continue
            conn.execute(
                "UPDATE products SET title = ?, text = ?, attributes = ?, image_path = ?, image_hash = ?, "
                "content_hash = ?, updated_at = ? WHERE iid = ?",
                (*row, iid),
            )
            result.updated.append(iid)
        return result

    def _existing(self, conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[int, str, str | None]]:
        out: dict[str, tuple[int, str, str | None]] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for pid, iid, chash, path in conn.execute(
                f"SELECT id, iid, content_hash, image_path FROM products WHERE id IN ({marks})", chunk
            ):
                out[pid] = (int(iid), chash, path)
        return out

    def _iids_by_id(self, conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for pid, iid in conn.execute(f"SELECT id, iid FROM products WHERE id IN ({marks})", chunk):
                out[pid] = int(iid)
        return out

    @staticmethod
    def _delete_iids(conn: sqlite3.Connection, iids: list[int]) -> None:
        for chunk in _chunks(iids):
            conn.execute(f"DELETE FROM products WHERE iid IN ({','.join('?' * len(chunk))})", chunk)

    # ------------------------------------------------------------------ reads
    def get(self, product_id: str) -> Product:
        """The product with catalog id ``product_id``; :class:`ProductNotFoundError` if none."""
        return self.get_many([product_id])[0]

    def get_many(self, ids: Sequence[str]) -> list[Product]:
        """Products in the order of ``ids``; :class:`ProductNotFoundError` naming any unknown id."""
        ids = list(ids)
        by_id: dict[str, Product] = {}
        with self._lock:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(f"SELECT {_COLS} FROM products WHERE id IN ({marks})", chunk):
                    by_id[row[1]] = _product(row)
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ProductNotFoundError(f"unknown product id(s) {_preview(missing)}")
        return [by_id[i] for i in ids]

    def by_iids(self, iids: Sequence[int]) -> list[Product]:
        """Products in the order of ``iids`` (the ANN hits); :class:`ProductNotFoundError` for unknown iids.

        On the per-query path: served from a cache, one ``IN`` query for the misses.
        """
        keys = [int(i) for i in iids]
        with self._lock:
            cache = self._fetch(keys)
            missing = [i for i in keys if i not in cache]
            if missing:
                raise ProductNotFoundError(f"unknown product iid(s) {_preview(missing)}")
            return [_copy(cache[i]) for i in keys]

    def existing(self, iids: Sequence[int]) -> dict[int, Product]:
        """The products of ``iids`` that are still in the store, by iid (no error for the others)."""
        keys = [int(i) for i in iids]
        with self._lock:
            cache = self._fetch(keys)
            return {i: _copy(cache[i]) for i in keys if i in cache}

    def _fetch(self, keys: list[int]) -> dict[int, Product]:
        """The cache, holding every product of ``keys`` still in the store. Caller holds the lock."""
        self._check_fresh()
        misses = [i for i in dict.fromkeys(keys) if i not in self._cache]
        if misses:
            if len(self._cache) + len(misses) > _CACHE_MAX:
                self._cache.clear()
            for chunk in _chunks(misses):
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(f"SELECT {_COLS} FROM products WHERE iid IN ({marks})", chunk):
                    self._cache[int(row[0])] = _product(row)
        return self._cache

    def image_path_in_use(self, image_path: str) -> bool:
        """Whether any product's photo is the file ``image_path``."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM products WHERE image_path = ? LIMIT 1", (image_path,))
            return row.fetchone() is not None

    def iid_of(self, ids: Sequence[str]) -> list[int]:
        """iids of ``ids`` in order; :class:`ProductNotFoundError` naming any unknown id."""
        ids = list(ids)
        with self._lock:
            found = self._iids_by_id(self._conn, list(dict.fromkeys(ids)))
        missing = [i for i in ids if i not in found]
        if missing:
            raise ProductNotFoundError(f"unknown product id(s) {_preview(missing)}")
        return [found[i] for i in ids]

    def all_iids(self) -> np.ndarray:
        """Every stored iid, ascending. Shape (N,), int64."""
        with self._lock:
            rows = self._conn.execute("SELECT iid FROM products ORDER BY iid").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def iter_products(self, batch: int = 1000) -> Iterator[Product]:
        """Every product in iid order, fetched ``batch`` at a time (keyset paging: no long-held cursor)."""
        last = -1
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {_COLS} FROM products WHERE iid > ? ORDER BY iid LIMIT ?", (last, batch)
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _product(row)
            last = int(rows[-1][0])

    def attributes(self) -> AttributeTable:
        """The attribute table for vectorised filters and facets
        (:class:`prodsearch.index.attributes.AttributeTable`), read once and then patched by every
        :meth:`commit` in O(batch); shared, read-only for callers."""
        from prodsearch.index.attributes import AttributeTable

        with self._lock:
            self._check_fresh()
            if self._attr_cache is None:
                rows = self._conn.execute("SELECT iid, attributes FROM products ORDER BY iid").fetchall()
                decoded = [json.loads(a) for _, a in rows]
                fields = sorted({k for attrs in decoded for k in attrs})
                iids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                table: dict[str, np.ndarray] = {}
                for f in fields:
                    col = np.empty(len(rows), dtype=object)
                    col[:] = [attrs.get(f, "") for attrs in decoded]
                    table[f] = col
                self._attr_cache = AttributeTable(iids, table)
            return self._attr_cache

    def attribute_table(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Columns of the current products: ``(iids, table)``, iids ascending, shape (N,) int64;
        ``table[field]`` shape (N,), object array of str aligned with ``iids`` (``""`` where a
        product lacks the field). Copies: for the query path use :meth:`attributes`."""
        t = self.attributes()
        with self._lock:
            iids, cols = t.current_iids(), t.columns()
        order = np.argsort(iids, kind="stable")
        return iids[order], {f: c[order] for f, c in cols.items()}

    def attribute_fields(self) -> list[str]:
        """Sorted names of every attribute any product has."""
        return list(self.attributes().fields)

    # ------------------------------------------------------------------ operation log
    def last_seq(self) -> int:
        """Sequence number of the newest log entry ever written (0 if none)."""
        with self._lock:
            row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'oplog'").fetchone()
        return int(row[0]) if row else 0

    def first_logged_seq(self) -> int | None:
        """Sequence number of the oldest log entry still kept (None if the log is empty)."""
        with self._lock:
            row = self._conn.execute("SELECT MIN(seq) FROM oplog").fetchone()
        return None if row[0] is None else int(row[0])

    def oplog_size(self) -> int:
        """Number of log entries not yet dropped by a compaction."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM oplog").fetchone()[0])

    def oplog_since(self, seq: int) -> Iterator[LogEntry]:
        """Log entries with a sequence number above ``seq``, oldest first."""
        with self._lock:
            seqs = [
                int(r[0])
                for r in self._conn.execute("SELECT seq FROM oplog WHERE seq > ? ORDER BY seq", (seq,))
            ]
        for s in seqs:
            with self._lock:
                items = self._conn.execute(
                    "SELECT iid, op FROM oplog_items WHERE seq = ? ORDER BY iid", (s,)
                ).fetchall()
                vrows = self._conn.execute(
                    "SELECT kind, iid, vec FROM oplog_vectors WHERE seq = ? ORDER BY kind, iid", (s,)
                ).fetchall()
            entry = LogEntry(
                seq=s,
                put=np.asarray([i for i, op in items if op == "put"], dtype=np.int64),
                deleted=np.asarray([i for i, op in items if op == "del"], dtype=np.int64),
            )
            for kind in dict.fromkeys(k for k, _, _ in vrows):
                rows = [(i, v) for k, i, v in vrows if k == kind]
                entry.vectors[kind] = (
                    np.asarray([i for i, _ in rows], dtype=np.int64),
                    np.stack([np.frombuffer(v, dtype=np.float32) for _, v in rows]),
                )
            yield entry

    def trim_oplog(self, upto: int) -> int:
        """Drop log entries with ``seq <= upto`` (every index component has saved them); returns how
        many. Reclaims the file space once more than half of the file is free pages."""
        with self._tx(invalidate=False) as conn:
            n = conn.execute("DELETE FROM oplog WHERE seq <= ?", (upto,)).rowcount
            conn.execute("DELETE FROM oplog_items WHERE seq <= ?", (upto,))
            conn.execute("DELETE FROM oplog_vectors WHERE seq <= ?", (upto,))
        with self._lock:
            free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
            pages = int(self._conn.execute("PRAGMA page_count").fetchone()[0])
            if pages > 256 and free * 2 > pages:
                self._conn.execute("VACUUM")
            self._version = self._data_version()
        return n

    # ------------------------------------------------------------------ metadata
    def meta_get(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def meta_set(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key`` (its own transaction)."""
        payload = json.dumps(value, ensure_ascii=False, sort_keys=True)
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, payload))


@dataclass
class LogEntry:
    """One logged write: the iids it put (new or changed) and deleted, and the put vectors per kind
    (``vectors[kind] = (iids (M,), vectors (M, D))``; a put iid absent from a kind has no vector there)."""

    seq: int
    put: np.ndarray
    deleted: np.ndarray
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


# ---------------------------------------------------------------------------- helpers
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- helpers
def _check_product(p: Any, position: int) -> None:
    if not isinstance(p, Product):
        raise CatalogError(f"upsert item {position}: expected a Product, got {type(p).__name__}")
    if not isinstance(p.id, str) or not p.id.strip():
        raise CatalogError(f"upsert item {position}: product id must be a non-empty string, got {p.id!r}")
    if not isinstance(p.title, str) or not p.title.strip():
        raise CatalogError(f"product {p.id!r}: title must be a non-empty string, got {p.title!r}")
    for name in ("text", "attributes"):
        value = getattr(p, name)
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise CatalogError(f"product {p.id!r}: {name} must map str to str, got {value!r}")
    for name in ("image_path", "image_hash"):
        value = getattr(p, name)
        if value is not None and not isinstance(value, str):
            raise CatalogError(f"product {p.id!r}: {name} must be a string or None, got {value!r}")


def _dumps(d: dict[str, str]) -> str:
    return json.dumps(d, ensure_ascii=False)  # insertion order kept: it is the catalog's column order


def _product(row: tuple) -> Product:
    iid, pid, title, text, attrs, image_path, image_hash = row
    return Product(
        id=pid, title=title, text=json.loads(text), attributes=json.loads(attrs), image_path=image_path,
        image_hash=image_hash,
    )  # fmt: skip


def _copy(p: Product) -> Product:
    # callers may mutate what they get; the cached original must not change
    return Product(p.id, p.title, dict(p.text), dict(p.attributes), p.image_path, p.image_hash)


def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _preview(items: list, n: int = 10) -> str:
    shown = ", ".join(repr(i) for i in items[:n])
    return (
        f"[{shown}{', ...' if len(items) > n else ''}] ({len(items)} in all)"
        if len(items) > n
        else f"[{shown}]"
    )
