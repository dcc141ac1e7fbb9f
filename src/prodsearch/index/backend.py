"""The vector backend interface, and the embedded FAISS store as its first implementation.

Contract of a :class:`VectorBackend` (one instance per vector kind, e.g. "text", "image"):

* **Keys** are the store's integer product ids (``iid``, int64). A backend holds at most one vector
  per iid; vectors are float32, L2-normalised, ``dim`` wide; similarity is the inner product.
* **upsert(iids, vectors, attributes=None)** inserts or replaces; **delete(iids)** removes (absent
  iids are ignored) and returns how many were removed. ``attributes`` (one ``{field: value}`` per
  iid, the product's filterable attributes) is for backends that evaluate filters themselves; the
  embedded one ignores it. Both must be cheap (O(batch)): the index writer calls them once per
  acknowledged write, after the change is durable in the operation log.
* **search(queries (Q, D), k, filter=None, allowed=None) -> list[Hits]**: Q ranked lists of iids and
  scores (best first, at most ``k``, never a deleted iid). ``filter`` is the typed filter of
  :mod:`prodsearch.index.filters` (``None`` = no filter); ``allowed`` is the same filter already
  resolved to iids by the engine's attribute table. A backend uses whichever it can: the embedded
  store uses ``allowed``; a server backend translates ``filter`` into its own expression language.
* **get(iids)** returns the stored vectors (N, D) (:class:`ProductNotFoundError` for absent ones);
  ``iids`` lists every stored iid; ``len``/``in`` as for a set of iids.
* **compact()** merges pending writes into the main ANN structure. Searches, upserts and deletes
  may run while it does and must keep working (the embedded store merges a snapshot aside and
  swaps the result in; writes that came in meanwhile stay pending). **pending** is the number of
  writes since the last compaction.
* **save(directory, name, meta)** persists the state as of the last compaction crash-safely (one
  generation, see :mod:`prodsearch.index.storage`) with the writer's ``meta`` (an operation-log
  sequence number at or below the compaction's snapshot, ``applied_seq``); **load(directory,
  name)** returns the backend with ``applied_seq`` set from it. The writer replays every logged
  write after ``applied_seq`` (replay is idempotent), so a backend never needs its own log.
* The backend's **name** is recorded in the index manifest and selects the class on open
  (:func:`create_backend`, :func:`load_backend`); other backends register in :data:`BACKENDS`.

The embedded store, :class:`FaissBackend`, is an LSM-style pair of segments: a *main*
:class:`~prodsearch.index.vector.VectorIndex` (exact or HNSW) that is never modified on the write
path except for tombstones, and a small exact *delta* segment that receives new and changed
vectors. Deleting or replacing an iid tombstones it in main (its graph label is skipped during the
walk); searches merge the top-k of both segments. :meth:`FaissBackend.compact` copies main and the
delta under a short write lock, adds the delta to the copy's graph (or rebuilds it when many labels
are dead) with no lock held, tombstones in the copy what was written meanwhile and swaps the pair.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from prodsearch.errors import ConfigError, ProductNotFoundError
from prodsearch.index.filters import Filter
from prodsearch.index.types import Hits, top_k
from prodsearch.index.vector import VectorIndex

DEFAULT_BACKEND = "faiss"


@runtime_checkable
class VectorBackend(Protocol):
    """One vector kind's nearest-neighbour store (see the module docstring for the contract)."""

    name: ClassVar[str]
    dim: int
    applied_seq: int

    def __len__(self) -> int: ...

    def __contains__(self, iid: object) -> bool: ...

    @property
    def iids(self) -> np.ndarray: ...

    @property
    def pending(self) -> int: ...

    def params(self) -> dict[str, Any]: ...

    def upsert(
        self,
        iids: Sequence[int] | np.ndarray,
        vectors: np.ndarray,
        attributes: Sequence[Mapping[str, str]] | None = None,
    ) -> None: ...

    def delete(self, iids: Sequence[int] | np.ndarray) -> int: ...

    def get(self, iids: Sequence[int] | np.ndarray) -> np.ndarray: ...

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        filter: Filter | None = None,
        allowed: np.ndarray | Sequence[int] | None = None,
    ) -> list[Hits]: ...

    def compact(self) -> None: ...

    def save(self, directory: str | Path, name: str, *, meta: dict[str, Any]) -> None: ...

    @classmethod
    def load(cls, directory: str | Path, name: str) -> VectorBackend: ...


