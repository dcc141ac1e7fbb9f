"""The search engine over one index folder: text, image and text+image queries, hybrid ranking,
filters and facets, similar products, recommendations, explanations, and live updates.

Signals (each a ranked list of products):
  * ``lexical``: BM25 over product text (text queries only);
  * ``text``:    query vector vs untuned product-text vectors;
  * ``image``:   query vector vs untuned product-photo vectors;
  * ``joint``:   the query in a trained model's shared space vs product photos in it (indexes built
    with ``--model RUN``): text queries reach photos through it, photo queries get a second opinion;
  * ``popularity``: shoppers' decayed event counts (``popularity.json``, :mod:`prodsearch.interactions`)
    over the other signals' candidates; weight 0 unless a calibration (or the caller) gives it one.
A text query reaches image vectors (and an image query reaches text vectors) directly only when the
embedder is *aligned* (CLIP). Signals are fused by the index's calibrated fusion when it has one
(per-signal score scales and weights per query kind fitted on held-out queries,
:mod:`prodsearch.search.calibration`), else by RRF; a normalised weighted sum is the third choice.
All are pure functions in :mod:`prodsearch.index.fusion`. A query photo that is in the catalog
always returns its product first.

The engine composes four parts: query encoding (:mod:`prodsearch.search.query`), retrieval
(:mod:`prodsearch.search.retrieval`), ranking (:mod:`prodsearch.search.ranking`: fusion, paging,
facets, explanations) and the one write path (:mod:`prodsearch.search.writer`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.catalog.schema import Product
from prodsearch.encoders.base import Embedder, l2_normalize
from prodsearch.errors import ProductNotFoundError, QueryError
from prodsearch.search import layout
from prodsearch.search.ranking import finish, matched_attributes  # noqa: F401  (matched_attributes: public here)
from prodsearch.search.recipe import EmbedderRecipe
from prodsearch.search.results import SearchResponse
from prodsearch.search.retrieval import SAME_PHOTO, retrieve  # noqa: F401  (SAME_PHOTO: public here)
from prodsearch.search.writer import reading

log = logging.getLogger(__name__)

MODES = ("hybrid", "lexical", "text", "image")
FUSIONS = ("rrf", "weighted", "calibrated")
#: Default per-signal weights (RRF, or fusion="weighted"); an index with a fusion calibration
#: (manifest settings "fusion", search/calibration.py) uses its calibrated weights instead.
DEFAULT_WEIGHTS = {"lexical": 1.0, "text": 1.0, "image": 1.0, "joint": 1.0, "popularity": 0.0}
#: Vector kinds a mode's signals search: "image" = product photos, untuned and in a trained space.
MODE_SIGNALS = {
    "hybrid": ("lexical", "text", "image", "joint", "popularity"),
    "lexical": ("lexical",),
    "text": ("text",),
    "image": ("image", "joint", "popularity"),
}
#: How many candidates each signal contributes before fusion (at least k + offset).
CANDIDATES = 200


class Engine:
    """Search one index folder. Open with :meth:`Engine.open`; thread-safe for concurrent reads,
    writes (``upsert``/``delete``) are serialised and saved atomically."""

    def __init__(
        self,
        root: Path,
        manifest: layout.Manifest,
        embedder: Embedder | None,
        store: Any,
        vectors: dict[str, Any],
        lexical: Any,
    ):
        self.root = root
        self.manifest = manifest
        self._embedder = embedder
        self.store = store
        self.vectors = vectors
        self.lexical = lexical
        self._writer: Any = None  # the IndexWriter, set by open()
        self.popularity: dict[int, float] = {}  # iid -> value in (0, 1], set by open()
        self._refresh_attributes()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, *, embedder: Embedder | None = None, lazy_model: bool = True) -> Engine:
        """Open an index folder. The embedder is rebuilt from the manifest's recipe (lazily, on the
        first query that needs it) unless given; either way it must match the index's encoder spec.
        Writes not yet compacted are replayed from the index's operation log (search/writer.py)."""
        from prodsearch.search.writer import IndexWriter

        root = Path(path)
        manifest = layout.Manifest.load(root)
        if embedder is not None:
            embedder.check_compatible(manifest.embedder, where=f"index {root}")
        writer = IndexWriter.open(
            root,
            backend=manifest.backend,
            vector_params=manifest.vector_params(),
        )
        engine = cls(root, manifest, embedder, writer.store, writer.vectors, writer.lexical)
        engine._writer = writer
        writer.on_change = engine._on_change
        engine.load_popularity()
        if (root / "models" / "switch.json").is_file():  # a model switch died midway: finish it
            from prodsearch.registry.swap import recover

            recover(engine)
        if not lazy_model:
            _ = engine.embedder
        return engine

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            recipe = EmbedderRecipe.from_dict(self.manifest.settings.get("recipe", {}))
            emb = recipe.build()
            emb.check_compatible(self.manifest.embedder, where=f"index {self.root}")
            self._embedder = emb
        return self._embedder

    def load_popularity(self) -> None:
        """(Re)read the index's popularity signal (``popularity.json``; none: the signal is off)."""
        from prodsearch.interactions.signals import read_popularity

        values = read_popularity(self.root)
        known = [pid for pid in values if pid in self.store]
        iids = self.store.iid_of(known) if known else []
        self.popularity = {int(i): values[pid] for i, pid in zip(iids, known, strict=True)}

    @property
    def model_version(self) -> str | None:
        """The registered model version this index serves (``prodsearch models``), ``"unregistered"``
        for a trained model outside the registry, ``None`` for untuned search."""
        from prodsearch.registry.store import version_of

        return version_of(self.root, self.manifest.model_run)

    @property
    def aligned(self) -> bool:
        return bool(self.manifest.embedder.get("aligned"))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        else:
            self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.store)

    def info(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "index": str(self.root),
            "products": len(self.store),
            "vectors": {k: len(v) for k, v in self.vectors.items()},
            "embedder": m.embedder.get("name"),
            "aligned": self.aligned,
            "model_run": m.model_run,
            "model_version": self.model_version,
            "mapping": m.mapping,
            "source": m.source,
            "attributes": self.attribute_fields,
            "updated_at": m.updated_at,
        }

    # ------------------------------------------------------------------ attributes / filters
    def _on_change(self) -> None:
        """Called by the writer inside its exclusive section after every write."""
        self.lexical = self._writer.lexical
        self._refresh_attributes()

    def _refresh_attributes(self) -> None:
        # O(batch) after a write: the store patches its AttributeTable (index/attributes.py)
        self._attrs = self.store.attributes()
        self._attr_iids = self._attrs.iids  # row order of the masks _filter_mask returns
        self.attribute_fields = self._attrs.fields

    def _parse_filter(self, filters: Any) -> Any:
        """The typed filter (``None`` for none); vector backends that filter inside their engine use it."""
        if filters is None or filters == {} or filters == []:
            return None
        from prodsearch.index.filters import parse_filter

        return parse_filter(filters, valid_fields=self.attribute_fields)

    def _filter_mask(self, filters: Any) -> np.ndarray | None:
        flt = self._parse_filter(filters)
        if flt is None:
            return None
        return self._attrs.mask(flt)

    @reading
    def facets(
        self,
        fields: Sequence[str] | None = None,
        *,
        filters: Any = None,
        iids: np.ndarray | None = None,
        top: int | None = 20,
    ) -> dict[str, list[tuple[str, int]]]:
        """Facet counts over the products passing ``filters`` (and, if given, among ``iids``)."""
        fields = list(fields) if fields else self.attribute_fields
        unknown = [f for f in fields if f not in self.attribute_fields]
        if unknown:
            raise QueryError(f"unknown facet field(s) {unknown}; valid fields: {self.attribute_fields}")
        mask = self._filter_mask(filters)
        if iids is not None:
            sel = np.isin(self._attr_iids, iids)
            mask = sel if mask is None else (mask & sel)
        return self._attrs.facet_counts(fields, mask=mask, top=top)

    # ------------------------------------------------------------------ queries

    def _reaches(self, signal: str, has_text: bool, has_image: bool) -> bool:
        """Whether a query with text and/or a photo can rank by ``signal`` in this index."""
        if signal == "popularity":
            return bool(self.popularity)
        if signal not in self.vectors and signal != "lexical":
            return False
        if signal == "lexical":
            return has_text
        if signal == "joint" or self.aligned:
            return True
        return has_text if signal == "text" else has_image

    @property
    def cross_modal(self) -> bool:
        """Text queries reach product photos (an aligned embedder, or a trained model's joint vectors)."""
        return self.aligned or "joint" in self.vectors

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The index's fusion calibration (search/calibration.py), if it has one."""
        return self.manifest.settings.get("fusion") or None

    def fusion_weights(self, query_kind: str) -> dict[str, float]:
        """Signal weights for a query kind ("text", "image", "text+image"): calibrated, else defaults.

        A trained model's ``joint`` signal that no calibration has vouched for (a catalog too small
        for held-out queries of that kind) gets weight 0 in fused modes: without evidence, search
        stays what the untuned signals give (the "image" mode of a text query still uses it alone).
        """
        cal = self.calibration
        if cal and query_kind in cal.get("weights", {}):
            return {**{s: 0.0 for s in DEFAULT_WEIGHTS}, **cal["weights"][query_kind]}
        w = dict(DEFAULT_WEIGHTS)
        if "joint" in self.vectors:
            w["joint"] = 0.0
        return w

    @reading
    def search(
        self,
        text: str | None = None,
        image: Any = None,
        *,
        k: int = 10,
        offset: int = 0,
        filters: Any = None,
        mode: str = "hybrid",
        weights: dict[str, float] | None = None,
        fusion: str | None = None,
        image_weight: float = 0.5,
        negative: str | None = None,
        negative_weight: float = 1.0,
        explain: bool = False,
        facets: Sequence[str] | bool | None = None,
        anchor: bool = True,
        anchor_pool: int | None = None,
    ) -> SearchResponse:
        """Search by ``text``, ``image`` (PIL image, path or bytes) or both.

        ``mode``: "hybrid" fuses every signal the query reaches; "lexical", "text" or "image" uses one.
        ``fusion``: "calibrated" (the default when the index has a calibration: per-signal weights
        and score scales fitted on held-out queries, :mod:`prodsearch.search.calibration`), "rrf"
        (the default otherwise) or "weighted" (min-max normalised weighted sum).
        ``weights``: per-signal fusion weights (default: the calibrated ones for this query kind, else
        :data:`DEFAULT_WEIGHTS`). An image query whose photo is in the catalog (untuned similarity
        >= :data:`SAME_PHOTO`) returns that product first in every mode.
        ``filters``: a filter object (see :func:`prodsearch.index.filters.parse_filter`).
        ``image_weight``: for text+image queries in an aligned space, the image's share of the query vector.
        ``negative``: text whose meaning results should move away from (e.g. "leather"); its unit
        vector times ``negative_weight`` is subtracted from the query vector (Marqo's negative terms).
        ``anchor``: in a photo+text query the photo picks the candidates and the text re-ranks them
        ("like this, but black"; :mod:`prodsearch.search.compose`); False mixes them freely.
        ``anchor_pool``: how many of the photo's nearest products the text re-ranks (default: the
        calibrated size, else :data:`prodsearch.search.compose.ANCHOR_POOL`).
        """
        text = text.strip() if isinstance(text, str) else text
        if not text and image is None:
            raise QueryError("empty query: give a text, an image, or both")
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}; expected one of {MODES}")
        if fusion is None:
            fusion = "calibrated" if self.calibration else "rrf"
        if fusion not in FUSIONS:
            raise QueryError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")
        if fusion == "calibrated" and not self.calibration:
            raise QueryError("fusion 'calibrated' needs a calibrated index (prodsearch calibrate INDEX)")
        if k < 1 or offset < 0:
            raise QueryError(f"k must be >= 1 and offset >= 0, got k={k}, offset={offset}")
        if not 0.0 <= image_weight <= 1.0:
            raise QueryError(f"image_weight must be in [0, 1], got {image_weight}")
        if anchor_pool is not None and anchor_pool < 1:
            raise QueryError(f"anchor_pool must be >= 1, got {anchor_pool}")
        query_kind = (
            "text+image" if (text and image is not None) else ("image" if image is not None else "text")
        )
        # explicit rrf / weighted on a calibrated index: every signal equally (to compare against)
        w = (
            dict(DEFAULT_WEIGHTS)
            if fusion != "calibrated" and self.calibration
            else self.fusion_weights(query_kind)
        )
        if weights:
            bad = set(weights) - set(DEFAULT_WEIGHTS)
            if bad:
                raise QueryError(f"unknown weight(s) {sorted(bad)}; signals are {sorted(DEFAULT_WEIGHTS)}")
            w.update({s: float(v) for s, v in weights.items()})

        timings: dict[str, float] = {}
        t = time.perf_counter()
        mask = self._filter_mask(filters)
        allowed = self._attr_iids[mask] if mask is not None else None
        timings["filter"] = time.perf_counter() - t

        depth = max(CANDIDATES, k + offset)
        # signals a fused mode gives weight 0 are not computed at all (a second forward pass saved)
        reach = [x for x in MODE_SIGNALS[mode] if self._reaches(x, bool(text), image is not None)]
        want = tuple(x for x in reach if w.get(x, 1.0) > 0) or MODE_SIGNALS[mode]
        rankings, qvecs, pinned = retrieve(
            self,
            text,
            image,
            want,
            depth,
            filters,
            allowed,
            timings,
            negative=negative,
            image_weight=image_weight,
            negative_weight=negative_weight,
            anchor=anchor,
            anchor_pool=anchor_pool,
        )
        if rankings and all(len(h.iids) == 0 for h in rankings.values()):
            rest = tuple(x for x in reach if x not in want and x != "popularity")  # a prior, not an answer
            if rest:  # the weighted signals found nothing (no query word in the catalog): the others answer
                more, more_vecs, more_pinned = retrieve(self,
                    text, image, rest, depth, filters, allowed, timings,
                    negative=negative, image_weight=image_weight, negative_weight=negative_weight, anchor=anchor,
                    anchor_pool=anchor_pool,
                )  # fmt: skip
                rankings, qvecs, pinned = {**rankings, **more}, {**qvecs, **more_vecs}, pinned or more_pinned
                w = {**w, **{x: 1.0 for x in rest}}
        if not rankings:
            raise QueryError(
                f"mode {mode!r} cannot serve this query (signals reachable: {sorted(qvecs) or ['lexical'] if text else sorted(qvecs)}"
                f"; text->image needs an aligned model such as a `prodsearch train` run)"
            )
        return finish(
            self, rankings, w, fusion, k, offset, text, timings, mode, explain, facets, qvecs, pinned=pinned
        )

    @reading
    def signal_rankings(
        self,
        text: str | None = None,
        image: Any = None,
        *,
        depth: int = CANDIDATES,
        anchor: bool = False,
        anchor_pool: int | None = None,
    ) -> dict[str, Any]:
        """Each signal's own ranking of a hybrid query, before fusion (calibration, evaluation);
        ``anchor``: a photo+text query's rankings within the photo's anchor set (of ``anchor_pool``
        products), as search serves it."""
        rankings, _, _ = retrieve(
            self, text, image, MODE_SIGNALS["hybrid"], depth, None, None, {}, anchor=anchor,
            anchor_pool=anchor_pool,
        )  # fmt: skip
        return rankings

    def _stored_vector(self, kind: str, iid: int) -> np.ndarray | None:
        vi = self.vectors.get(kind)
        if vi is None or iid not in vi:
            return None
        return vi.get(np.asarray([iid]))[0]

    def _stored_vectors(self, kind: str, iids: Sequence[int]) -> list[np.ndarray | None]:
        return [self._stored_vector(kind, i) for i in iids]

    def similar(
        self, product_id: str, *, by: str = "fused", k: int = 10, filters: Any = None, explain: bool = False
    ) -> SearchResponse:
        """Products similar to ``product_id`` by its image vector, its text vector, or both fused."""
        return self.recommend([product_id], k=k, by=by, filters=filters, explain=explain)

    @reading
    def recommend(
        self,
        positive: Sequence[str] = (),
        negative: Sequence[str] = (),
        *,
        by: str = "fused",
        k: int = 10,
        filters: Any = None,
        explain: bool = False,
        session: Sequence[Any] | None = None,
        half_life: float | None = None,
    ) -> SearchResponse:
        """Recommendations from products a shopper viewed (``positive``) and disliked (``negative``):
        the mean of the positive vectors minus half the mean of the negative ones, per vector kind
        (Qdrant's "average_vector" strategy); the input products are excluded.

        ``session``: the shopper's recent events, oldest first (:class:`prodsearch.interactions.session.SessionEvent`
        or dicts ``{"product_id", "event": viewed|clicked|disliked (or view/click/add_to_cart/purchase),
        "timestamp"?}``), weighed by recency: weight ``0.5 ** (age / half_life)``, age in seconds
        before the latest event when every event has a timestamp, else in events (``half_life``
        default: :data:`~prodsearch.interactions.session.HALF_LIFE_S` or ``HALF_LIFE_EVENTS``).
        ``positive`` / ``negative`` ids given beside it count as current (weight 1)."""
        if by not in ("fused", "image", "text"):
            raise QueryError(f"by must be 'fused', 'image' or 'text', got {by!r}")
        from prodsearch.interactions.session import session_weights

        pos_w, neg_w = session_weights(session or (), half_life=half_life)
        pos_w.update(dict.fromkeys(positive, 1.0))
        neg_w.update(dict.fromkeys(negative, 1.0))
        if not pos_w:
            raise QueryError("recommend needs at least one positive product id (or a viewed/clicked event)")
        pos_iids = self._iids_or_raise(list(pos_w))
        neg_iids = self._iids_or_raise(list(neg_w)) if neg_w else []
        pos_weight, neg_weight = np.asarray(list(pos_w.values())), np.asarray(list(neg_w.values()))
        kinds = [k_ for k_ in ("text", "image") if by in ("fused", k_) and k_ in self.vectors]
        timings: dict[str, float] = {}
        t = time.perf_counter()
        mask = self._filter_mask(filters)
        allowed = self._attr_iids[mask] if mask is not None else None
        timings["filter"] = time.perf_counter() - t
        rankings, qvecs = {}, {}
        t = time.perf_counter()
        depth = CANDIDATES + len(pos_iids) + len(neg_iids)
        for kind in kinds:
            pv = [
                (v, w)
                for v, w in zip(self._stored_vectors(kind, pos_iids), pos_weight, strict=True)
                if v is not None
            ]
            if not pv:
                continue
            q = np.average([v for v, _ in pv], axis=0, weights=[w for _, w in pv])
            nv = [
                (v, w)
                for v, w in zip(self._stored_vectors(kind, neg_iids), neg_weight, strict=True)
                if v is not None
            ]
            if nv:
                q = q - 0.5 * np.average([v for v, _ in nv], axis=0, weights=[w for _, w in nv])
            q = l2_normalize(q[None])[0]
            qvecs[kind] = q
            rankings[kind] = self.vectors[kind].search(
                q[None], depth, filter=self._parse_filter(filters), allowed=allowed
            )[0]
        timings["ann"] = time.perf_counter() - t
        if not rankings:
            raise QueryError(f"the given products have no {by} vectors")
        return finish(
            self,
            rankings,
            dict(DEFAULT_WEIGHTS),
            "rrf",
            k,
            0,
            None,
            timings,
            f"similar:{by}",
            explain,
            None,
            qvecs,
            exclude=list(pos_iids) + list(neg_iids),
        )

    def _iids_or_raise(self, ids: Sequence[str]) -> list[int]:
        missing = [i for i in ids if i not in self.store]
        if missing:
            raise ProductNotFoundError(f"unknown product id(s): {', '.join(map(repr, missing[:10]))}")
        return list(self.store.iid_of(list(ids)))

    @reading
    def get(self, product_id: str) -> Product:
        return self.store.get(product_id)

    # ------------------------------------------------------------------ live updates
    def upsert(self, products: Sequence[Product]) -> dict[str, int]:
        """Add or update products (already validated, images checked) as one atomic, logged write.

        Only new or changed products are encoded, before anything is written, so a failure (e.g. an
        encoder error) leaves the index exactly as it was."""
        from prodsearch.search.builder import encode_products
        from prodsearch.search.writer import vectors_by_id

        products = list(products)
        # planned, encoded and committed under the writer's mutex, so that a model switch
        # (registry/swap.py) cannot come between encoding with one model and committing
        with self._writer._mutex:
            todo = self.store.plan(products).changed
            vectors = vectors_by_id(todo, encode_products(self.embedder, todo)) if todo else {}
            res = self._writer.write(products, vectors=vectors)
        return {"added": len(res.added), "updated": len(res.updated), "unchanged": len(res.unchanged)}

    def delete(self, ids: Sequence[str]) -> int:
        """Delete products by id (unknown ids raise :class:`ProductNotFoundError`, nothing deleted)."""
        return len(self._writer.write(delete=list(ids)).deleted)

    def compact(self) -> int:
        """Merge pending writes into the main vector and BM25 structures and save them (searches go
        on meanwhile); returns the log sequence number the saved index includes."""
        return self._writer.compact(on_saved=self._save_manifest)

    def _save_manifest(self) -> None:
        self.manifest.backend = self._writer.backend
        self.manifest.counts = {"products": len(self.store), **{k: len(v) for k, v in self.vectors.items()}}
        self.manifest.save(self.root)
