"""Nearest-neighbour index over L2-normalised vectors (inner product): exact, HNSW, or IVF-PQ (FAISS).

The raw vectors and their iids live in numpy buffers owned by :class:`VectorIndex`; they are the
source of truth. The FAISS HNSW graph is an accelerator built from them: HNSW cannot delete, so a
removed or updated vector only marks its graph label dead, and every graph search passes a FAISS
``IDSelectorBitmap`` of live (and allowed) labels, so dead labels are skipped during the graph
walk itself. The graph is rebuilt lazily once too many labels are dead.

Filtered search chooses its plan by how many products the filter allows: few (<= ``exact_fraction``
of the index, or <= ``exact_min`` products) -> exact brute force over just those rows (HNSW degrades
badly under very selective filters); many -> HNSW restricted by the selector, refilled by exact
search in the rare case the graph walk finds fewer than ``k`` allowed products. The 10% default is
the measured crossover on 44k x 384 (exact 2.9 ms vs graph 3.4 ms at 10%; 1.1 vs 3.7 ms at 6%).

Compressed vectors (``kind="ivfpq"``, issue 9 item 5): the ANN structure is a FAISS ``IndexIVFPQ``
(Jegou et al. 2011): a coarse k-means quantizer of ``nlist`` lists and product-quantized residuals of
``pq_m`` bytes per vector (48 at 384 dims, ~1/32 of float32) held in RAM. A search scans the codes of
``nprobe`` lists and re-ranks the best ``rerank`` candidates exactly with the float32 vectors, which a
loaded (or just saved) compressed index reads from its saved ``vectors.npy`` *memory-mapped*
(copy-on-write): the float32 copy lives on disk and in the OS page cache, and only the pages of
re-ranked candidates are touched. ``get`` therefore still returns the exact stored vectors (item-to-
item search, explanations and calibration are unaffected). The graph bookkeeping (labels, tombstones
skipped through the ``IDSelectorBitmap``, lazy rebuilds) is shared with HNSW; a rebuild re-adds the
codes with the already trained quantizers unless the index grew 4x since they were trained. Below
``hnsw_threshold`` vectors a compressed index searches exactly (too few vectors to train on).
Writes that grow the buffers, and the copy a compaction merges into, hold the float32 vectors in RAM
until the next save maps them back from disk.

faiss is imported only when a graph is built, searched, saved or loaded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.errors import ConfigError, IndexNotFoundError, ProductNotFoundError, QueryError
from prodsearch.index.storage import GenerationWriter, read_generation
from prodsearch.index.types import Hits, top_k

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw", "ivfpq")
#: Kinds whose ANN structure holds compressed codes and whose float32 vectors are memory-mapped.
COMPRESSED_KINDS = ("ivfpq",)
#: Parameters a search reads: changed on a built index without rebuilding it (``--index-option``).
QUERY_PARAMS = ("ef_search", "nprobe", "rerank", "exact_fraction", "exact_min")
#: Parameters the graph is built with: a change rebuilds the vector index.
BUILD_PARAMS = ("hnsw_threshold", "hnsw_m", "ef_construction", "nlist", "pq_m", "rebuild_ratio")
#: Fewest vectors an IVF-PQ index is trained on (PQ codebooks have 256 centroids per sub-vector).
_IVF_MIN = 1_000
#: Training sample of the coarse quantizer: this many points per list (faiss warns below 39).
_IVF_TRAIN_PER_LIST = 64
#: Vectors added to a FAISS index per call (bounds the temporary copies of a memory-mapped source).
_ADD_CHUNK = 65_536
#: Score-matrix budget (floats) for one chunk of brute-force queries.
_CHUNK_FLOATS = 1 << 24
#: Below this many multiply-adds, brute force avoids BLAS (see :func:`_scores`).
_SMALL_FLOATS = 1 << 23
#: Largest factor by which a filtered graph search widens ``ef_search``.
_MAX_EF_BOOST = 8.0


def _as_iids(iids: Any, what: str = "iids") -> np.ndarray:
    arr = np.asarray(iids)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _exact_rows(vectors: np.ndarray, iids: np.ndarray, queries: np.ndarray, k: int) -> list[Hits]:
    """Brute-force top-``k`` of ``queries`` (Q, D) against ``vectors`` (N, D), chunked over queries."""
    if vectors.shape[0] == 0:
        return [Hits.empty() for _ in range(queries.shape[0])]
    out: list[Hits] = []
    step = max(1, _CHUNK_FLOATS // max(1, vectors.shape[0]))
    for start in range(0, queries.shape[0], step):
        out.extend(top_k(iids, row, k) for row in _scores(queries[start : start + step], vectors))
    return out


def _scores(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(q, D) x (N, D) -> (q, N) inner products.

    Small products skip BLAS: a multithreaded OpenBLAS call on a busy machine (or beside other
    request threads) can wait milliseconds for its worker threads, 20x the work itself; numpy's own
    single-threaded loop is immune to that.
    """
    if queries.shape[0] * vectors.size <= _SMALL_FLOATS:
        return np.einsum("qd,nd->qn", queries, vectors)
    return queries @ vectors.T


