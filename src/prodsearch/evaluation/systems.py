"""The systems compared by an evaluation: BM25, dense text-only, image-only and hybrid fusion, per
embedder (the index's own, plus one set per ``--model`` run).

Every system ranks the same corpus (positions 0..N-1 of :class:`~prodsearch.evaluation.corpus.Corpus`)
and answers ``supports(kind)`` with True or the reason it cannot serve that kind of query:

* ``"text"``: a text query ranked by any signal the system has;
* ``"text2image"``: a text query ranked against image vectors only (the title->image protocol);
* ``"image"``: a photo query.

Signals mirror the search engine: BM25 via :class:`prodsearch.index.lexical.LexicalIndex`, exact
inner-product search over stored vectors (ties broken by smaller position), and RRF fusion via
:func:`prodsearch.index.fusion.rrf` with each signal contributing :data:`CANDIDATES` results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from prodsearch.encoders.base import Embedder

log = logging.getLogger(__name__)

#: Query kinds: text, a title ranked against photos only, a photo, a ``(text, photo)`` pair.
KINDS = ("text", "text2image", "image", "text+image")
#: Candidates each signal contributes before fusion (the engine's default).
CANDIDATES = 200
_BATCH = 64


class System(Protocol):
    name: str

    def supports(self, kind: str) -> bool | str: ...

    def rank_text(self, queries: Sequence[str], k: int) -> list[list[str]]: ...

    def rank_image(self, images: Sequence[Any], k: int) -> list[list[str]]: ...


def _pad(rows: list[np.ndarray], k: int) -> np.ndarray:
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        r = np.asarray(r, dtype=np.int64)[:k]
        out[i, : len(r)] = r
    return out


def exact_topk(queries: np.ndarray, vectors: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` corpus positions by inner product, (Q, k) int64 padded with -1; ties -> smaller position.

    ``queries`` (Q, D), ``vectors`` (n, D), ``positions`` (n,) the corpus position of each vector.
    """
    from prodsearch.index.types import top_k

    queries = np.asarray(queries, dtype=np.float32)
    rows: list[np.ndarray] = []
    step = max(1, (1 << 24) // max(1, len(vectors)))
    for s in range(0, len(queries), step):
        scores = queries[s : s + step] @ vectors.T
        rows.extend(top_k(positions, row, k).iids for row in scores)
    return _pad(rows, k)


def _progress(it: Any, desc: str, total: int, enabled: bool) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, unit="batch", leave=False)


