"""Build or incrementally update an index folder from a catalog file.

reader -> store sync -> encode (only new/changed products) -> vector + lexical indexes -> manifest,
with per-stage timings (clip-retrieval habit). Safe to re-run: an unchanged catalog does no work,
and a crash at any point leaves an index that the next run repairs (products whose vectors are
missing are re-encoded; vectors whose products are gone are dropped).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.catalog.schema import ColumnMapping, Product
from prodsearch.encoders.base import Embedder
from prodsearch.errors import CatalogError, EncoderMismatchError
from prodsearch.search import layout
from prodsearch.search.recipe import EmbedderRecipe

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    index: str
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    encoded_text: int = 0
    encoded_images: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    problems_summary: str = ""

    @property
    def did_work(self) -> bool:
        return bool(self.added or self.updated or self.deleted or self.encoded_text or self.encoded_images)


def encode_products(
    embedder: Embedder, products: list[Product], *, batch_size: int = 64, progress: bool = False
) -> dict[str, tuple[list[int], np.ndarray]]:
    """Encode products' text and images. Returns ``{kind: (positions, (N, D) vectors)}``.

    Image vectors exist only for products with an image; positions index into ``products``.
    """
    out: dict[str, tuple[list[int], np.ndarray]] = {}
    if products:
        texts = [p.full_text() for p in products]
        out["text"] = (
            list(range(len(products))),
            embedder.encode_text(texts, batch_size=batch_size, progress=progress),
        )
    if embedder.image is not None:
        pos = [i for i, p in enumerate(products) if p.image_path]
        if pos:
            items = [products[i].image_path for i in pos]
            hashes = [products[i].image_hash for i in pos]
            vecs = _encode_images(embedder, items, hashes, batch_size=batch_size, progress=progress)
            out["image"] = (pos, vecs)
    return out


def _encode_images(embedder: Embedder, paths: list[str], hashes: list[str | None], **kw: Any) -> np.ndarray:
    image = embedder.image
    encode_paths = getattr(image, "encode_paths", None)
    if encode_paths is not None:  # cached path: features keyed by file content hash
        return encode_paths(paths, hashes, **kw)
    return embedder.encode_images(paths, **kw)


def build_index(
    catalog: str | Path,
    out: str | Path,
    *,
    mapping: ColumnMapping | None = None,
    recipe: EmbedderRecipe | None = None,
    embedder: Embedder | None = None,
    strict: bool = False,
    limit: int | None = None,
    delete_missing: bool = True,
    index_kind: str = "auto",
    batch_size: int = 64,
    progress: bool = False,
    read_options: dict[str, Any] | None = None,
) -> BuildReport:
    """Ingest ``catalog`` into the index folder ``out`` (created if needed) and return what happened.

    ``read_options``: further keyword arguments of :func:`prodsearch.catalog.read_catalog`
    (``encoding``, ``image_root``, ``fetch_options``).

    Raises :class:`EncoderMismatchError` when ``out`` already holds an index built with another encoder.
    """
    from prodsearch.catalog import read_catalog
    from prodsearch.catalog.readers import summarize_problems, write_problem_report
    from prodsearch.catalog.store import ProductStore

    out = Path(out)
    report = BuildReport(index=str(out))
    t0 = time.perf_counter()
    result = read_catalog(
        catalog, mapping, strict=strict, limit=limit, progress=progress, **(read_options or {})
    )
    report.timings["read"] = time.perf_counter() - t0
    report.rows, report.accepted, report.rejected = result.rows, len(result.products), len(result.problems)
    if result.problems:
        report.problems_summary = summarize_problems(result.problems)
    if not result.products:
        raise CatalogError(
            f"{catalog}: no valid products ({len(result.problems)} rows rejected)\n{report.problems_summary}"
        )

    recipe = recipe or EmbedderRecipe()
    old_manifest = layout.Manifest.load(out) if layout.is_index(out) else None
    t = time.perf_counter()
    embedder = embedder or recipe.build()
    report.timings["load_model"] = time.perf_counter() - t
    if old_manifest is not None:
        try:
            embedder.check_compatible(old_manifest.embedder, where=f"index {out}")
        except EncoderMismatchError as err:
            raise EncoderMismatchError(f"{err}; use a new --out folder") from None
    out.mkdir(parents=True, exist_ok=True)
    write_problem_report(result, out / layout.REPORT)

    from prodsearch.index.lexical import LexicalIndex
    from prodsearch.index.vector import VectorIndex

    with ProductStore(out / layout.STORE) as store:
        t = time.perf_counter()
        sync = store.sync(result.products, delete_missing=delete_missing)
        report.timings["store"] = time.perf_counter() - t
        report.added, report.updated = len(sync.added), len(sync.updated)
        report.unchanged, report.deleted = len(sync.unchanged), len(sync.deleted)

        vectors_dir = out / layout.VECTORS
        indexes: dict[str, VectorIndex] = {}
        for kind in layout.VECTOR_KINDS:
            enc = embedder.text if kind == "text" else embedder.image
            if enc is None:
                continue
            if old_manifest is not None and (vectors_dir / f"{kind}.json").exists():
                indexes[kind] = VectorIndex.load(vectors_dir, kind)
            else:
                indexes[kind] = VectorIndex(enc.dim, kind=index_kind)

        # What needs encoding: new/changed products, plus any product whose vectors are missing
        # (repairs an index whose last build died between the store commit and the vector save).
        live = np.asarray(store.all_iids(), dtype=np.int64)
        live_set = set(live.tolist())
        changed = set(sync.added) | set(sync.updated)
        for kind, vi in indexes.items():
            have = set(np.asarray(vi.iids).tolist())
            stale = have - live_set
            if stale:
                vi.remove(np.fromiter(stale, dtype=np.int64))
            missing = live_set - have
            if kind == "image":  # products without a photo never get an image vector
                missing = _iids_with_images(store, missing)
            changed |= missing
        todo = store.by_iids(sorted(changed)) if changed else []
        t = time.perf_counter()
        encoded = encode_products(embedder, todo, batch_size=batch_size, progress=progress)
        report.timings["encode"] = time.perf_counter() - t
        t = time.perf_counter()
        todo_iids = (
            np.asarray(store.iid_of([p.id for p in todo]), dtype=np.int64) if todo else np.zeros(0, np.int64)
        )
        for kind, vi in indexes.items():
            if kind in encoded:
                pos, vecs = encoded[kind]
                vi.add(todo_iids[pos], vecs)
                if kind == "text":
                    report.encoded_text = len(pos)
                else:
                    report.encoded_images = len(pos)
            if kind == "image":  # an updated product that lost its photo loses its image vector
                no_img = [int(todo_iids[i]) for i, p in enumerate(todo) if not p.image_path]
                if no_img:
                    vi.remove(np.asarray(no_img, dtype=np.int64))
        report.timings["vectors"] = time.perf_counter() - t

        t = time.perf_counter()
        work = report.did_work or old_manifest is None
        if work:
            for kind, vi in indexes.items():
                vi.save(vectors_dir, kind)
            lex = LexicalIndex()
            everything = list(store.iter_products())
            lex.build(
                np.asarray(store.iid_of([p.id for p in everything]), dtype=np.int64),
                [p.full_text() for p in everything],
            )
            lex.save(out / layout.LEXICAL)
        report.timings["save"] = time.perf_counter() - t

        manifest = layout.Manifest(
            embedder=embedder.spec(),
            mapping=result.mapping.to_dict(),
            source=str(Path(catalog).resolve()),
            counts={"products": len(store), **{k: len(v) for k, v in indexes.items()}},
            settings={"recipe": recipe.to_dict(), "index_kind": index_kind},
            model_run=recipe.model,
            updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        if work or old_manifest is None or old_manifest.counts != manifest.counts:
            manifest.save(out)
    report.timings["total"] = time.perf_counter() - t0
    log.info("indexed %s -> %s: %s", catalog, out, report)
    return report


def _iids_with_images(store: Any, iids: set[int]) -> set[int]:
    if not iids:
        return set()
    return {i for i, p in zip(sorted(iids), store.by_iids(sorted(iids)), strict=False) if p.image_path}
