"""The one write path of an index folder: building, re-indexing, HTTP writes and
``Engine.upsert/delete`` all change an index through :class:`IndexWriter`.

Design: a write-ahead operation log with sequence numbers, checkpointed by compaction (the scheme
of Lucene's commit points, LSM stores and SQLite's own WAL). The product store's SQLite file is the
single commit point:

1. the caller encodes the new and changed products first (nothing is written yet);
2. one SQLite transaction writes the product rows *and* a log entry (sequence number, the iids put
   or deleted, the put products' vectors), see :meth:`ProductStore.commit`. Once it commits, the
   write is acknowledged and durable; before, nothing of it exists;
3. the in-memory components apply the entry in O(batch): each vector backend puts new and changed
   vectors in its small delta segment and tombstones the old ones; the lexical index does the same
   with its delta segment; the store patches its attribute table;
4. :meth:`IndexWriter.compact` (``prodsearch compact``; in the background once enough writes are
   pending) merges the deltas into the main ANN and BM25 structures, saves each component as one
   crash-safe generation that records the sequence number it includes (``applied_seq``), and then
   drops the log entries every component has saved.

On open, each component loads its last saved generation and replays the log entries after its
``applied_seq``. Replay is idempotent (a put replaces all of an iid's vectors; a delete of an
absent iid is a no-op), so a crash at any point, including between two component saves, reopens to
exactly the last acknowledged state, equal to a clean build of it. Deletes are tombstones until
compaction. Temp folders of saves that died are removed on open.

Readers see one consistent state: searches hold the shared side of :attr:`IndexWriter.lock` for
their whole run (retrieval, ranking and fetching the products), and steps 2-3 hold the exclusive
side, which lasts milliseconds for a one-product write. Compaction builds the merged structures
aside from a snapshot, without that lock, and swaps each in with one assignment, so searches and
writes go on during it; what was written meanwhile stays in the deltas (and in the log, since a
component's ``applied_seq`` is the sequence number at the start of the compaction).
Only one process may write to an index at a time (an advisory file lock, taken at the first write).
Other processes read it: before each read they apply the log entries the writer committed since
(:meth:`IndexWriter.follow`, one SQLite read when nothing changed), so they see every acknowledged
write too.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from prodsearch.catalog.schema import Product
from prodsearch.errors import IndexNotFoundError, ProductNotFoundError
from prodsearch.search import layout

log = logging.getLogger(__name__)

LOCK_FILE = ".writer.lock"
#: Background compaction starts once this many writes are pending (and at least this share of the index).
AUTO_COMPACT_MIN = 2_000
AUTO_COMPACT_SHARE = 0.05
F = TypeVar("F", bound=Callable[..., Any])
#: Times a read is run when another process keeps deleting the products it finds meanwhile.
READ_ATTEMPTS = 20


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no writer starvation).
    A thread that already reads may read again (nested calls such as ``similar`` -> ``recommend``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting = 0
        self._local = threading.local()

    @contextmanager
    def read(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._writer or self._waiting:
                    self._cond.wait()
                self._readers += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cond:
                    self._readers -= 1
                    if not self._readers:
                        self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def reading(method: F) -> F:
    """Run an :class:`~prodsearch.search.engine.Engine` read method under the index's shared lock,
    after applying what another process wrote (:meth:`IndexWriter.follow`). A read that meets a
    product another process deleted while it ran is run again on the caught-up state."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        writer = self._writer
        for attempt in range(READ_ATTEMPTS):
            writer.follow()
            with writer.lock.read():
                try:
                    return method(self, *args, **kwargs)
                except ProductNotFoundError:
                    # not a race with another process's write: the product is unknown
                    if attempt == READ_ATTEMPTS - 1 or not writer.behind():
                        raise
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]


def vectors_by_id(
    products: Sequence[Product], encoded: Mapping[str, tuple[Sequence[int], np.ndarray]]
) -> dict[str, dict[str, np.ndarray]]:
    """``{product id: {kind: vector}}`` from :func:`prodsearch.search.builder.encode_products`'s
    ``{kind: (positions, vectors)}``; every product gets an entry (possibly without any kind)."""
    out: dict[str, dict[str, np.ndarray]] = {p.id: {} for p in products}
    for kind, (pos, vecs) in encoded.items():
        for i, v in zip(pos, vecs, strict=True):
            out[products[i].id][kind] = v
    return out


