"""A :class:`~prodsearch.index.backend.VectorBackend` on Milvus (a server or cluster, or Milvus Lite).

``prodsearch index CATALOG --out DIR --backend milvus://HOST:PORT`` (or ``--backend shop.db`` for
Milvus Lite, the embedded Milvus behind the same client API) keeps the vectors of each vector kind
in one Milvus collection, ``<collection>_<kind>``, with the product's attributes as scalar fields
(:mod:`prodsearch.index.milvus_filter`): the typed filter becomes a Milvus boolean expression and
is applied inside the engine during the ANN search, not by fetching and filtering in Python.

What stays in the index folder: the product store, the BM25 index (Milvus' BM25 function needs a
server >= 2.5 and ranks with its own analyzer, so the hybrid ranking would differ between
backends; the embedded BM25 keeps lexical results identical whatever holds the vectors and is
small next to the vectors), the manifest and, per kind, ``vectors/<kind>.json``: a pointer to the
collection (location, name, dim, index and search parameters, ``applied_seq``).

Every collection records the embedder that produced its vectors (a hash of its spec) and the
vector kind; opening or writing it with another one raises :class:`EncoderMismatchError` naming
the collection, so two indexes can never share or overwrite each other's vectors.

Writes go straight to Milvus (upsert and delete are Milvus' own, idempotent, so the writer's log
replay is safe); ``compact`` asks Milvus to flush, Milvus compacts segments itself.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from prodsearch.errors import (
    ClusterConnectionError,
    ConfigError,
    EncoderMismatchError,
    IndexNotFoundError,
    ProductNotFoundError,
    require,
)
from prodsearch.index.filters import Filter
from prodsearch.index.milvus_filter import SUFFIXES, ids_expression, scalar_fields, to_expression
from prodsearch.index.types import Hits
from prodsearch.paths import atomic_write_text

log = logging.getLogger(__name__)

NAME = "milvus"
#: Longest attribute value (characters) and most words per value the scalar fields hold.
MAX_TEXT = 2048
MAX_TOKENS = 256
_BATCH = 512  # rows per upsert call (keeps gRPC messages far below Milvus' 64 MB)
CONSISTENCY = ("Strong", "Bounded", "Session", "Eventually")
_PROPS = "prodsearch"


@dataclass
class MilvusConfig:
    """Where and how the vectors live in Milvus (saved in the manifest; one source of defaults).

    ``uri``: ``http://HOST:PORT`` (a server or cluster proxy) or a local ``.db`` path (Milvus Lite).
    ``collection``: name prefix; each vector kind gets ``<collection>_<kind>``.
    ``index_type`` / ``index_params`` / ``search_params``: Milvus' own (``HNSW`` with ``M`` and
    ``efConstruction``; ``FLAT`` is exact); ``None`` picks FLAT for ``--index-kind flat`` and
    HNSW otherwise. ``consistency_level``: Strong (read your writes) ... Eventually (cheapest on a
    cluster). ``partition_key``: an attribute whose keyword becomes Milvus' partition key (a
    cluster prunes partitions on ``eq``/``in`` filters of it). ``timeout_s``: per call.
    """

    uri: str
    collection: str
    index_type: str | None = None
    index_params: dict[str, Any] = field(default_factory=dict)
    search_params: dict[str, Any] = field(default_factory=dict)
    consistency_level: str = "Strong"
    partition_key: str | None = None
    attribute_fields: list[str] = field(default_factory=list)
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.consistency_level not in CONSISTENCY:
            raise ConfigError(
                f"Milvus consistency_level {self.consistency_level!r} is unknown; expected one of {CONSISTENCY}"
            )
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", self.collection):
            raise ConfigError(
                f"Milvus collection name {self.collection!r} must start with a letter or '_' and hold "
                "only letters, digits and '_'"
            )
        if self.partition_key is not None and self.partition_key not in self.attribute_fields:
            raise ConfigError(
                f"partition_key {self.partition_key!r} is not an attribute; attributes: {self.attribute_fields}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MilvusConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def parse_location(location: str) -> str | None:
    """The pymilvus ``uri`` for a ``--backend`` value, or ``None`` if it names no Milvus.

    ``milvus://HOST:PORT`` and ``http(s)://HOST:PORT`` name a server; a path ending in ``.db``
    names a Milvus Lite database file (created if needed).
    """
    if location.startswith("milvus://"):
        rest = location.removeprefix("milvus://")
        if not re.fullmatch(r"[^:/\s]+:\d{1,5}", rest):
            raise ConfigError(f"--backend {location!r}: expected milvus://HOST:PORT")
        return f"http://{rest}"
    if location.startswith(("http://", "https://")):
        return location
    if location.endswith(".db"):
        return str(Path(location).expanduser().resolve())
    return None


def connect(uri: str, timeout_s: float = 10.0) -> Any:
    """A connected ``MilvusClient``; :class:`ClusterConnectionError` naming ``uri`` if it cannot be."""
    pymilvus = require("pymilvus", "distributed")
    try:
        if uri.endswith(".db"):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        client = pymilvus.MilvusClient(uri=uri, timeout=timeout_s)
        client.list_collections(timeout=timeout_s)
    except Exception as err:  # pymilvus raises its own MilvusException, grpc errors, OSError...
        what = (
            "a Milvus Lite database file"
            if uri.endswith(".db")
            else "a Milvus server (its gRPC port, 19530 by default)"
        )
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ClusterConnectionError(
            f"Milvus at {uri} could not be reached within {timeout_s:g}s ({first}); expected {what} there"
        ) from None
    return client


def embedder_tag(spec: Mapping[str, Any]) -> dict[str, str]:
    """What a collection records of the embedder: its name and the hash of its full spec."""
    from prodsearch.encoders.base import spec_hash

    return {"name": str(spec.get("name")), "hash": spec_hash(dict(spec))}


class MilvusBackend:
    """One vector kind in one Milvus collection (see the module docstring)."""

    name: ClassVar[str] = NAME
    needs_attributes: ClassVar[bool] = True  # the writer passes each product's attributes to upsert

    def __init__(
        self,
        dim: int,
        *,
        vector_kind: str,
        milvus: Mapping[str, Any],
        embedder: Mapping[str, str],
        kind: str = "auto",
        client: Any = None,
        create: bool = True,
    ):
        self.dim = int(dim)
        self.vector_kind = vector_kind
        self.config = MilvusConfig.from_dict(milvus)
        self.embedder = dict(embedder)
        self.index_type = self.config.index_type or ("FLAT" if kind == "flat" else "HNSW")
        self.collection = f"{self.config.collection}_{vector_kind}"
        self.applied_seq = 0
        self.fields = {f: f"a{i}" for i, f in enumerate(self.config.attribute_fields)}
        self.client = client if client is not None else connect(self.config.uri, self.config.timeout_s)
        if not create and not self.client.has_collection(self.collection, timeout=self.config.timeout_s):
            raise IndexNotFoundError(
                f"{self._where()} does not exist (dropped, or another Milvus): the index's vectors are "
                "gone; rebuild the index"
            )
        self._ensure_collection()

    # ------------------------------------------------------------------ collection
    def _where(self) -> str:
        return f"Milvus collection {self.collection!r} at {self.config.uri}"

    def _properties(self) -> dict[str, str]:
        return {
            f"{_PROPS}.embedder": self.embedder["hash"],
            f"{_PROPS}.embedder_name": self.embedder["name"],
            f"{_PROPS}.vector_kind": self.vector_kind,
            f"{_PROPS}.dim": str(self.dim),
            f"{_PROPS}.attributes": json.dumps(self.config.attribute_fields),
        }

    def _ensure_collection(self) -> None:
        c, t = self.client, self.config.timeout_s
        if c.has_collection(self.collection, timeout=t):
            self.check_collection()
            return
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        for attr, prefix in self.fields.items():
            schema.add_field(f"{prefix}_text", DataType.VARCHAR, max_length=MAX_TEXT)
            schema.add_field(
                f"{prefix}_key",
                DataType.VARCHAR,
                max_length=MAX_TEXT,
                is_partition_key=attr == self.config.partition_key,
            )
            schema.add_field(f"{prefix}_num", DataType.DOUBLE)
            schema.add_field(f"{prefix}_isnum", DataType.BOOL)
            schema.add_field(
                f"{prefix}_tok",
                DataType.ARRAY,
                element_type=DataType.VARCHAR,
                max_capacity=MAX_TOKENS,
                max_length=MAX_TEXT,
            )
        index = c.prepare_index_params()
        params = dict(self.config.index_params)
        if self.index_type == "HNSW":
            params = {"M": 32, "efConstruction": 200, **params}
        index.add_index(field_name="vector", index_type=self.index_type, metric_type="IP", params=params)
        c.create_collection(
            self.collection,
            schema=schema,
            index_params=index,
            consistency_level=self.config.consistency_level,
            properties=self._properties(),
            timeout=t,
        )
        log.info("created %s (%s, dim %d)", self._where(), self.index_type, self.dim)

    def check_collection(self) -> None:
        """Raise :class:`EncoderMismatchError` if the collection holds another embedder's or kind's vectors."""
        desc = self.client.describe_collection(self.collection, timeout=self.config.timeout_s)
        props = desc.get("properties") or {}
        mine = self._properties()
        theirs = {k: props.get(k) for k in mine}
        if theirs[f"{_PROPS}.embedder"] is None:
            raise EncoderMismatchError(
                f"{self._where()} was not created by prodsearch (no recorded embedder); "
                "choose another --milvus-collection"
            )
        if theirs != mine:
            raise EncoderMismatchError(
                f"{self._where()} holds {theirs[f'{_PROPS}.vector_kind']} vectors of encoder "
                f"{theirs[f'{_PROPS}.embedder_name']!r} (spec {theirs[f'{_PROPS}.embedder']}, dim "
                f"{theirs[f'{_PROPS}.dim']}, attributes {theirs[f'{_PROPS}.attributes']}) but this index "
                f"expects {self.vector_kind} vectors of {mine[f'{_PROPS}.embedder_name']!r} (spec "
                f"{mine[f'{_PROPS}.embedder']}, dim {self.dim}, attributes {mine[f'{_PROPS}.attributes']}); "
                "use another --milvus-collection"
            )

    def params(self) -> dict[str, Any]:
        return {"index_type": self.index_type, **self.config.to_dict()}

    # ------------------------------------------------------------------ set of iids
    def __len__(self) -> int:
        res = self.client.query(
            self.collection, filter="", output_fields=["count(*)"], timeout=self.config.timeout_s
        )
        return int(res[0]["count(*)"])

    def __contains__(self, iid: object) -> bool:
        if isinstance(iid, bool) or not isinstance(iid, (int, np.integer)):
            return False
        got = self.client.get(
            self.collection, ids=[int(iid)], output_fields=["id"], timeout=self.config.timeout_s
        )
        return len(got) > 0

    @property
    def iids(self) -> np.ndarray:
        it = self.client.query_iterator(self.collection, batch_size=10_000, filter="", output_fields=["id"])
        out: list[int] = []
        try:
            while batch := it.next():
                out.extend(int(r["id"]) for r in batch)
        finally:
            it.close()
        return np.asarray(sorted(out), dtype=np.int64)

    @property
    def pending(self) -> int:
        return 0  # Milvus applies each write itself; nothing waits for our compaction

    # ------------------------------------------------------------------ writes
    def upsert(
        self,
        iids: Sequence[int] | np.ndarray,
        vectors: np.ndarray,
        attributes: Sequence[Mapping[str, str]] | None = None,
    ) -> None:
        iids = np.asarray(iids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (iids.size, self.dim):
            raise ConfigError(f"upsert: expected ({iids.size}, {self.dim}) vectors, got {vectors.shape}")
        if attributes is None and self.fields:
            raise ConfigError(
                f"{self._where()} filters inside Milvus: upsert needs each product's attributes"
            )
        if attributes is not None and len(attributes) != iids.size:
            raise ConfigError(f"upsert: {iids.size} iids but {len(attributes)} attribute records")
        rows = [
            self._row(int(i), vectors[n], attributes[n] if attributes is not None else {})
            for n, i in enumerate(iids)
        ]
        for s in range(0, len(rows), _BATCH):
            self.client.upsert(self.collection, rows[s : s + _BATCH], timeout=self.config.timeout_s)

    def _row(self, iid: int, vector: np.ndarray, attrs: Mapping[str, str]) -> dict[str, Any]:
        row: dict[str, Any] = {"id": iid, "vector": vector.tolist()}
        for attr, prefix in self.fields.items():
            derived = scalar_fields(attrs.get(attr))
            if len(derived["text"]) > MAX_TEXT or len(derived["tok"]) > MAX_TOKENS:
                raise ConfigError(
                    f"product iid {iid}: attribute {attr!r} is too long for a Milvus scalar field "
                    f"({len(derived['text'])} characters, {len(derived['tok'])} words; at most {MAX_TEXT} "
                    f"and {MAX_TOKENS}); leave it out of the mapping's attributes"
                )
            row.update({f"{prefix}_{s}": derived[s] for s in SUFFIXES})
        return row

    def delete(self, iids: Sequence[int] | np.ndarray) -> int:
        iids = [int(i) for i in np.asarray(iids, dtype=np.int64).reshape(-1)]
        if not iids:
            return 0
        present = self.client.get(
            self.collection, ids=iids, output_fields=["id"], timeout=self.config.timeout_s
        )
        if present:
            self.client.delete(
                self.collection, ids=[int(r["id"]) for r in present], timeout=self.config.timeout_s
            )
        return len(present)

    # ------------------------------------------------------------------ reads
    def get(self, iids: Sequence[int] | np.ndarray) -> np.ndarray:
        iids = [int(i) for i in np.asarray(iids, dtype=np.int64).reshape(-1)]
        rows = (
            self.client.get(
                self.collection, ids=iids, output_fields=["vector"], timeout=self.config.timeout_s
            )
            if iids
            else []
        )
        found = {int(r["id"]): r["vector"] for r in rows}
        missing = [i for i in iids if i not in found]
        if missing:
            raise ProductNotFoundError(f"iid(s) {missing[:10]} are not in {self._where()}")
        return np.asarray([found[i] for i in iids], dtype=np.float32).reshape(len(iids), self.dim)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        filter: Filter | None = None,
        allowed: np.ndarray | Sequence[int] | None = None,
    ) -> list[Hits]:
        """Top-``k`` by inner product; ``filter`` runs inside Milvus (``allowed`` only without one)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if filter is not None:
            expr = to_expression(filter, self.fields)
        elif allowed is not None:
            expr = ids_expression(np.asarray(allowed, dtype=np.int64).tolist())
        else:
            expr = ""
        if k < 1 or queries.shape[0] == 0:
            return [Hits.empty() for _ in range(queries.shape[0])]
        params: dict[str, Any] = {"metric_type": "IP", "params": dict(self.config.search_params)}
        if self.index_type == "HNSW":
            params["params"].setdefault("ef", max(128, k))
        res = self.client.search(
            self.collection,
            data=queries.tolist(),
            limit=int(k),
            filter=expr,
            output_fields=[],
            search_params=params,
            anns_field="vector",
            timeout=self.config.timeout_s,
        )
        out = []
        for hits in res:
            ids = np.asarray([h["id"] for h in hits], dtype=np.int64)
            scores = np.asarray([h["distance"] for h in hits], dtype=np.float32)
            order = np.lexsort((ids, -scores))  # ties by smaller iid, as the embedded index breaks them
            out.append(Hits(ids[order], scores[order]))
        return out

    # ------------------------------------------------------------------ maintenance
    def compact(self) -> None:
        try:
            self.client.flush(self.collection, timeout=self.config.timeout_s)
        except Exception as err:  # Milvus Lite / some proxies have no flush: Milvus persists anyway
            log.debug("flush of %s skipped: %s", self._where(), err)

    def save(self, directory: str | Path, name: str, *, meta: dict[str, Any]) -> None:
        """Write the pointer ``directory/name.json`` (the vectors themselves live in Milvus)."""
        self.applied_seq = int(meta.get("applied_seq", self.applied_seq))
        pointer = {
            "backend": NAME,
            "vector_kind": self.vector_kind,
            "dim": self.dim,
            "index_type": self.index_type,
            "milvus": self.config.to_dict(),
            "embedder": self.embedder,
            "collection": self.collection,
            "meta": {**meta, "applied_seq": self.applied_seq},
        }
        atomic_write_text(Path(directory) / f"{name}.json", json.dumps(pointer, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: str | Path, name: str) -> MilvusBackend:
        path = Path(directory) / f"{name}.json"
        try:
            pointer = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise IndexNotFoundError(
                f"{path}: not a readable Milvus pointer ({err}); rebuild the index"
            ) from None
        if pointer.get("backend") != NAME:
            raise IndexNotFoundError(
                f"{path} was not written by the Milvus backend (backend {pointer.get('backend')!r})"
            )
        self = cls(
            int(pointer["dim"]),
            vector_kind=pointer["vector_kind"],
            milvus=pointer["milvus"],
            embedder=pointer["embedder"],
            kind="flat" if pointer.get("index_type") == "FLAT" else "hnsw",
            create=False,
        )
        self.applied_seq = int(pointer.get("meta", {}).get("applied_seq", 0))
        return self


# ---------------------------------------------------------------------------- choosing the backend
def default_collection(out: str | Path) -> str:
    """``prodsearch_<folder>_<hash of its absolute path>``: one collection family per index folder."""
    import hashlib

    path = Path(out).resolve()
    stem = re.sub(r"[^A-Za-z0-9_]", "_", path.name)[:40] or "index"
    return f"prodsearch_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def preflight(config: MilvusConfig, embedder: Mapping[str, str], dims: Mapping[str, int]) -> None:
    """Check, before anything is written, that Milvus answers and that the collections this index
    would use are absent or hold this embedder's vectors (nothing is created here)."""
    client = connect(config.uri, config.timeout_s)
    for kind, dim in dims.items():
        name = f"{config.collection}_{kind}"
        if client.has_collection(name, timeout=config.timeout_s):
            MilvusBackend(dim, vector_kind=kind, milvus=config.to_dict(), embedder=embedder, client=client)


def backend_choice(
    location: str,
    options: Mapping[str, Any] | None,
    *,
    out: str | Path,
    old: Any,
    attributes: Sequence[str],
    embedder: Any,
) -> tuple[str, dict[str, Any]]:
    """``(backend name, backend params)`` for ``--backend LOCATION`` (checked with :func:`preflight`).

    ``old``: the index's existing manifest, if any (an index keeps the backend it was built with);
    ``embedder``: the :class:`~prodsearch.encoders.base.Embedder` the vectors come from.
    """
    from prodsearch.index.backend import DEFAULT_BACKEND

    if location in (DEFAULT_BACKEND, "embedded"):
        name, params = DEFAULT_BACKEND, {}
    else:
        uri = parse_location(location)
        if uri is None:
            raise ConfigError(
                f"--backend {location!r}: expected faiss (embedded), milvus://HOST:PORT, http(s)://HOST:PORT "
                "or a Milvus Lite file path ending in .db"
            )
        opts = dict(options or {})
        valid = set(MilvusConfig.__dataclass_fields__) - {"uri", "attribute_fields"}
        if set(opts) - valid:
            raise ConfigError(f"unknown Milvus option(s) {sorted(set(opts) - valid)}; valid: {sorted(valid)}")
        if old is not None and old.backend == NAME:  # keep the collection the index already uses
            opts.setdefault("collection", old.settings["backend_params"]["milvus"]["collection"])
        opts.setdefault("collection", default_collection(out))
        config = MilvusConfig(uri=uri, attribute_fields=sorted(attributes), **opts)
        tag = embedder_tag(embedder.spec())
        dims = {"text": embedder.text.dim, **({"image": embedder.image.dim} if embedder.image else {})}
        preflight(config, tag, dims)
        name, params = NAME, {"milvus": config.to_dict(), "embedder": tag}
    if old is not None and (old.backend, old.settings.get("backend_params", {})) != (name, params):
        where = old.settings.get("backend_params", {}).get("milvus", {}).get("uri", "the index folder")
        raise ConfigError(
            f"index {out} keeps its vectors in {old.backend} ({where}); it cannot move to --backend "
            f"{location} with other settings; build into a new --out folder"
        )
    return name, params