@dataclass
class EmbeddedCorpus:
    """One embedder and the corpus vectors it produced: ``vectors[kind] = (positions (n,), (n, D))``.

    Query encodings are memoised per query list, so the text/image/hybrid systems of one embedder
    encode each protocol's queries once.
    """

    name: str
    embedder: Embedder
    vectors: dict[str, tuple[np.ndarray, np.ndarray]]
    progress: bool = False
    _memo: dict[int, tuple[Any, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def aligned(self) -> bool:
        return bool(self.embedder.aligned)

    def encode_queries(self, queries: Sequence[Any], modality: str) -> np.ndarray:
        key = id(queries)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is queries:
            return hit[1]
        enc = self.embedder.encode_text if modality == "text" else self.embedder.encode_image_queries
        chunks = []
        n_batches = (len(queries) + _BATCH - 1) // _BATCH
        batches = (queries[s : s + _BATCH] for s in range(0, len(queries), _BATCH))
        for batch in _progress(batches, f"{self.name}: encode {modality} queries", n_batches, self.progress):
            chunks.append(np.asarray(enc(list(batch)), dtype=np.float32))
        out = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
        self._memo[key] = (queries, out)
        return out

    def search(self, queries: Sequence[Any], modality: str, kind: str, k: int) -> np.ndarray:
        pos, vecs = self.vectors[kind]
        return exact_topk(self.encode_queries(queries, modality), vecs, pos, k)


class LexicalSignal:
    """BM25 over product text; ``iid_to_pos`` maps the lexical index's iids to corpus positions."""

    def __init__(self, index: Any, iid_to_pos: dict[int, int] | None = None, progress: bool = False):
        self.index = index
        self.iid_to_pos = iid_to_pos
        self.progress = progress

    @classmethod
    def build(cls, texts: Sequence[str], **params: Any) -> LexicalSignal:
        from prodsearch.index.lexical import LexicalIndex

        index = LexicalIndex(**params)
        index.build(np.arange(len(texts), dtype=np.int64), list(texts))
        return cls(index)

    def search(self, queries: Sequence[str], k: int) -> np.ndarray:
        rows = []
        for q in _progress(queries, "bm25", len(queries), self.progress):
            iids = self.index.search(q, k).iids
            if self.iid_to_pos is not None:
                iids = np.asarray(
                    [self.iid_to_pos[int(i)] for i in iids if int(i) in self.iid_to_pos], np.int64
                )
            rows.append(iids)
        return _pad(rows, k)


def rrf_fuse(rankings: dict[str, np.ndarray], k: int) -> np.ndarray:
    """Fuse per-signal rankings (each (Q, C) positions, -1 padded) with the engine's RRF, (Q, k)."""
    from prodsearch.index.fusion import rrf
    from prodsearch.index.types import Hits

    names = sorted(rankings)
    q_count = len(next(iter(rankings.values())))
    rows = []
    for q in range(q_count):
        hits = {}
        for s in names:
            r = rankings[s][q]
            r = r[r >= 0]
            # RRF uses ranks only; scores just need to be non-increasing
            hits[s] = Hits(r, -np.arange(len(r), dtype=np.float32))
        fused, _ = rrf(hits, {s: 1.0 for s in names})
        rows.append(np.asarray(fused.iids)[:k])
    return _pad(rows, k)


class SignalSystem:
    """One system = one or more signals; several are fused with RRF (the engine's hybrid mode).

    ``signals``: subset of ("lexical", "text", "image"); ``emb`` the embedder for vector signals.
    """

    def __init__(
        self,
        name: str,
        signals: Sequence[str],
        *,
        emb: EmbeddedCorpus | None = None,
        lexical: LexicalSignal | None = None,
        ids: Sequence[str] = (),
        fuse: Callable[[dict[str, np.ndarray], int], np.ndarray] = rrf_fuse,
    ):
        self.name = name
        self.signals = tuple(signals)
        self.emb = emb
        self.lexical = lexical
        self.ids = list(ids)
        self.fuse = fuse

    def __repr__(self) -> str:
        return f"SignalSystem({self.name!r}, signals={self.signals})"

    # which signals serve which query kind
    def _reachable(self, kind: str) -> tuple[list[str], str]:
        aligned = self.emb is not None and self.emb.aligned
        if kind == "text+image":
            return (
                [],
                "photo + text queries are ranked by the index's photo-anchored search (system 'served')",
            )
        if kind == "text2image" and len(self.signals) > 1:
            return [], "fuses several signals; title->image ranks image vectors only"
        have_vec = set(self.emb.vectors) if self.emb is not None else set()
        use, why = [], []
        for s in self.signals:
            if s == "lexical":
                if kind == "text" and self.lexical is not None:
                    use.append(s)
                else:
                    why.append("BM25 ranks product text and needs a text query")
            elif s not in have_vec:
                why.append(f"the corpus has no {s} vectors")
            elif kind == "text2image" and s != "image":
                why.append("title->image ranks image vectors only")
            elif (kind in ("text", "text2image") and s == "image") or (kind == "image" and s == "text"):
                if aligned:
                    use.append(s)
                else:
                    why.append(
                        f"{'text' if kind != 'image' else 'image'} query -> {s} vectors needs an aligned "
                        "embedder (a `prodsearch train` run or CLIP; pass --model RUN)"
                    )
            else:
                use.append(s)
        return use, "; ".join(dict.fromkeys(why))

    def supports(self, kind: str) -> bool | str:
        if kind not in KINDS:
            raise ValueError(f"unknown query kind {kind!r}; expected one of {KINDS}")
        use, why = self._reachable(kind)
        return True if use else why

    def rank_positions(self, queries: Sequence[Any], kind: str, k: int) -> np.ndarray:
        """(Q, k) corpus positions best first, -1 padded."""
        use, why = self._reachable(kind)
        if not use:
            raise ValueError(f"system {self.name!r} cannot rank {kind} queries: {why}")
        depth = max(CANDIDATES, k) if len(use) > 1 else k
        modality = "image" if kind == "image" else "text"
        rankings = {}
        for s in use:
            if s == "lexical":
                rankings[s] = self.lexical.search(list(queries), depth)
            else:
                rankings[s] = self.emb.search(queries, modality, s, depth)
        if len(use) == 1:
            return rankings[use[0]][:, :k]
        return self.fuse(rankings, k)

    def _ids(self, positions: np.ndarray) -> list[list[str]]:
        return [[self.ids[p] for p in row if p >= 0] for row in positions.tolist()]

    def rank_text(self, queries: Sequence[str], k: int) -> list[list[str]]:
        return self._ids(self.rank_positions(list(queries), "text", k))

    def rank_image(self, images: Sequence[Any], k: int) -> list[list[str]]:
        return self._ids(self.rank_positions(images, "image", k))


class ServedSystem:
    """The search that is served: :meth:`Engine.search` on the index itself, with its default mode
    (hybrid) and fusion (the calibrated one where the index has it), its approximate vector indexes
    and its same-photo pinning. The other systems re-rank the stored vectors exactly, one signal or
    plain RRF at a time; this one answers "what does a shopper get", approximation included."""

    name = "served"

    def __init__(self, engine: Any, ids: Sequence[str], progress: bool = False):
        self.engine = engine
        self.pos_of = {pid: i for i, pid in enumerate(ids)}
        self.progress = progress

    def supports(self, kind: str) -> bool | str:
        if kind not in KINDS:
            raise ValueError(f"unknown query kind {kind!r}; expected one of {KINDS}")
        if kind in ("image", "text+image") and "image" not in self.engine.vectors:
            return "the index has no photo vectors"
        if kind == "text2image" and not self.engine.cross_modal:
            return "text queries reach photos only with an aligned or trained model (index --model RUN)"
        return True

    def rank_positions(self, queries: Sequence[Any], kind: str, k: int) -> np.ndarray:
        """(Q, k) corpus positions of each query's served results, -1 padded."""
        ok = self.supports(kind)
        if ok is not True:
            raise ValueError(f"system 'served' cannot rank {kind} queries: {ok}")
        rows = []
        for i in _progress(range(len(queries)), f"served {kind}", len(queries), self.progress):
            q = queries[i]
            if kind == "image":
                resp = self.engine.search(image=q, k=k)
            elif kind == "text+image":
                resp = self.engine.search(text=q[0], image=q[1], k=k)
            else:  # title->image: the photos alone, as the protocol asks of every system
                resp = self.engine.search(text=q, k=k, mode="image" if kind == "text2image" else "hybrid")
            rows.append(np.asarray([self.pos_of.get(r.id, -1) for r in resp.results], dtype=np.int64))
        return _pad(rows, k)


def standard_systems(
    ids: Sequence[str],
    lexical: LexicalSignal | None,
    emb: EmbeddedCorpus | None,
    *,
    prefix: str = "",
    with_bm25: bool = True,
) -> list[SignalSystem]:
    """BM25, dense-text, image and hybrid systems for one embedder (names get ``prefix``)."""
    out = []
    if with_bm25 and lexical is not None:
        out.append(SignalSystem(f"{prefix}bm25", ["lexical"], lexical=lexical, ids=ids))
    if emb is not None:
        if "text" in emb.vectors:
            out.append(SignalSystem(f"{prefix}dense-text", ["text"], emb=emb, ids=ids))
        if "image" in emb.vectors:
            out.append(SignalSystem(f"{prefix}image", ["image"], emb=emb, ids=ids))
    signals = (["lexical"] if lexical is not None else []) + (sorted(emb.vectors) if emb is not None else [])
    if len(signals) > 1:
        out.append(SignalSystem(f"{prefix}hybrid", signals, emb=emb, lexical=lexical, ids=ids))
    return out