class IndexWriter:
    """Owns the components of one open index folder and every change to them (see the module
    docstring). ``vectors`` maps a vector kind to its backend; the set of kinds grows with the
    kinds the encoders produce."""

    def __init__(
        self,
        root: Path,
        store: Any,
        vectors: dict[str, Any],
        lexical: Any,
        *,
        backend: str,
        vector_params: dict[str, Any],
        auto_compact: bool = True,
    ):
        self.root = root
        self.store = store
        self.vectors = vectors
        self.lexical = lexical
        self.backend = backend
        self.vector_params = vector_params
        self.auto_compact = auto_compact
        self.lock = RWLock()
        self.on_change: Callable[[], None] | None = None
        self._mutex = threading.RLock()  # one writer at a time
        self._compacting = threading.Lock()  # one compaction at a time
        self._seq = 0  # the newest log entry applied in memory
        self._flock: int | None = None
        self._compactor: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        root: str | Path,
        *,
        backend: str = "faiss",
        vector_params: dict[str, Any] | None = None,
        auto_compact: bool = True,
    ) -> IndexWriter:
        """Open (or create) the components under ``root`` and replay the log into them."""
        from prodsearch.catalog.store import ProductStore
        from prodsearch.index.backend import load_backend
        from prodsearch.index.lexical import NAME, LexicalIndex

        root = Path(root)
        _clean_failed_saves(root)
        store = ProductStore(root / layout.STORE)
        try:
            vdir = root / layout.VECTORS
            kinds = sorted(p.stem for p in vdir.glob("*.json")) if vdir.is_dir() else []
            vectors = {kind: load_backend(backend, vdir, kind) for kind in kinds}
            _set_query_params(vectors, vector_params or {})
            ldir = root / layout.LEXICAL
            lexical = LexicalIndex.load(ldir) if (ldir / f"{NAME}.json").exists() else LexicalIndex()
        except BaseException:
            store.close()
            raise
        writer = cls(
            root,
            store,
            vectors,
            lexical,
            backend=backend,
            vector_params=dict(vector_params or {}),
            auto_compact=auto_compact,
        )
        writer._replay()
        return writer

    def _replay(self, floor: int = 0) -> None:
        """Apply the log entries each component has not saved yet (and, with ``floor``, that this
        process has not applied yet); idempotent."""
        lex_seq = max(floor, int(self.lexical.meta.get("applied_seq", 0)))
        seqs = {kind: max(floor, be.applied_seq) for kind, be in self.vectors.items()}
        since = min([lex_seq, *seqs.values()])
        # the newest entry now: this process is current up to it once the loop ends (another
        # process may commit more meanwhile; those are applied by the next catch-up)
        target = self.store.last_seq()
        live: set[int] | None = None
        n = 0
        for entry in self.store.oplog_since(since):
            if entry.seq > target:
                break
            n += 1
            touched = np.concatenate([entry.put, entry.deleted])
            for kind, (_, vecs) in entry.vectors.items():
                if kind not in self.vectors:
                    self.vectors[kind] = self._new_backend(kind, vecs.shape[1])
            for kind, be in self.vectors.items():
                if entry.seq > seqs.get(kind, 0):
                    be.delete(touched)
                    if kind in entry.vectors:
                        ids, vecs = entry.vectors[kind]
                        be.upsert(ids, vecs, attributes=self._attributes_for(be, ids))
            if entry.seq > lex_seq:
                self.lexical.remove(touched)
                if live is None:
                    live = set(self.store.all_iids().tolist())
                # the store holds the final text of every product still there (iids are never reused)
                put = [i for i in entry.put.tolist() if i in live]
                if put:  # (a product another process deleted since is skipped: a later entry says so)
                    found = self.store.existing(put)
                    if found:
                        self.lexical.add(list(found), [p.full_text() for p in found.values()])
        if n:
            log.info("replayed %d logged write(s) after seq %d into %s", n, since, self.root)
        self._seq = target

    def _catch_up(self) -> None:
        """Apply writes another process logged since this one last looked (or reload the
        components if that process also compacted them away). Caller holds the exclusive lock."""
        last = self.store.last_seq()
        if last == self._seq:
            return
        first = self.store.first_logged_seq()
        if first is None or first > self._seq + 1:
            log.info("%s was compacted by another process; reloading it", self.root)
            self._reload()
        else:
            self._replay(floor=self._seq)

    def behind(self) -> bool:
        """Whether another process committed writes this one has not applied (one SQLite read).
        Only for the embedded backend: a remote one (Milvus) is shared, and already holds them."""
        return (
            self._flock is None
            and not self._closed
            and self.backend == "faiss"
            and self.store.last_seq() != self._seq
        )

    def follow(self) -> None:
        """In a process that reads an index another process writes (a second ``prodsearch serve``,
        a notebook beside the service): apply the writes it committed since, or reload the
        components if it also compacted them away, so that searches see every acknowledged write
        and never a product it deleted. The process that writes is always current (no-op)."""
        if not self.behind():
            return
        with self._mutex:
            if self._closed:
                return
            with self.lock.write():
                self._catch_up()
                if self.on_change is not None:
                    self.on_change()

    def _new_backend(self, kind: str, dim: int) -> Any:
        from prodsearch.index.backend import create_backend

        return create_backend(self.backend, int(dim), vector_kind=kind, **self.vector_params)

    def _attributes_for(self, backend: Any, iids: Any) -> list[dict[str, str]] | None:
        """Products' attributes for backends that filter inside their engine (e.g. Milvus)."""
        if not getattr(backend, "needs_attributes", False):
            return None
        ids = np.asarray(iids, dtype=np.int64).tolist()
        live = set(self.store.all_iids().tolist())  # a product deleted by a later entry: none needed
        kept = [i for i in ids if i in live]
        found = {i: p.attributes for i, p in zip(kept, self.store.by_iids(kept), strict=True)}
        return [found.get(i, {}) for i in ids]

    # ------------------------------------------------------------------ writing
    def write(
        self,
        products: Sequence[Product] = (),
        *,
        vectors: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        delete: Sequence[str] = (),
        delete_missing: bool = False,
    ) -> Any:
        """Upsert ``products`` (with ``vectors[product_id][kind]`` for every new or changed one) and
        delete ``delete`` (and, with ``delete_missing``, every product not in ``products``) as one
        atomic, logged change. Returns the store's :class:`~prodsearch.catalog.store.SyncResult`."""
        products = list(products)
        with self._mutex:
            self._check_open()
            self._take_file_lock()
            with self.lock.write():
                self._catch_up()
                result, seq = self.store.commit(
                    products, delete=delete, delete_missing=delete_missing, vectors=vectors
                )
                if seq:
                    self._seq = seq
                    try:
                        self._apply(products, result, vectors or {})
                    except BaseException:
                        # durable in the log but not in memory: rebuild memory from disk
                        log.exception("applying logged write %d failed; reloading %s", seq, self.root)
                        self._reload()
                        raise
                if self.on_change is not None:
                    self.on_change()
        self._maybe_compact_in_background()
        return result

    def _apply(self, products: list[Product], result: Any, vectors: Mapping[str, Mapping[str, Any]]) -> None:
        put = result.added + result.updated
        touched = np.asarray(put + result.deleted, dtype=np.int64)
        by_iid = {result.by_id[p.id]: p for p in products}
        per_kind: dict[str, tuple[list[int], list[np.ndarray]]] = {}
        for iid in put:
            for kind, vec in vectors[by_iid[iid].id].items():
                ids, vecs = per_kind.setdefault(kind, ([], []))
                ids.append(iid)
                vecs.append(np.asarray(vec, dtype=np.float32).reshape(-1))
        for kind, (_, vecs) in per_kind.items():
            if kind not in self.vectors:
                self.vectors[kind] = self._new_backend(kind, vecs[0].shape[0])
        for kind, be in self.vectors.items():
            be.delete(touched)
            if kind in per_kind:
                ids, vecs = per_kind[kind]
                attrs = (
                    [by_iid[i].attributes for i in ids] if getattr(be, "needs_attributes", False) else None
                )
                be.upsert(np.asarray(ids, dtype=np.int64), np.stack(vecs), attributes=attrs)
        self.lexical.remove(touched)
        if put:
            self.lexical.add(put, [by_iid[i].full_text() for i in put])

    def _reload(self) -> None:
        fresh = IndexWriter.open(
            self.root, backend=self.backend, vector_params=self.vector_params, auto_compact=False
        )
        fresh.store.close()
        self.vectors.clear()
        self.vectors.update(fresh.vectors)
        self.lexical = fresh.lexical
        self._seq = fresh._seq

    # ------------------------------------------------------------------ compaction
    @property
    def pending(self) -> int:
        """Writes not yet merged into the main structures (the largest count over the components)."""
        return max([self.lexical.pending, *(b.pending for b in self.vectors.values())])

    def compact(self, on_saved: Callable[[], None] | None = None) -> int:
        """Merge every delta into its main structure, save every component with the sequence number
        it includes, then drop the log up to it. Searches and writes go on meanwhile (each
        component merges a snapshot aside; writes that land during it stay in its delta and in the
        log, and replay is idempotent). ``on_saved`` runs after the component saves (e.g. to save
        the manifest). Returns that sequence number."""
        with self._compacting:
            with self._mutex:
                self._check_open()
                self._take_file_lock()
                with self.lock.write():
                    self._catch_up()
                seq = self._seq  # every component's snapshot below includes at least this
            t = time.perf_counter()
            meta = {"applied_seq": seq}
            for kind, be in list(self.vectors.items()):
                be.compact()
                be.save(self.root / layout.VECTORS, kind, meta=meta)
            self.lexical.compact()
            self.lexical.save(self.root / layout.LEXICAL, meta=meta, compact=False)
            if on_saved is not None:
                on_saved()
            self.store.trim_oplog(seq)
            log.info("compacted %s at seq %d in %.2fs", self.root, seq, time.perf_counter() - t)
            return seq

    def _maybe_compact_in_background(self) -> None:
        if not self.auto_compact or self._closed:
            return
        size = len(self.store)
        if self.pending < max(AUTO_COMPACT_MIN, AUTO_COMPACT_SHARE * size):
            return
        if self._compactor is not None and self._compactor.is_alive():
            return
        self._compactor = threading.Thread(
            target=self._compact_quietly, name="prodsearch-compact", daemon=True
        )
        self._compactor.start()

    def _compact_quietly(self) -> None:
        try:
            self.compact()
        except Exception:  # the log still holds everything; the next compaction retries
            log.exception("background compaction of %s failed", self.root)

    # ------------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise IndexNotFoundError(f"index {self.root} is closed")

    def _take_file_lock(self) -> None:
        if self._flock is not None:
            return
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IndexNotFoundError(
                f"index {self.root} is being written by another process; one writer at a time"
            ) from None
        self._flock = fd

    def close(self) -> None:
        """Wait for a running background compaction, release the write lock, close the store."""
        compactor = self._compactor
        if compactor is not None:
            compactor.join()
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            if self._flock is not None:
                os.close(self._flock)  # releases the flock
                self._flock = None
            self.store.close()


def _clean_failed_saves(root: Path) -> None:
    """Remove temp folders of saves that died (``.NAME.gen-tmp-*``), unless another process holds
    the write lock (its save may be in progress)."""
    if not root.is_dir():
        return
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        for sub in (root / layout.VECTORS, root / layout.LEXICAL):
            if sub.is_dir():
                for tmp in sub.glob(".*.gen-tmp-*"):
                    shutil.rmtree(tmp, ignore_errors=True)
    finally:
        os.close(fd)


def _set_query_params(vectors: dict[str, Any], params: dict[str, Any]) -> None:
    """Loaded embedded indexes search with the index's current search-time settings
    (``--index-option``), not the ones they were saved with."""
    from prodsearch.index.vector import QUERY_PARAMS

    query = {k: v for k, v in params.items() if k in QUERY_PARAMS}
    for be in vectors.values():
        if query and hasattr(be, "set_query_params"):
            be.set_query_params(**query)
