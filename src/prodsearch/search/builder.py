"""Build or incrementally update an index folder from a catalog file.

reader -> plan (what is new, changed, gone) -> encode (only new/changed products) -> one atomic
logged commit through :class:`~prodsearch.search.writer.IndexWriter` -> compaction (vector and
lexical indexes saved) -> manifest, with per-stage timings (clip-retrieval habit). Safe to re-run:
an unchanged catalog does no work; a run killed before its commit changed nothing, and one killed
after it is completed from the log by the next open or run (equal to a clean build).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.catalog.schema import ColumnMapping, Product
from prodsearch.encoders.base import Embedder
from prodsearch.errors import CatalogError, ConfigError, EncoderMismatchError
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
            if embedder.joint is not None:  # a trained model's space: photos projected into it
                joint = embedder.joint_from_base("image", vecs)
                if joint is None:  # (the shared feature cache makes the second pass cheap)
                    joint = _encode_images(
                        embedder.joint, items, hashes, batch_size=batch_size, progress=progress
                    )
                out["joint"] = (pos, joint)
    return out


def _encode_images(embedder: Embedder, paths: list[str], hashes: list[str | None], **kw: Any) -> np.ndarray:
    image = embedder.image
    encode_paths = getattr(image, "encode_paths", None)
    if encode_paths is not None:  # cached path: features keyed by file content hash
        return encode_paths(paths, hashes, **kw)
    return embedder.encode_images(paths, **kw)


def _apply_index_kind(writer: Any) -> None:
    """Rebuild the embedded vector indexes saved with another kind or other build-time parameters
    (the compaction below saves them; a run killed before that leaves the old ones, and the
    manifest naming them, in place). Search-time parameters were set when the writer opened."""
    from prodsearch.index.backend import FaissBackend
    from prodsearch.index.vector import BUILD_PARAMS

    want = {k: v for k, v in writer.vector_params.items() if k == "kind" or k in BUILD_PARAMS}
    for kind, be in list(writer.vectors.items()):
        if not isinstance(be, FaissBackend):
            continue
        have = be.params()
        # pq_m 0 means "automatic": compare what it resolves to
        changed = {k: v for k, v in want.items() if have.get(k) != v and not (k == "pq_m" and v == 0)}
        if changed:
            log.info(
                "rebuilding %s vectors: %s",
                kind,
                ", ".join(f"{k} {have.get(k)} -> {v}" for k, v in changed.items()),
            )
            writer.vectors[kind] = be.reindexed(**writer.vector_params)


def _vector_dims(embedder: Embedder) -> list[int]:
    """The dimension of every vector kind ``embedder`` writes (a joint model's space included)."""
    encoders = [embedder.text, embedder.image]
    if embedder.joint is not None:
        encoders += [embedder.joint.text, embedder.joint.image]
    return sorted({int(e.dim) for e in encoders if e is not None})


def check_index_options(
    options: dict[str, Any], index_kind: str, backend: str, dims: list[int]
) -> dict[str, Any]:
    """``--index-option`` settings of the embedded vector index, validated against every vector
    kind's dimension before anything is written."""
    from prodsearch.index.vector import BUILD_PARAMS, QUERY_PARAMS, VectorIndex

    known = (*BUILD_PARAMS, *QUERY_PARAMS)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"--index-option {unknown[0]}: unknown; expected one of {', '.join(known)}")
    if options and backend != "faiss":
        raise ConfigError(
            "--index-option sets the embedded FAISS index; a Milvus backend takes --milvus-option "
            "index_type=... index_params=... search_params=..."
        )
    for dim in dims:
        VectorIndex(dim, kind=index_kind, **options)  # raises ConfigError naming the bad value
    return dict(options)


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
    index_kind: str | None = None,
    index_options: dict[str, Any] | None = None,
    batch_size: int = 64,
    progress: bool = False,
    read_options: dict[str, Any] | None = None,
    encode: Callable[..., dict[str, tuple[list[int], np.ndarray]]] | None = None,
    backend: str | None = None,
    backend_options: dict[str, Any] | None = None,
) -> BuildReport:
    """Ingest ``catalog`` into the index folder ``out`` (created if needed) and return what happened.

    ``read_options``: further keyword arguments of :func:`prodsearch.catalog.read_catalog`
    (``encoding``, ``image_root``, ``fetch_options``).

    ``encode``: replaces :func:`encode_products` (same signature), e.g. a
    :class:`prodsearch.distributed.ray_encode.RayEncoder` that encodes on a Ray cluster; one with
    a ``stream`` method (same arguments, yielding ``(products, encoded)`` batches) has each batch
    committed as it arrives, so a build that dies keeps the batches it committed.

    ``backend``: where the vectors live: ``faiss`` (embedded, the default) or a Milvus location
    (``milvus://HOST:PORT``, or a ``.db`` path for Milvus Lite) with ``backend_options`` (see
    :class:`prodsearch.index.milvus.MilvusConfig`); checked before anything is written. An existing
    index keeps its backend.

    ``index_kind``: the embedded vector index, ``auto``, ``flat``, ``hnsw`` or ``ivfpq``
    (compressed, see :mod:`prodsearch.index.vector`); ``index_options``: its parameters
    (:data:`~prodsearch.index.vector.QUERY_PARAMS` take effect at once, a changed
    :data:`~prodsearch.index.vector.BUILD_PARAMS` rebuilds it; kept in the manifest for later
    builds, searches and the service); ``None`` keeps an existing index's kind
    (else ``auto``). A kind other than the one saved rebuilds the saved vectors with it.

    Raises :class:`EncoderMismatchError` when ``out`` already holds an index built with another encoder.
    """
    from prodsearch.catalog import read_catalog
    from prodsearch.catalog.readers import summarize_problems, write_problem_report
    from prodsearch.index.vector import COMPRESSED_KINDS, KINDS

    if index_kind is not None and index_kind not in KINDS:  # a backend is made only at the first write
        raise ConfigError(f"index kind {index_kind!r} is unknown; expected one of {', '.join(KINDS)}")
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
    if embedder is None:  # a given embedder (tests, the Python API) keeps its own size
        recipe = recipe.sized_for(
            [p.image_path for p in result.products if p.image_path],
            old_manifest.settings.get("recipe") if old_manifest is not None else None,
        )
        if getattr(encode, "factory", None) is not None:  # Ray actors build this same sized recipe
            encode.factory = recipe.build
    t = time.perf_counter()
    embedder = embedder or recipe.build()
    report.timings["load_model"] = time.perf_counter() - t
    if old_manifest is not None:
        try:
            embedder.check_compatible(old_manifest.embedder, where=f"index {out}")
        except EncoderMismatchError as err:
            raise EncoderMismatchError(f"{err}; use a new --out folder") from None
    kind_given = index_kind is not None or bool(index_options)
    if index_kind is None:
        index_kind = old_manifest.settings.get("index_kind", "auto") if old_manifest is not None else "auto"
    backend_name = old_manifest.backend if old_manifest is not None else layout.Manifest.backend
    backend_params = old_manifest.settings.get("backend_params", {}) if old_manifest is not None else {}
    if index_kind in COMPRESSED_KINDS and (backend if backend is not None else backend_name) != "faiss":
        raise ConfigError(
            f"--index-kind {index_kind} compresses the embedded FAISS index; a Milvus backend compresses "
            "with its own index: --milvus-option index_type=IVF_PQ (or IVF_SQ8)"
        )
    if backend is not None:
        from prodsearch.index.milvus import backend_choice

        backend_name, backend_params = backend_choice(
            backend,
            backend_options,
            out=out,
            old=old_manifest,
            attributes=result.mapping.attributes,
            embedder=embedder,
        )
    index_params = check_index_options(
        {
            **(old_manifest.settings.get("index_params", {}) if old_manifest is not None else {}),
            **(index_options or {}),
        },
        index_kind,
        backend_name,
        _vector_dims(embedder),
    )
    out.mkdir(parents=True, exist_ok=True)
    write_problem_report(result, out / layout.REPORT)
    manifest = layout.Manifest(
        embedder=embedder.spec(),
        mapping=result.mapping.to_dict(),
        source=str(Path(catalog).resolve()),
        settings={
            "recipe": recipe.to_dict(),
            "index_kind": index_kind,
            "index_params": index_params,
            "backend_params": backend_params,
            # kept until `prodsearch index` / `calibrate` fits it again (search/calibration.py)
            **(
                {"fusion": old_manifest.settings["fusion"]}
                if old_manifest and "fusion" in old_manifest.settings
                else {}
            ),
        },
        model_run=recipe.model,
        backend=backend_name,
        updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if old_manifest is None:
        manifest.save(out)  # an empty, valid index until the first commit below

    from prodsearch.search.writer import IndexWriter, vectors_by_id

    writer = IndexWriter.open(
        out,
        backend=manifest.backend,
        vector_params=manifest.vector_params(),
        auto_compact=False,
    )
    try:
        if kind_given:
            _apply_index_kind(writer)
        t = time.perf_counter()
        plan = writer.store.plan(result.products, delete_missing=delete_missing)
        report.timings["plan"] = time.perf_counter() - t
        t = time.perf_counter()
        stream = getattr(encode, "stream", None)
        encoded: dict[str, tuple[list[int], np.ndarray]] = {}
        if stream is not None:
            # a distributed encoder's batches are committed as they arrive (one logged commit
            # each): the driver holds one batch, and a re-run plans only what is not committed yet
            for chunk, part in stream(embedder, plan.changed, batch_size=batch_size, progress=progress):
                done = writer.write(chunk, vectors=vectors_by_id(chunk, part))
                report.added += len(done.added)
                report.updated += len(done.updated)
                report.encoded_text += len(part.get("text", ((), None))[0])
                report.encoded_images += len(part.get("image", ((), None))[0])
        else:
            encoded = (encode or encode_products)(
                embedder, plan.changed, batch_size=batch_size, progress=progress
            )
            report.encoded_text = len(encoded.get("text", ((), None))[0])
            report.encoded_images = len(encoded.get("image", ((), None))[0])
        report.timings["encode"] = time.perf_counter() - t
        streamed = report.added + report.updated
        t = time.perf_counter()
        # one atomic, logged commit of the whole catalog change (store rows + vectors; after a
        # streamed encode: the deletions)
        sync = writer.write(
            result.products,
            vectors=vectors_by_id(plan.changed, encoded) if stream is None else {},
            delete_missing=delete_missing,
        )
        report.timings["commit"] = time.perf_counter() - t
        report.added += len(sync.added)
        report.updated += len(sync.updated)
        report.unchanged = len(sync.unchanged) - streamed  # the stream's commits are not changes to it
        report.deleted = len(sync.deleted)
        t = time.perf_counter()

        def save_manifest() -> None:
            manifest.counts = {
                "products": len(writer.store),
                **{k: len(v) for k, v in writer.vectors.items()},
            }
            manifest.save(out)

        # also repairs a previous run that died before its compaction finished
        if writer.pending or old_manifest is None or writer.store.oplog_size():
            writer.compact(on_saved=save_manifest)
        elif old_manifest.settings.get("index_params", {}) != index_params:
            save_manifest()  # search-time settings only: the saved vectors stay valid
        report.timings["save"] = time.perf_counter() - t
    finally:
        writer.close()
    report.timings["total"] = time.perf_counter() - t0
    log.info("indexed %s -> %s: %s", catalog, out, report)
    return report
