"""Encoding products' texts and photos on a Ray cluster with Ray Data (issue 10, item 3).

Pipeline (clip-retrieval's reader -> mapper -> writer, with per-stage timings)::

    driver: the products to encode, minus the vectors already in the feature cache
      -> read tasks:      photo bytes from their paths (shared storage on a real cluster)
      -> encoder actors:  one loaded embedder per actor (CPU or GPU resources each); decode the
                          photos and encode a batch of products (text, photo, trained "joint")
      -> driver writer:   each finished batch of products goes into the feature cache and, through
                          :meth:`RayEncoder.stream`, to the index's one write path
                          (:class:`~prodsearch.search.writer.IndexWriter`, one logged commit per
                          batch), so the driver never holds more than a batch of vectors

Resumable: a dead actor is restarted by Ray Data and its batch retried; batches already committed
are never redone, even when the whole job or the driver dies, because the next build plans only
the products the index does not hold yet (and finds computed vectors in the feature cache, whose
image keys are the same ``(encoder spec hash, file sha256)`` keys as the single-process image
cache, so both paths share work). Vectors come back bit-identical to the single-process build:
each actor builds the same embedder (its spec is checked against the driver's) and vectors are
per item, independent of batch composition for the shipped encoders.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prodsearch.catalog.images import file_sha256
from prodsearch.catalog.schema import Product
from prodsearch.distributed.cluster import RayAddress, connect_ray
from prodsearch.encoders.base import Embedder, Encoder, progress_bar
from prodsearch.encoders.cache import FeatureCache
from prodsearch.errors import ConfigError, EncoderError, ProdsearchError

log = logging.getLogger(__name__)

EmbedderFactory = Callable[[], Embedder]
STAGES = ("load", "read", "decode", "encode")
#: ``{kind: (positions, (N, D) vectors)}``, as :func:`prodsearch.search.builder.encode_products` returns
Encoded = dict[str, tuple[list[int], np.ndarray]]


@dataclass
class RayEncodeConfig:
    """How the encoding job uses the cluster (one source of defaults for the CLI and the library).

    ``actors``: encoder actors (each loads one embedder); ``batch_size``: products per actor call
    (and per index commit); ``cpus_per_actor`` / ``gpus_per_actor``: Ray resources reserved per
    actor; ``max_restarts``: how often a dead actor is restarted (-1: always, Ray Data's default).
    """

    address: str = "auto"
    actors: int = 2
    batch_size: int = 64
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    max_restarts: int = -1

    def __post_init__(self) -> None:
        RayAddress.parse(self.address)
        if self.actors < 1 or self.batch_size < 1:
            raise ConfigError(f"actors and batch_size must be >= 1, got {self.actors}, {self.batch_size}")
        if self.cpus_per_actor < 0 or self.gpus_per_actor < 0:
            raise ConfigError("cpus_per_actor and gpus_per_actor must be >= 0")


@dataclass
class RayEncodeReport:
    """What the last job did: products and vectors asked for, vectors found in the cache and
    computed on the cluster; seconds per stage.

    ``timings``: ``plan`` (cache lookups), ``load`` (model loading in the actors), ``read`` /
    ``decode`` / ``encode`` (summed over workers), ``write`` (driver: cache writes), ``commit``
    (the consumer of :meth:`RayEncoder.stream`: index commits), ``wall`` (the whole call).
    """

    products: int = 0
    items: int = 0
    cached: int = 0
    computed: int = 0
    batches: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
        return (
            f"ray: {self.products} products, {self.items} vectors: {self.cached} from the feature cache, "
            f"{self.computed} encoded in {self.batches} batches; {stages}"
        )


def text_key(text: str) -> str:
    return "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def vector_encoders(embedder: Embedder) -> dict[str, Encoder]:
    """The encoder behind each vector kind an index stores: ``text``, ``image`` and, with a
    trained model beside the untuned encoders, ``joint`` (photos in its space)."""
    out: dict[str, Encoder] = {"text": embedder.text}
    if embedder.image is not None:
        out["image"] = embedder.image
        if embedder.joint is not None and embedder.joint.image is not None:
            out["joint"] = embedder.joint.image
    return out


# ---------------------------------------------------------------------------- Ray Data stages
def _read_stage(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Task stage: photo bytes of the rows whose photo is encoded (others pass through)."""
    t = time.perf_counter()
    data = np.empty(len(batch["path"]), dtype=object)
    for i, (path, need) in enumerate(zip(batch["path"], batch["need_image"], strict=True)):
        data[i] = open(path, "rb").read() if need else b""
    batch["data"] = data
    batch["t_read"] = np.full(len(data), (time.perf_counter() - t) / max(1, len(data)))
    return batch


class _EncoderActor:
    """One loaded embedder per actor; ``__call__`` decodes and encodes one batch of products."""

    def __init__(self, factory: EmbedderFactory, expected_spec: dict[str, Any]):
        t = time.perf_counter()
        self.embedder = factory()
        self.embedder.check_compatible(expected_spec, where="the driver's embedder")
        self.encoders = vector_encoders(self.embedder)
        self.load_s = time.perf_counter() - t  # reported with the first batch

    def _take_load(self) -> float:
        load, self.load_s = self.load_s, 0.0
        return load

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rows ``pos, text, path, kinds ("text,image,joint": what to compute), data (photo bytes)``
        -> ``pos``, one column of float32 vector bytes per kind (``b""`` where not computed), timings."""
        from prodsearch.catalog.images import load_image

        n = len(batch["pos"])
        kinds = [set(str(k).split(",")) for k in batch["kinds"]]
        vectors = {kind: np.full(n, b"", dtype=object) for kind in ("text", "image", "joint")}
        t_decode = t_encode = 0.0

        def put(kind: str, rows: list[int], vecs: np.ndarray) -> None:
            vecs = np.ascontiguousarray(vecs, dtype=np.float32)
            for j, i in enumerate(rows):
                vectors[kind][i] = vecs[j].tobytes()

        rows = [i for i in range(n) if "text" in kinds[i]]
        if rows:
            t = time.perf_counter()
            put("text", rows, self.encoders["text"].encode([str(batch["text"][i]) for i in rows]))
            t_encode += time.perf_counter() - t
        photo_rows = [i for i in range(n) if kinds[i] & {"image", "joint"}]
        if photo_rows:
            t = time.perf_counter()
            photos = {i: load_image(bytes(batch["data"][i]), name=str(batch["path"][i])) for i in photo_rows}
            t_decode += time.perf_counter() - t
            t = time.perf_counter()
            for kind in ("image", "joint"):
                rows = [i for i in photo_rows if kind in kinds[i]]
                if not rows:
                    continue
                if kind not in self.encoders:
                    raise EncoderError(f"embedder {self.embedder.name!r} has no {kind} encoder")
                vecs = None
                if kind == "joint" and all(vectors["image"][i] for i in rows):  # a head over them?
                    base = np.stack([np.frombuffer(vectors["image"][i], dtype=np.float32) for i in rows])
                    vecs = self.embedder.joint_from_base("image", base)
                if vecs is None:
                    vecs = self.encoders[kind].encode([photos[i] for i in rows], batch_size=len(rows))
                put(kind, rows, vecs)
            t_encode += time.perf_counter() - t
        return {
            "pos": batch["pos"],
            **{f"vec_{kind}": col for kind, col in vectors.items()},
            "t_load": np.full(n, self._take_load() / n),
            "t_read": batch["t_read"],
            "t_decode": np.full(n, t_decode / n),
            "t_encode": np.full(n, t_encode / n),
        }


# ---------------------------------------------------------------------------- driver
@dataclass
class _Todo:
    """A product with at least one vector to compute: its keys, and the vectors the cache had."""

    pos: int
    keys: dict[str, str]
    cached: dict[str, np.ndarray]


class RayEncoder:
    """Encodes products on a Ray cluster: :meth:`stream` yields finished batches (what
    :func:`prodsearch.search.builder.build_index` commits one by one); calling it returns all
    vectors at once, as :func:`prodsearch.search.builder.encode_products` does.

    ``factory``: a picklable zero-argument callable building the embedder inside each actor
    (e.g. ``EmbedderRecipe.build``); its spec must equal the driver's embedder's.
    ``cache``: where computed vectors are kept (default: the shared feature cache).
    Call :meth:`connect` before writing anything so that a dead address fails first.
    """

    def __init__(
        self, config: RayEncodeConfig, factory: EmbedderFactory, *, cache: FeatureCache | None = None
    ):
        self.config = config
        self.factory = factory
        self.cache = cache if cache is not None else FeatureCache()
        self.report = RayEncodeReport()
        self._connected = False

    def connect(self) -> None:
        if not self._connected:
            connect_ray(self.config.address)
            self._connected = True

    def __call__(
        self, embedder: Embedder, products: Sequence[Product], *, batch_size: int = 64, progress: bool = False
    ) -> Encoded:
        """``{kind: (positions, (N, D) vectors)}`` of all ``products`` (positions in ``products``)."""
        parts: dict[str, tuple[list[int], list[np.ndarray]]] = {}
        for chunk, encoded in self._batches(embedder, products, progress):
            for kind, (rows, vecs) in encoded.items():
                got = parts.setdefault(kind, ([], []))
                got[0].extend(chunk[j] for j in rows)
                got[1].extend(vecs)
        out: Encoded = {}
        for kind, (pos, vecs) in parts.items():
            order = np.argsort(pos, kind="stable")
            out[kind] = ([pos[i] for i in order], np.stack([vecs[i] for i in order]))
        return out

    def stream(
        self, embedder: Embedder, products: Sequence[Product], *, batch_size: int = 64, progress: bool = False
    ) -> Iterator[tuple[list[Product], Encoded]]:
        """``(products of the batch, their vectors as encode_products returns them)`` per finished
        batch: first the products whose vectors are all in the feature cache, then Ray's batches
        as they arrive. ``batch_size`` is the local build's; Ray batches have ``config.batch_size``."""
        for chunk, encoded in self._batches(embedder, products, progress):
            yield [products[i] for i in chunk], encoded

    def _batches(
        self, embedder: Embedder, products: Sequence[Product], progress: bool
    ) -> Iterator[tuple[list[int], Encoded]]:
        """:meth:`stream` with positions in ``products`` instead of the products."""
        t_start = time.perf_counter()
        self.report = rep = RayEncodeReport(products=len(products))
        rep.timings = {"plan": 0.0, "commit": 0.0}
        self.connect()
        encoders = vector_encoders(embedder)
        todo: list[_Todo] = []
        bs = self.config.batch_size
        for s in range(0, len(products), bs):
            t = time.perf_counter()
            chunk = list(range(s, min(len(products), s + bs)))
            keys = {i: self._keys(products[i], encoders) for i in chunk}
            cached: dict[int, dict[str, np.ndarray]] = {i: {} for i in chunk}
            for kind, enc in encoders.items():
                rows = [i for i in chunk if kind in keys[i]]
                if rows:
                    for i, v in zip(
                        rows,
                        self.cache.get_many(enc.spec_hash(), [keys[i][kind] for i in rows], enc.dim),
                        strict=True,
                    ):
                        if v is not None:
                            cached[i][kind] = v
            rep.items += sum(len(keys[i]) for i in chunk)
            rep.cached += sum(len(cached[i]) for i in chunk)
            done = [i for i in chunk if len(cached[i]) == len(keys[i])]
            todo.extend(_Todo(i, keys[i], cached[i]) for i in chunk if len(cached[i]) < len(keys[i]))
            rep.timings["plan"] += time.perf_counter() - t
            if done:
                yield from self._deliver([(i, cached[i]) for i in done])
        log.info(
            "ray encode: %d products, %d vectors, %d cached; %d products to encode",
            rep.products,
            rep.items,
            rep.cached,
            len(todo),
        )
        if todo:
            yield from self._run(embedder, encoders, products, todo, progress)
        rep.timings["wall"] = time.perf_counter() - t_start

    @staticmethod
    def _keys(product: Product, encoders: dict[str, Encoder]) -> dict[str, str]:
        keys = {"text": text_key(product.full_text())}
        if "image" in encoders and product.image_path:
            photo = product.image_hash or file_sha256(product.image_path)
            keys.update({kind: photo for kind in ("image", "joint") if kind in encoders})
        return keys

    def _deliver(self, done: list[tuple[int, dict[str, np.ndarray]]]) -> Iterator[tuple[list[int], Encoded]]:
        """One batch to the consumer; the time it takes to come back is its commit."""
        chunk = [i for i, _ in done]
        encoded: Encoded = {}
        for kind in ("text", "image", "joint"):
            rows = [j for j, (_, vecs) in enumerate(done) if kind in vecs]
            if rows:
                encoded[kind] = (rows, np.stack([done[j][1][kind] for j in rows]))
        t = time.perf_counter()
        yield chunk, encoded
        self.report.timings["commit"] += time.perf_counter() - t

    def _run(
        self,
        embedder: Embedder,
        encoders: dict[str, Encoder],
        products: Sequence[Product],
        todo: list[_Todo],
        progress: bool,
    ) -> Iterator[tuple[list[int], Encoded]]:
        import ray
        import ray.data

        rep, cfg = self.report, self.config
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        by_pos = {item.pos: item for item in todo}
        rows = []
        for item in todo:
            p = products[item.pos]
            kinds = [k for k in item.keys if k not in item.cached]
            rows.append(
                {
                    "pos": item.pos,
                    "kinds": ",".join(kinds),
                    "text": p.full_text() if "text" in kinds else "",
                    "path": p.image_path or "",
                    "need_image": bool({"image", "joint"} & set(kinds)),
                }
            )
        ds = (
            # one block per batch: each finished batch reaches the driver (and the index) at once,
            # not when a larger block's last batch is done
            ray.data.from_items(rows, override_num_blocks=-(-len(rows) // cfg.batch_size))
            # Reading is I/O: it reserves no CPU, else the actors holding every CPU starve it (deadlock).
            .map_batches(_read_stage, batch_size=cfg.batch_size, batch_format="numpy", num_cpus=0)
            .map_batches(
                _EncoderActor,
                fn_constructor_kwargs={"factory": self.factory, "expected_spec": embedder.spec()},
                batch_size=cfg.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=cfg.actors),
                num_cpus=cfg.cpus_per_actor,
                num_gpus=cfg.gpus_per_actor,
                # Ray Data restarts dead actors and retries their batch by default (-1); only a
                # different choice is passed (these keywords are deprecated, with no named successor).
                **(
                    {}
                    if cfg.max_restarts == -1
                    else {"max_restarts": cfg.max_restarts, "max_task_retries": 0}
                ),
            )
        )
        spent = dict.fromkeys(STAGES, 0.0)
        t_write = 0.0
        delivered = 0
        bar = progress_bar(len(rows), progress, "encoding on Ray", unit="product")
        try:
            # no driver-side prefetch: a finished batch is committed at once, not lost in a buffer
            # when a later batch fails the job (the actors still run ahead)
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
                t = time.perf_counter()
                done = []
                for j, pos in enumerate(batch["pos"]):
                    item = by_pos[int(pos)]
                    vecs = dict(item.cached)
                    for kind in item.keys:
                        if kind not in vecs:
                            vecs[kind] = np.frombuffer(batch[f"vec_{kind}"][j], dtype=np.float32)
                    done.append((item.pos, vecs))
                for kind, enc in encoders.items():
                    new = [
                        (by_pos[p].keys[kind], v[kind])
                        for p, v in done
                        if kind not in by_pos[p].cached and kind in v
                    ]
                    if not new:
                        continue
                    vecs = np.stack([v for _, v in new])
                    if vecs.shape[1] != enc.dim:
                        raise EncoderError(
                            f"Ray actors returned {kind} vectors of dim {vecs.shape[1]}, expected {enc.dim}"
                        )
                    self.cache.put_many(enc.spec_hash(), [k for k, _ in new], vecs, spec=enc.spec())
                    rep.computed += len(new)
                for stage in STAGES:
                    spent[stage] += float(np.sum(batch[f"t_{stage}"]))
                rep.batches += 1
                bar.update(len(done))
                t_write += time.perf_counter() - t
                yield from self._deliver(done)
                delivered += len(done)
        except Exception as err:  # a Ray task error: name the cause, not Ray's stack
            cause = _cause(err)
            if isinstance(cause, ProdsearchError):  # e.g. an ImageError naming the photo, raised in an actor
                raise cause from None
            raise EncoderError(
                f"Ray encoding job failed after {delivered} of {len(rows)} products were encoded and "
                f"delivered (they will not be redone): {type(cause).__name__}: "
                f"{str(cause).strip().splitlines()[-1:]}"
            ) from err
        finally:
            bar.close()
            rep.timings.update(spent)
            rep.timings["write"] = t_write


def _cause(err: BaseException) -> BaseException:
    """The prodsearch error an actor raised, rebuilt from Ray's wrapper (which carries it only as
    remote traceback text), else the innermost exception."""
    import re

    from prodsearch import errors

    cur: BaseException = err
    while getattr(cur, "cause", None) is not None and cur.cause is not cur:  # type: ignore[attr-defined]
        cur = cur.cause  # type: ignore[attr-defined]
    found = re.findall(r"prodsearch\.errors\.(\w+): (.+)", str(err))
    if found:
        name, message = found[-1]
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, errors.ProdsearchError):
            return cls(message.strip())
    return cur


def ray_encoder_from_options(
    recipe: Any,
    address: str,
    *,
    actors: int | None = None,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float | None = None,
    cache: FeatureCache | None = None,
) -> RayEncoder:
    """A connected :class:`RayEncoder` whose actors build ``recipe`` (an ``EmbedderRecipe``).

    Options left ``None`` take :class:`RayEncodeConfig`'s defaults. Connects now, so that an
    address that does not answer fails before the caller writes anything.
    """
    given = {"actors": actors, "cpus_per_actor": cpus_per_actor, "gpus_per_actor": gpus_per_actor}
    config = RayEncodeConfig(address=address, **{k: v for k, v in given.items() if v is not None})
    encoder = RayEncoder(config, recipe.build, cache=cache)
    encoder.connect()
    return encoder