def exact_search(vectors: np.ndarray, iids: np.ndarray, queries: np.ndarray, k: int) -> list[Hits]:
    """Reference brute-force inner-product search, for tests and benchmarks.

    ``vectors``: (N, D) float32; ``iids``: (N,) int64; ``queries``: (Q, D). Returns Q :class:`Hits`
    of at most ``k`` results, ties broken by smaller iid.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    return _exact_rows(vectors, _as_iids(iids), queries, k)


class VectorIndex:
    """Inner-product index over L2-normalised vectors with exact updates and deletes.

    ``kind``: "flat" (exact, numpy), "hnsw" (FAISS HNSW, approximate) or "auto" (flat below
    ``hnsw_threshold`` vectors, hnsw at or above). ``hnsw_m``/``ef_construction``/``ef_search`` are
    the usual HNSW parameters (Malkov & Yashunin 2016). ``exact_fraction``/``exact_min`` decide
    when a filtered search brute-forces the allowed rows instead of walking the graph;
    ``rebuild_ratio`` is the share of dead graph labels that triggers a lazy graph rebuild.

    ``kind="ivfpq"`` compresses (see the module docstring): ``nlist`` coarse lists (0: about
    ``4 * sqrt(N)`` at build), ``nprobe`` lists scanned per query, ``pq_m`` code bytes per vector
    (0: ``dim / 8``, which must divide ``dim``), ``rerank`` candidates re-scored exactly from the
    float32 vectors (at least ``k``).

    All methods are serialised by an internal lock, so one index may be shared between threads.
    """

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "ip",
        kind: str = "auto",
        hnsw_threshold: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        exact_fraction: float | None = None,
        exact_min: int = 2_048,
        rebuild_ratio: float = 0.25,
        nlist: int = 0,
        nprobe: int = 64,
        pq_m: int = 0,
        rerank: int = 200,
    ):
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ConfigError(f"dim must be a positive integer, got {dim!r}")
        if metric != "ip":
            raise ConfigError(
                f"metric {metric!r} is not supported; expected 'ip' (inner product on unit vectors)"
            )
        if kind not in KINDS:
            raise ConfigError(f"index kind {kind!r} is unknown; expected one of {KINDS}")
        for key, val in (
            ("hnsw_m", hnsw_m),
            ("ef_construction", ef_construction),
            ("ef_search", ef_search),
            ("nprobe", nprobe),
            ("rerank", rerank),
        ):
            if int(val) < 1:
                raise ConfigError(f"{key} must be >= 1, got {val!r}")
        if int(nlist) < 0 or int(pq_m) < 0:
            raise ConfigError(f"nlist and pq_m must be >= 0 (0 = automatic), got {nlist!r}, {pq_m!r}")
        if int(pq_m) and dim % int(pq_m):
            raise ConfigError(f"pq_m (code bytes per vector) must divide dim {dim}, got {pq_m!r}")
        if exact_fraction is None:
            # A compressed index's exact path reads float32 rows from the mapped file (~0.7 us a
            # row, 100k x 384); its IVF scan with a widened nprobe has recall@10 .998-1.000 at
            # 10% and 50% filters on 1M x 384 (docs/benchmarks.md, "Vector search at scale").
            exact_fraction = 0.02 if kind in COMPRESSED_KINDS else 0.10
        if not 0.0 <= exact_fraction <= 1.0 or not 0.0 < rebuild_ratio <= 1.0:
            raise ConfigError(
                f"exact_fraction must be in [0, 1] and rebuild_ratio in (0, 1], got {exact_fraction}, {rebuild_ratio}"
            )
        self.dim = int(dim)
        self.metric = metric
        self.kind = kind
        self.hnsw_threshold = int(hnsw_threshold)
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.exact_fraction = float(exact_fraction)
        self.exact_min = int(exact_min)
        self.rebuild_ratio = float(rebuild_ratio)
        self.nlist = int(nlist)
        self.nprobe = int(nprobe)
        self.pq_m = int(pq_m) or _auto_pq_m(self.dim)
        self.rerank = int(rerank)

        self._n = 0
        self._vecs = np.zeros((0, self.dim), np.float32)  # (capacity, D); rows [0, n) are live
        self._ids = np.zeros(0, np.int64)  # (capacity,) iid of each row
        self._labels = np.zeros(0, np.int64)  # (capacity,) graph label of each row, -1 = not in graph yet
        # (iid -> row table, None) or (sorted iids, their rows); rebuilt lazily after a mutation
        self._lookup: tuple[np.ndarray, np.ndarray | None] | None = None
        self._graph: Any = None  # faiss.IndexHNSWFlat
        self._label_row = np.zeros(0, np.int64)  # (graph ntotal,) row of each label, -1 = dead
        self._dead = 0
        self._trained_on = 0  # vectors the compressed graph's quantizers were trained with
        self._version = 0  # bumped by every change of rows or labels (a save, _live_bitmap check it)
        self._live_bits: tuple[tuple[int, int], np.ndarray] | None = None  # see _live_bitmap
        self._lock = threading.RLock()
        #: When True, searches never touch the graph (no lazy insert or rebuild): the owner (a
        #: segmented backend) merges changes in a compaction instead, off the search path.
        self.frozen = False
        #: Metadata of the saved generation this index was loaded from ({} if built in memory).
        self.meta: dict[str, Any] = {}

    def params(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "hnsw_threshold": self.hnsw_threshold,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "exact_fraction": self.exact_fraction,
            "exact_min": self.exact_min,
            "rebuild_ratio": self.rebuild_ratio,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "pq_m": self.pq_m,
            "rerank": self.rerank,
        }

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self.dim}, kind={self.kind!r}, count={self._n}, ann={self.ann_kind!r})"

    def set_query_params(self, **params: Any) -> None:
        """Change search-time parameters (:data:`QUERY_PARAMS`) of this index in place; validated as
        the constructor validates them. Build-time ones need a rebuild (:meth:`FaissBackend.reindexed`)."""
        unknown = sorted(set(params) - set(QUERY_PARAMS))
        if unknown:
            raise ConfigError(f"{unknown}: not search-time parameters; expected some of {QUERY_PARAMS}")
        checked = VectorIndex(self.dim, **{**self.params(), **params}).params()
        with self._lock:
            for key in params:
                setattr(self, key, checked[key])
            self._tune_graph()

    # ------------------------------------------------------------------ bookkeeping
    def __len__(self) -> int:
        return self._n

    def __contains__(self, iid: object) -> bool:
        try:
            key = np.asarray([iid], dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            return False
        with self._lock:
            return bool(self._rows_of(key)[0] >= 0)

    @property
    def iids(self) -> np.ndarray:
        """(N,) int64 iids of the live vectors (a copy, in storage order)."""
        with self._lock:
            return self._ids[: self._n].copy()

    @property
    def compressed(self) -> bool:
        """Whether the ANN structure holds compressed codes (the float32 vectors memory-mapped)."""
        return self.kind in COMPRESSED_KINDS

    @property
    def ann_kind(self) -> str:
        """The structure searches use now: "flat", "hnsw" or "ivfpq" ("auto" and "ivfpq" are flat
        below ``hnsw_threshold`` vectors)."""
        if self.kind == "auto":
            return "hnsw" if self._n >= self.hnsw_threshold else "flat"
        if self.compressed:
            return self.kind if self._n >= max(self.hnsw_threshold, _IVF_MIN) else "flat"
        return self.kind

    def _rows_of(self, iids: np.ndarray) -> np.ndarray:
        """Row of each iid in ``iids`` (int64), -1 where absent.

        Product stores hand out small consecutive iids, so the lookup is usually a dense table
        (iid -> row, one random read per id); sparse iid spaces fall back to binary search.
        """
        if self._lookup is None:
            ids = self._ids[: self._n]
            hi = int(ids.max()) if ids.size else -1
            if ids.size and ids.min() >= 0 and hi < 4 * ids.size + 1_000_000:
                table = np.full(hi + 1, -1, np.int64)
                table[ids] = np.arange(ids.size, dtype=np.int64)
                self._lookup = (table, None)
            else:
                order = np.argsort(ids, kind="stable")
                self._lookup = (ids[order], order.astype(np.int64))
        keys, rows = self._lookup
        if keys.size == 0 or iids.size == 0:
            return np.full(iids.shape, -1, np.int64)
        if rows is None:  # dense table
            inside = (iids >= 0) & (iids < keys.size)
            return np.where(inside, keys[np.where(inside, iids, 0)], -1)
        pos = np.clip(np.searchsorted(keys, iids), 0, keys.size - 1)
        return np.where(keys[pos] == iids, rows[pos], -1)

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        cap = self._vecs.shape[0]
        if need <= cap:
            return
        new_cap = need if self._n == 0 else max(need, int(cap * 1.5) + 16)
        vecs = np.empty((new_cap, self.dim), np.float32)
        vecs[: self._n] = self._vecs[: self._n]
        ids = np.empty(new_cap, np.int64)
        ids[: self._n] = self._ids[: self._n]
        labels = np.full(new_cap, -1, np.int64)
        labels[: self._n] = self._labels[: self._n]
        self._vecs, self._ids, self._labels = vecs, ids, labels

    def _kill_labels(self, rows: np.ndarray) -> None:
        labels = self._labels[rows]
        labels = labels[labels >= 0]
        if labels.size:
            self._label_row[labels] = -1
            self._dead += int(labels.size)
        self._labels[rows] = -1

    # ------------------------------------------------------------------ mutation
    def add(self, iids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Insert ``vectors`` (N, D) under ``iids`` (N,); an iid already present is replaced (update)."""
        iids = _as_iids(iids)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (iids.shape[0], self.dim):
            raise ValueError(
                f"VectorIndex.add: expected vectors of shape ({iids.shape[0]}, {self.dim}) for {iids.shape[0]} iids, "
                f"got {vectors.shape}"
            )
        if iids.size == 0:
            return
        uniq, counts = np.unique(iids, return_counts=True)
        if uniq.size != iids.size:
            raise ValueError(f"VectorIndex.add: duplicate iids in one call: {uniq[counts > 1][:10].tolist()}")
        if not np.isfinite(vectors).all():
            bad = np.nonzero(~np.isfinite(vectors).all(axis=1))[0]
            raise ValueError(f"VectorIndex.add: non-finite vectors for iids {iids[bad][:10].tolist()}")
        with self._lock:
            self._version += 1
            rows = self._rows_of(iids)
            old = rows >= 0
            if old.any():
                self._vecs[rows[old]] = vectors[old]
                self._kill_labels(rows[old])  # re-added to the graph at the next sync
            new = ~old
            m = int(new.sum())
            if m:
                self._reserve(m)
                sl = slice(self._n, self._n + m)
                self._vecs[sl] = vectors[new]
                self._ids[sl] = iids[new]
                self._labels[sl] = -1
                self._n += m
            self._lookup = None

    def remove(self, iids: Sequence[int] | np.ndarray) -> int:
        """Delete ``iids`` (absent ones are ignored); returns how many were removed."""
        iids = np.unique(_as_iids(iids))
        with self._lock:
            rows = self._rows_of(iids)
            rows = np.sort(rows[rows >= 0])
            r = int(rows.size)
            if r == 0:
                return 0
            self._version += 1
            self._kill_labels(rows)
            # Fill the holes below the new end with the surviving rows from the tail: O(removed) copies.
            end = self._n - r
            holes = rows[rows < end]
            tail = np.arange(end, self._n)
            movers = tail[~np.isin(tail, rows)]
            if holes.size:
                self._vecs[holes] = self._vecs[movers]
                self._ids[holes] = self._ids[movers]
                self._labels[holes] = self._labels[movers]
                moved = self._labels[holes]
                live = moved >= 0
                self._label_row[moved[live]] = holes[live]
            self._labels[end : self._n] = -1
            self._n = end
            self._lookup = None
            return r

    def get(self, iids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored vectors (N, D) float32 of ``iids``; raises :class:`ProductNotFoundError` naming absent ones."""
        iids = _as_iids(iids)
        with self._lock:
            rows = self._rows_of(iids)
            if (rows < 0).any():
                missing = iids[rows < 0][:10].tolist()
                raise ProductNotFoundError(f"iid(s) {missing} are not in this vector index")
            return self._vecs[rows].copy()

    def copy(self) -> VectorIndex:
        """An independent copy (buffers and graph), e.g. to merge changes into off the search path."""
        with self._lock:
            new = VectorIndex(self.dim, **self.params())
            n = self._n
            new._vecs, new._ids = self._vecs[:n].copy(), self._ids[:n].copy()
            new._labels, new._n = self._labels[:n].copy(), n
            if self._graph is not None:
                import faiss

                new._graph = faiss.clone_index(self._graph)
                new._label_row, new._dead = self._label_row.copy(), self._dead
                new._trained_on = self._trained_on
            new._tune_graph()
            new.meta = dict(self.meta)
            return new

    # ------------------------------------------------------------------ graph maintenance
    def sync(self) -> None:
        """Bring the search structure up to date now (otherwise done lazily by the next search or save)."""
        with self._lock:
            if self.ann_kind == "flat":
                if self._graph is not None:
                    self._drop_graph()
                return
            ntotal = self._label_row.shape[0]
            if self._graph is None or (ntotal and self._dead > self.rebuild_ratio * ntotal):
                self._build_graph()
                return
            pending = np.nonzero(self._labels[: self._n] < 0)[0]
            if pending.size:
                self._version += 1
                for s in range(0, pending.size, _ADD_CHUNK):
                    self._graph.add(np.ascontiguousarray(self._vecs[pending[s : s + _ADD_CHUNK]]))
                new_labels = np.arange(ntotal, ntotal + pending.size, dtype=np.int64)
                self._labels[pending] = new_labels
                self._label_row = np.concatenate([self._label_row, pending.astype(np.int64)])

    def _drop_graph(self) -> None:
        self._version += 1
        self._graph = None
        self._label_row = np.zeros(0, np.int64)
        self._labels[: self._n] = -1
        self._dead = 0

    def _tune_graph(self) -> None:
        """Set the search-time parameters of the graph (not all survive a save or a clone)."""
        if self._graph is None:
            return
        if self.compressed:
            self._graph.nprobe = self.nprobe
        else:
            self._graph.hnsw.efSearch = self.ef_search

    def _new_graph(self) -> Any:
        import faiss

        if self.compressed:
            return self._trained_ivfpq()
        graph = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        return graph

    def _trained_ivfpq(self) -> Any:
        """An empty IVF-PQ index with trained quantizers: the current graph's, emptied, unless the
        index has grown 4x since they were trained (or there is none); else trained afresh on a
        sample of the live vectors."""
        import faiss

        n = self._n
        if self._graph is not None and self._trained_on and 4 * self._trained_on >= n:
            graph = faiss.clone_index(self._graph)
            graph.reset()
            return graph
        nlist = self.nlist or int(4 * np.sqrt(n))  # faiss' guideline: 4 to 16 sqrt(N)
        nlist = int(max(1, min(nlist, n // 39)))
        graph = faiss.IndexIVFPQ(
            faiss.IndexFlatIP(self.dim), self.dim, nlist, self.pq_m, 8, faiss.METRIC_INNER_PRODUCT
        )
        graph.cp.niter = 10  # coarse k-means: 10 rounds (faiss' default 25 costs 2.5x for ~no recall)
        graph.cp.max_points_per_centroid = _IVF_TRAIN_PER_LIST
        graph.pq.cp.min_points_per_centroid = 1  # small indexes: no warning per sub-quantizer
        size = min(n, max(nlist * _IVF_TRAIN_PER_LIST, 65_536))
        sample = np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))
        graph.train(np.ascontiguousarray(self._vecs[sample]))
        self._trained_on = n
        return graph

    def _build_graph(self) -> None:
        import time

        t = time.perf_counter()
        graph = self._new_graph()
        for s in range(0, self._n, _ADD_CHUNK):
            graph.add(np.ascontiguousarray(self._vecs[s : min(self._n, s + _ADD_CHUNK)]))
        self._graph = graph
        self._tune_graph()
        self._version += 1
        self._label_row = np.arange(self._n, dtype=np.int64)
        self._labels[: self._n] = self._label_row
        self._dead = 0
        log.info(
            "built %s index over %d x %d vectors in %.1fs",
            self.ann_kind,
            self._n,
            self.dim,
            time.perf_counter() - t,
        )

    # ------------------------------------------------------------------ search
    def search(
        self, queries: np.ndarray, k: int, *, allowed: np.ndarray | Sequence[int] | None = None
    ) -> list[Hits]:
        """Top-``k`` by inner product for each of ``queries`` (Q, D) (a single (D,) query is accepted).

        ``allowed``: iids a result may have (a filter); ``None`` = all. Returns Q :class:`Hits`,
        each with ``min(k, #allowed live vectors)`` results, never a removed iid.
        """
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise QueryError(f"query vectors must have shape (Q, {self.dim}), got {np.shape(queries)}")
        if not np.isfinite(q).all():
            raise QueryError("query vectors contain NaN or infinity")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise QueryError(f"k must be a positive integer, got {k!r}")
        q = np.ascontiguousarray(q)
        with self._lock:
            n = self._n
            rows: np.ndarray | None = None
            if allowed is not None:
                found = self._rows_of(_as_iids(allowed, "allowed"))
                keep = np.zeros(n, bool)
                keep[found[found >= 0]] = True  # dedupes and sorts rows faster than np.unique on ids
                rows = np.flatnonzero(keep)
                if rows.size == n:
                    rows = None  # the filter allows everything
            if n == 0 or (rows is not None and rows.size == 0):
                return [Hits.empty() for _ in range(q.shape[0])]
            if not self.frozen:
                self.sync()
            n_cand = n if rows is None else int(rows.size)
            small = rows is not None and (n_cand <= self.exact_fraction * n or n_cand <= self.exact_min)
            if self._graph is None or small:
                return self._exact(q, rows, k)
            return self._graph_search(q, rows, k, n_cand)

    def _exact(self, q: np.ndarray, rows: np.ndarray | None, k: int) -> list[Hits]:
        vecs, ids = self._vecs[: self._n], self._ids[: self._n]
        if rows is None:
            return _exact_rows(vecs, ids, q, k)
        if rows.size * 4 < self._n:  # few rows: gathering their vectors is cheaper than scoring all
            return _exact_rows(vecs[rows], ids[rows], q, k)
        sub = ids[rows]
        return [top_k(sub, _scores(qi[None], vecs)[0, rows], k) for qi in q]  # gather scores, not vectors

    def _graph_search(self, q: np.ndarray, rows: np.ndarray | None, k: int, n_cand: int) -> list[Hits]:
        import faiss

        ntotal = self._label_row.shape[0]
        # Under a filter only a share of the visited nodes can enter the result, so widen the beam by
        # 1/sqrt(share), capped. Measured on 44k x 384 at a 30% filter: recall@10 0.969 -> 0.994 for
        # 1.8x the time (1/share: 0.999 for 3x). IVF-PQ widens nprobe by 1/share (uncapped): a
        # probed list costs a bitmap test per code and a PQ score per allowed code only, so the
        # allowed codes scanned stay those of an unfiltered search.
        share = n_cand / max(1, ntotal)  # ntotal counts dead labels too: they are skipped alike
        if self.compressed:
            params = faiss.SearchParametersIVF()
            params.nprobe = int(min(self._graph.nlist, self.nprobe / share))
            fetch = max(k, self.rerank)  # candidates re-ranked with the float32 vectors
        else:
            params = faiss.SearchParametersHNSW()
            params.efSearch = int(max(self.ef_search, k) * min(share**-0.5, _MAX_EF_BOOST))
            fetch = k
        bitmap = None
        if rows is not None:
            mask = np.zeros(ntotal, bool)
            mask[self._labels[rows]] = True
            bitmap = np.packbits(mask, bitorder="little")  # IDSelectorBitmap reads bit (i & 7) of byte i >> 3
        elif self._dead:
            bitmap = self._live_bitmap(ntotal)
        if bitmap is not None:
            params.sel = faiss.IDSelectorBitmap(ntotal, faiss.swig_ptr(bitmap))
        scores, labels = self._graph.search(q, min(fetch, ntotal), params=params)
        del bitmap  # kept alive until the search returned
        want = min(k, n_cand)
        out: list[Hits] = []
        for i in range(q.shape[0]):
            lab = labels[i]
            ok = lab >= 0
            r = self._label_row[lab[ok]]
            live = r >= 0
            if int(live.sum()) < want:  # the graph walk ran dry under the filter: refill exactly
                log.debug("HNSW returned %d < %d results; refilling with exact search", int(live.sum()), want)
                out.extend(self._exact(q[i : i + 1], rows, k))
                continue
            if self.compressed:  # exact scores of the candidates (their pages of the mapped file)
                cand = r[live]
                out.append(top_k(self._ids[cand], self._vecs[cand] @ q[i], k))
                continue
            out.append(Hits(self._ids[r[live]], scores[i][ok][live]))
        return out

    def _live_bitmap(self, ntotal: int) -> np.ndarray:
        """Packed bits of the live graph labels, kept until the next mutation: an unfiltered search
        over an index with tombstones would otherwise pay O(N) for it (~3 ms at 1M)."""
        key = (self._version, ntotal)
        if self._live_bits is None or self._live_bits[0] != key:
            self._live_bits = (key, np.packbits(self._label_row >= 0, bitorder="little"))
        return self._live_bits[1]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, name: str, *, meta: dict[str, Any] | None = None) -> Path:
        """Save as one crash-safe unit: ``directory/name.json`` + ``directory/name.gen-N/``
        (``name.vectors.npy`` (N, D) float32, ``name.iids.npy`` (N,) int64 and, with a graph,
        ``name.labels.npy`` + ``name.faiss``). ``meta``: extra keys for the pointer (e.g. the
        operation-log sequence number the saved state includes). Returns the generation folder.

        A compressed index unchanged since the copy then reads its float32 vectors from the saved
        file (memory-mapped), releasing the RAM they held."""
        import faiss

        # Copy the arrays under the lock and write them without it: searches and tombstones
        # (``remove``) go on during the file writes. A frozen index's graph never changes.
        with self._lock:
            if not self.frozen:
                self.sync()
            n = self._n
            version = self._version
            vecs, ids = self._vecs[:n].copy(), self._ids[:n].copy()
            graph = self._graph
            labels = self._labels[:n].copy() if graph is not None else None
            info = {
                **(meta or {}),
                "type": "prodsearch.VectorIndex",
                "dim": self.dim,
                "count": n,
                "ann": self.ann_kind if graph is not None else "flat",
                "graph_ntotal": int(self._label_row.shape[0]),
                "params": self.params(),
            }
        with GenerationWriter(directory, name) as gen:
            np.save(gen.path(f"{name}.vectors.npy"), vecs)
            np.save(gen.path(f"{name}.iids.npy"), ids)
            if graph is not None:
                np.save(gen.path(f"{name}.labels.npy"), labels)
                if self.frozen:
                    faiss.write_index(graph, str(gen.path(f"{name}.faiss")))
                else:
                    with self._lock:
                        faiss.write_index(graph, str(gen.path(f"{name}.faiss")))
            self.meta = dict(info)
            folder = gen.commit(info)
        del vecs
        if self.compressed:
            with self._lock:
                if self._version == version:
                    self._vecs = np.load(folder / f"{name}.vectors.npy", mmap_mode="c")
        return folder

    @classmethod
    def load(cls, directory: str | Path, name: str, *, verify: bool = True) -> VectorIndex:
        """Load what :meth:`save` wrote; checks sizes and checksums (``verify``), shapes and counts,
        raising :class:`IndexNotFoundError` that names the bad file."""
        meta, gen = read_generation(directory, name, verify=verify)
        where = Path(directory) / f"{name}.json"
        try:
            dim, count, params = int(meta["dim"]), int(meta["count"]), dict(meta["params"])
            self = cls(dim, **params)
        except (KeyError, TypeError, ValueError) as err:
            raise IndexNotFoundError(
                f"{where}: invalid vector index metadata ({err}); rebuild the index"
            ) from err

        def _load(fname: str, shape: tuple[int, ...], dtype: Any, mmap: bool = False) -> np.ndarray:
            path = gen / fname
            try:
                # copy-on-write map: the file is never written, a mutation copies just its pages
                arr = np.load(path, allow_pickle=False, mmap_mode="c" if mmap else None)
            except (OSError, ValueError) as err:
                raise IndexNotFoundError(
                    f"index file {path} cannot be read ({err}); rebuild the index"
                ) from err
            if arr.shape != shape or arr.dtype != dtype:
                raise IndexNotFoundError(
                    f"index file {path} holds {arr.dtype}{arr.shape}, expected {np.dtype(dtype)}{shape} per {where}"
                )
            return arr

        vecs = _load(f"{name}.vectors.npy", (count, dim), np.float32, mmap=self.compressed)
        ids = _load(f"{name}.iids.npy", (count,), np.int64)
        if np.unique(ids).size != count:
            raise IndexNotFoundError(
                f"index file {gen / f'{name}.iids.npy'} has duplicate iids; rebuild the index"
            )
        self._vecs, self._ids, self._n = vecs, ids, count
        self.meta = dict(meta)
        self._labels = np.full(count, -1, np.int64)
        if meta.get("ann") in ("hnsw", *COMPRESSED_KINDS):
            import faiss

            labels = _load(f"{name}.labels.npy", (count,), np.int64)
            path = gen / f"{name}.faiss"
            try:
                graph = faiss.read_index(str(path))
            except RuntimeError as err:
                raise IndexNotFoundError(
                    f"index file {path} cannot be read ({err}); rebuild the index"
                ) from err
            ntotal = int(graph.ntotal)
            if graph.d != dim or ntotal != int(meta.get("graph_ntotal", -1)) or (labels >= ntotal).any():
                raise IndexNotFoundError(
                    f"index file {path} (dim {graph.d}, {ntotal} vectors) does not match {where} "
                    f"(dim {dim}, {meta.get('graph_ntotal')} graph vectors); rebuild the index"
                )
            self._graph = graph
            self._tune_graph()
            self._trained_on = ntotal
            self._labels = labels.copy()
            self._label_row = np.full(ntotal, -1, np.int64)
            live = labels >= 0
            self._label_row[labels[live]] = np.nonzero(live)[0]
            self._dead = int((self._label_row < 0).sum())
        return self


def _auto_pq_m(dim: int) -> int:
    """Code bytes per vector for IVF-PQ: the largest divisor of ``dim`` up to ``dim / 8`` (48 at 384)."""
    target = max(1, dim // 8)
    return max(m for m in range(1, target + 1) if dim % m == 0)
