"""Encoding products' texts and photos on a Ray cluster with Ray Data (issue 10, item 3).

Pipeline (clip-retrieval's reader -> mapper -> writer, with per-stage timings)::

    driver: keys (sha256 of each text, content hash of each photo) minus those already in the
            feature cache
      -> read tasks:      photo bytes from their paths (shared storage on a real cluster)
      -> encoder actors:  one loaded embedder per actor (CPU or GPU resources each); decode the
                          photos and encode a batch of texts or photos
      -> driver writer:   each finished batch goes into the feature cache in one transaction

Resumable: a dead actor is restarted by Ray Data and its batch retried; batches already written
are never redone, even when the whole job dies, because the next run starts from the cache
(image keys are the same ``(encoder spec hash, file sha256)`` keys as the single-process image
cache, so both paths share work). Vectors come back bit-identical to the single-process build:
each actor builds the same embedder (its spec is checked against the driver's) and vectors
are per item, independent of batch composition for the shipped encoders.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prodsearch.catalog.images import file_sha256
from prodsearch.catalog.schema import Product
from prodsearch.distributed.cluster import RayAddress, connect_ray
from prodsearch.encoders.base import Embedder, progress_bar
from prodsearch.encoders.cache import FeatureCache
from prodsearch.errors import ConfigError, EncoderError, ProdsearchError

log = logging.getLogger(__name__)

EmbedderFactory = Callable[[], Embedder]
STAGES = ("load", "read", "decode", "encode")


@dataclass
class RayEncodeConfig:
    """How the encoding job uses the cluster (one source of defaults for the CLI and the library).

    ``actors``: encoder actors (each loads one embedder); ``batch_size``: items per actor call;
    ``cpus_per_actor`` / ``gpus_per_actor``: Ray resources reserved per actor;
    ``max_restarts``: how often a dead actor is restarted (-1: always, Ray Data's default).
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
    """What the last job did: items asked for, found in the cache, computed; seconds per stage.

    ``timings``: ``plan`` (cache lookups), ``load`` (model loading in the actors), ``read`` /
    ``decode`` / ``encode`` (summed over workers),
    ``write`` (driver: cache writes), ``wall`` (the whole call).
    """

    items: int = 0
    cached: int = 0
    computed: int = 0
    batches: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
        return (
            f"ray: {self.items} unique items, {self.cached} from the feature cache, {self.computed} encoded "
            f"in {self.batches} batches; {stages}"
        )


def text_key(text: str) -> str:
    return "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------- Ray Data stages
def _read_stage(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Task stage: photo bytes from each image row's path (text rows pass through)."""
    t = time.perf_counter()
    data = np.empty(len(batch["kind"]), dtype=object)
    for i, (kind, path) in enumerate(zip(batch["kind"], batch["path"], strict=True)):
        data[i] = open(path, "rb").read() if kind == "image" else b""
    batch["data"] = data
    batch["t_read"] = np.full(len(data), (time.perf_counter() - t) / max(1, len(data)))
    return batch


class _EncoderActor:
    """One loaded embedder per actor; ``__call__`` decodes and encodes one batch of rows."""

    def __init__(self, factory: EmbedderFactory, expected_spec: dict[str, Any]):
        t = time.perf_counter()
        self.embedder = factory()
        self.embedder.check_compatible(expected_spec, where="the driver's embedder")
        self.load_s = time.perf_counter() - t  # reported with the first batch

    def _take_load(self) -> float:
        load, self.load_s = self.load_s, 0.0
        return load

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from prodsearch.catalog.images import load_image

        n = len(batch["kind"])
        vectors = np.empty(n, dtype=object)
        t_decode = t_encode = 0.0
        for kind in ("text", "image"):
            rows = [i for i in range(n) if batch["kind"][i] == kind]
            if not rows:
                continue
            t = time.perf_counter()
            if kind == "text":
                items: list[Any] = [str(batch["text"][i]) for i in rows]
            else:
                items = [load_image(bytes(batch["data"][i]), name=str(batch["path"][i])) for i in rows]
            t_decode += time.perf_counter() - t
            t = time.perf_counter()
            enc = self.embedder.text if kind == "text" else self.embedder.image
            if enc is None:
                raise EncoderError(f"embedder {self.embedder.name!r} has no {kind} encoder")
            vecs = np.ascontiguousarray(enc.encode(items, batch_size=len(items)), dtype=np.float32)
            t_encode += time.perf_counter() - t
            for j, i in enumerate(rows):
                vectors[i] = vecs[j].tobytes()
        return {
            "key": batch["key"],
            "kind": batch["kind"],
            "vector": vectors,
            "t_load": np.full(n, self._take_load() / n),
            "t_read": batch["t_read"],
            "t_decode": np.full(n, t_decode / n),
            "t_encode": np.full(n, t_encode / n),
        }


# ---------------------------------------------------------------------------- driver
class RayEncoder:
    """Drop-in for :func:`prodsearch.search.builder.encode_products` that runs on a Ray cluster.

    ``factory``: a picklable zero-argument callable building the embedder inside each actor
    (e.g. ``EmbedderRecipe.build``); its spec must equal the driver's embedder's.
    ``cache``: where finished batches are written (default: the shared feature cache).
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
    ) -> dict[str, tuple[list[int], np.ndarray]]:
        """``{kind: (positions, (N, D) vectors)}`` exactly as :func:`encode_products` returns it.

        ``batch_size`` is the local build's; the Ray batch size is ``config.batch_size``.
        """
        t_start = time.perf_counter()
        self.report = rep = RayEncodeReport()
        self.connect()
        t = time.perf_counter()
        towers = {"text": embedder.text, "image": embedder.image}
        keys: dict[str, list[str]] = {"text": [], "image": []}
        positions: dict[str, list[int]] = {"text": [], "image": []}
        source: dict[tuple[str, str], str] = {}  # (kind, key) -> text or path
        for i, p in enumerate(products):
            text = p.full_text()
            k = text_key(text)
            keys["text"].append(k)
            positions["text"].append(i)
            source[("text", k)] = text
            if towers["image"] is not None and p.image_path:
                k = p.image_hash or file_sha256(p.image_path)
                keys["image"].append(k)
                positions["image"].append(i)
                source[("image", k)] = p.image_path
        found: dict[tuple[str, str], np.ndarray] = {}
        for kind, enc in towers.items():
            if enc is None or not keys[kind]:
                continue
            uniq = list(dict.fromkeys(keys[kind]))
            for k, v in zip(uniq, self.cache.get_many(enc.spec_hash(), uniq, enc.dim), strict=True):
                if v is not None:
                    found[(kind, k)] = v
        todo = [ks for ks in source if ks not in found]
        rep.items = len(source)
        rep.cached = len(found)
        rep.timings["plan"] = time.perf_counter() - t
        log.info("ray encode: %d unique items, %d cached, %d to compute", rep.items, rep.cached, len(todo))

        if todo:
            found.update(self._run(embedder, todo, source, progress))
        out: dict[str, tuple[list[int], np.ndarray]] = {}
        for kind, enc in towers.items():
            if enc is None or not positions[kind]:
                continue
            vecs = np.stack([found[(kind, k)] for k in keys[kind]]) if keys[kind] else None
            out[kind] = (positions[kind], vecs)
        rep.timings["wall"] = time.perf_counter() - t_start
        return out

    def _run(
        self,
        embedder: Embedder,
        todo: list[tuple[str, str]],
        source: dict[tuple[str, str], str],
        progress: bool,
    ) -> dict[tuple[str, str], np.ndarray]:
        import ray
        import ray.data

        rep, cfg = self.report, self.config
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        rows = [
            {
                "kind": kind,
                "key": key,
                "text": source[(kind, key)] if kind == "text" else "",
                "path": source[(kind, key)] if kind == "image" else "",
            }
            for kind, key in sorted(todo, key=lambda ks: ks[0] != "text")  # texts first: homogeneous batches
        ]
        ds = (
            ray.data.from_items(rows)
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
        towers = {"text": embedder.text, "image": embedder.image}
        got: dict[tuple[str, str], np.ndarray] = {}
        spent = dict.fromkeys(STAGES, 0.0)
        t_write = 0.0
        bar = progress_bar(len(rows), progress, "encoding on Ray", unit="item")
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                t = time.perf_counter()
                for kind, enc in towers.items():
                    sel = [i for i, k in enumerate(batch["kind"]) if k == kind]
                    if not sel or enc is None:
                        continue
                    ks = [str(batch["key"][i]) for i in sel]
                    vecs = np.stack([np.frombuffer(batch["vector"][i], dtype=np.float32) for i in sel])
                    if vecs.shape[1] != enc.dim:
                        raise EncoderError(
                            f"Ray actors returned {kind} vectors of dim {vecs.shape[1]}, expected {enc.dim}"
                        )
                    self.cache.put_many(enc.spec_hash(), ks, vecs, spec=enc.spec())
                    got.update({(kind, k): v for k, v in zip(ks, vecs, strict=True)})
                for stage in STAGES:
                    spent[stage] += float(np.sum(batch[f"t_{stage}"]))
                rep.batches += 1
                bar.update(len(batch["kind"]))
                t_write += time.perf_counter() - t
        except Exception as err:  # a Ray task error: name the cause, not Ray's stack
            cause = _cause(err)
            if isinstance(cause, ProdsearchError):  # e.g. an ImageError naming the photo, raised in an actor
                raise cause from None
            raise EncoderError(
                f"Ray encoding job failed after {len(got)} of {len(rows)} items were written to the feature "
                f"cache (they will not be redone): {type(cause).__name__}: {str(cause).strip().splitlines()[-1:]}"
            ) from err
        finally:
            bar.close()
        rep.computed = len(got)
        rep.timings.update(spent)
        rep.timings["write"] = t_write
        return got


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