class FaissBackend:
    """The embedded store: a main exact/HNSW :class:`VectorIndex` plus an exact delta segment.

    ``params`` are :class:`VectorIndex`'s (``kind``, ``hnsw_m``, ``ef_search``...). With a
    compressed ``kind`` (``ivfpq``) main holds PQ codes in RAM and, once saved or loaded, reads its
    float32 vectors from the saved file (memory-mapped); :meth:`get` returns them exactly.
    """

    name: ClassVar[str] = "faiss"

    def __init__(self, dim: int, *, vector_kind: str | None = None, **params: Any):
        main = VectorIndex(dim, **params)  # vector_kind: which kind this is (unused here)
        main.frozen = True
        self.dim = main.dim
        self.applied_seq = 0
        # one tuple, replaced by a single assignment in compact(): a search reads a consistent pair
        self._segments: tuple[VectorIndex, VectorIndex] = (main, self._new_delta())
        self._init_state()

    def _init_state(self) -> None:
        self._pending = 0
        self._wlock = threading.Lock()  # writes, and the snapshot/swap steps of a compaction
        self._compact_lock = threading.Lock()  # one compaction at a time
        self._since: list[np.ndarray] | None = None  # iids written while a compaction runs

    def _new_delta(self) -> VectorIndex:
        return VectorIndex(self.dim, kind="flat")

    def __repr__(self) -> str:
        main, delta = self._segments
        return f"FaissBackend(dim={self.dim}, main={len(main)}, delta={len(delta)}, ann={main.ann_kind!r})"

    def params(self) -> dict[str, Any]:
        return self._segments[0].params()

    @property
    def main(self) -> VectorIndex:
        return self._segments[0]

    @property
    def ann_kind(self) -> str:
        return self._segments[0].ann_kind

    # ------------------------------------------------------------------ set of iids
    def __len__(self) -> int:
        main, delta = self._segments
        return len(main) + len(delta)  # disjoint: an iid in delta is tombstoned in main

    def __contains__(self, iid: object) -> bool:
        main, delta = self._segments
        return iid in delta or iid in main

    @property
    def iids(self) -> np.ndarray:
        main, delta = self._segments
        return np.concatenate([main.iids, delta.iids])

    @property
    def pending(self) -> int:
        return self._pending

    # ------------------------------------------------------------------ writes
    def upsert(
        self,
        iids: Sequence[int] | np.ndarray,
        vectors: np.ndarray,
        attributes: Sequence[Mapping[str, str]] | None = None,
    ) -> None:
        iids = np.asarray(iids, dtype=np.int64).reshape(-1)
        with self._wlock:
            main, delta = self._segments
            delta.add(iids, vectors)  # validates shapes first: a bad call changes nothing
            main.remove(iids)  # tombstones the old version, if any
            self._pending += int(iids.size)
            if self._since is not None:
                self._since.append(iids)

    def delete(self, iids: Sequence[int] | np.ndarray) -> int:
        iids = np.asarray(iids, dtype=np.int64).reshape(-1)
        with self._wlock:
            main, delta = self._segments
            removed = main.remove(iids) + delta.remove(iids)
            self._pending += removed
            if self._since is not None and removed:
                self._since.append(iids)
            return removed

    # ------------------------------------------------------------------ reads
    def get(self, iids: Sequence[int] | np.ndarray) -> np.ndarray:
        main, delta = self._segments
        iids = np.asarray(iids, dtype=np.int64).reshape(-1)
        out = np.empty((iids.size, self.dim), np.float32)
        in_delta = np.fromiter((i in delta for i in iids.tolist()), bool, iids.size)
        if in_delta.any():
            out[in_delta] = delta.get(iids[in_delta])
        rest = ~in_delta
        if rest.any():
            try:
                out[rest] = main.get(iids[rest])
            except ProductNotFoundError:
                missing = [i for i in iids[rest].tolist() if i not in main]
                raise ProductNotFoundError(f"iid(s) {missing[:10]} are not in this vector index") from None
        return out

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        filter: Filter | None = None,
        allowed: np.ndarray | Sequence[int] | None = None,
    ) -> list[Hits]:
        main, delta = self._segments
        hits = main.search(queries, k, allowed=allowed)
        if len(delta) == 0:
            return hits
        extra = delta.search(queries, k, allowed=allowed)
        return [
            top_k(np.concatenate([a.iids, b.iids]), np.concatenate([a.scores, b.scores]), k)
            for a, b in zip(hits, extra, strict=True)
        ]

    def set_query_params(self, **params: Any) -> None:
        """Search-time parameters of the main segment (the delta is an exact scan)."""
        self._segments[0].set_query_params(**params)

    def reindexed(self, **params: Any) -> FaissBackend:
        """A new backend with ``params`` (e.g. another ``kind``) holding the same vectors, all
        pending (the next :meth:`compact` builds its index), at the same ``applied_seq``."""
        new = FaissBackend(self.dim, **params)
        with self._wlock:
            iids = self.iids
            for s in range(0, iids.size, 1 << 16):
                new.upsert(iids[s : s + (1 << 16)], self.get(iids[s : s + (1 << 16)]))
        new.applied_seq = self.applied_seq
        return new

    # ------------------------------------------------------------------ maintenance
    def compact(self) -> None:
        """Merge the delta into a copy of main (graph insert, or rebuild when many labels are dead)
        and swap it in; searches and writes go on meanwhile (see the module docstring)."""
        with self._compact_lock:
            with self._wlock:
                main, delta = self._segments
                if self._pending == 0 and len(delta) == 0:
                    return
                merged = main.copy()
                d_iids = delta.iids
                d_vecs = delta.get(d_iids)
                done, self._since = self._pending, []
            try:
                merged.frozen = False
                if d_iids.size:
                    merged.add(d_iids, d_vecs)
                merged.sync()
                merged.frozen = True
            except BaseException:
                with self._wlock:
                    self._since = None
                raise
            with self._wlock:
                touched = np.unique(np.concatenate([np.zeros(0, np.int64), *self._since]))
                self._since = None
                new_delta = self._new_delta()
                if touched.size:
                    merged.remove(touched)  # their newer state (or absence) is in the current delta
                    _, delta_now = self._segments
                    keep = touched[[i in delta_now for i in touched.tolist()]]
                    if keep.size:
                        new_delta.add(keep, delta_now.get(keep))
                self._segments = (merged, new_delta)
                self._pending -= done

    def save(self, directory: str | Path, name: str, *, meta: dict[str, Any]) -> None:
        """Persist main (the state as of the last :meth:`compact`) with ``meta`` in the pointer."""
        self._segments[0].save(directory, name, meta={**meta, "backend": self.name})
        self.applied_seq = int(meta.get("applied_seq", self.applied_seq))

    @classmethod
    def load(cls, directory: str | Path, name: str) -> FaissBackend:
        main = VectorIndex.load(directory, name)
        main.frozen = True
        self = cls.__new__(cls)
        self.dim = main.dim
        self.applied_seq = int(main.meta.get("applied_seq", 0))
        self._segments = (main, self._new_delta())
        self._init_state()
        return self


#: Registered backends by the name recorded in the manifest.
BACKENDS: dict[str, type] = {FaissBackend.name: FaissBackend}


def _backend_class(name: str) -> type:
    if name == "milvus" and name not in BACKENDS:  # registered on import (pymilvus loads lazily)
        from prodsearch.index.milvus import MilvusBackend

        BACKENDS[name] = MilvusBackend
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown vector backend {name!r}; known: {sorted(BACKENDS)}") from None


def create_backend(name: str, dim: int, *, vector_kind: str | None = None, **params: Any) -> VectorBackend:
    """A new, empty backend of the registered class ``name`` for vector kind ``vector_kind``."""
    return _backend_class(name)(dim, vector_kind=vector_kind, **params)


def load_backend(name: str, directory: str | Path, kind: str) -> VectorBackend:
    """Load vector kind ``kind`` saved by backend ``name`` under ``directory``."""
    return _backend_class(name).load(directory, kind)
