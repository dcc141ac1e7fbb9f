"""A model version's "joint" vectors beside the served ones, and the atomic switch between versions.

A version's vectors are built aside (``models/vN/vectors``: every product photo in that model's
space, with the photo hash each vector was made from), never in the served index's files. The
switch (:func:`switch_to`), in the process that writes the index (``prodsearch models promote``,
``refresh``, or a running ``prodsearch serve`` through ``POST /admin/reload``):

1. blocks writes and compaction (searches go on), brings the target's vectors up to the store
   (only products written since they were built are encoded; none after a plain rollback);
2. saves the outgoing version's vectors as *its* snapshot (so a rollback needs no encoding);
3. writes ``models/switch.json`` (the intent), the target's vectors as a new generation of
   ``vectors/joint`` (with the log sequence number they include), then the manifest naming the
   target's model, then the registry's served pointer; removes the intent;
4. swaps the engine's joint vectors, embedder and manifest in one exclusive section of the index's
   reader-writer lock: a search holds the shared side for its whole run, so it sees one model's
   query encoder, vectors and fusion, never a mix, and none waits longer than that section.

A crash between the intent and its removal is finished by the next :meth:`Engine.open` (the switch
is idempotent), so the index never serves one model's vectors under another's manifest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.errors import ConfigError, IndexNotFoundError
from prodsearch.paths import atomic_write_text
from prodsearch.registry.store import SWITCH, Registry, now

log = logging.getLogger(__name__)

KIND = "joint"
PHOTOS = "photos.json"


# ----------------------------------------------------------------------------- photos and vectors
def photo_state(engine: Any) -> dict[int, str]:
    """``{iid: photo hash}`` of every stored product with a photo (what its joint vector depends on).
    The caller keeps writes out (the writer's mutex) while it uses the result."""
    products = [p for p in engine.store.iter_products() if p.image_path]
    iids = engine.store.iid_of([p.id for p in products]) if products else []
    return {int(i): p.image_hash or f"path:{p.image_path}" for i, p in zip(iids, products, strict=True)}


def encode_joint(engine: Any, embedder: Any, iids: Sequence[int], progress: bool = False) -> np.ndarray:
    """``(N, D)`` photos of products ``iids`` in ``embedder``'s joint space: projected from the stored
    untuned photo vectors when the model is a head over the index's photo encoder (no image is read),
    else encoded through the model's own image tower (the feature cache makes repeats cheap)."""
    iids = [int(i) for i in iids]
    joint = embedder.joint
    if not iids:
        return np.zeros((0, joint.image.dim), np.float32)
    image = engine.vectors.get("image")
    if image is not None and all(i in image for i in iids):
        vecs = embedder.joint_from_base("image", image.get(np.asarray(iids, dtype=np.int64)))
        if vecs is not None:
            return np.asarray(vecs, np.float32)
    from prodsearch.search.builder import _encode_images

    products = engine.store.by_iids(iids)
    return _encode_images(
        joint, [p.image_path for p in products], [p.image_hash for p in products], progress=progress
    )


def new_backend(engine: Any, dim: int) -> Any:
    from prodsearch.index.backend import create_backend

    w = engine._writer
    return create_backend(w.backend, int(dim), vector_kind=KIND, **w.vector_params)


def copy_backend(engine: Any, src: Any) -> Any:
    """A standalone copy of a backend's live vectors (pending writes included)."""
    iids = np.asarray(src.iids, dtype=np.int64)
    out = new_backend(engine, src.dim)
    if len(iids):
        out.upsert(iids, src.get(iids))
    out.compact()
    return out


def save_snapshot(reg: Registry, version: str, backend: Any, photos: dict[int, str], seq: int) -> None:
    """Save a version's joint vectors and the photo hash of each (checksummed together)."""
    vdir = reg.vectors_dir(version)
    vdir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"iids": list(photos), "hashes": list(photos.values())})
    atomic_write_text(vdir / PHOTOS, text)
    backend.compact()
    backend.save(vdir, KIND, meta={"applied_seq": seq, "photos_sha256": _sha(text)})


def load_snapshot(engine: Any, reg: Registry, version: str) -> tuple[Any, dict[int, str]]:
    """A version's saved joint vectors and photo hashes; ``(None, {})`` if it has none. A snapshot
    whose photo list does not match its vectors (a save that died between the two) is kept but
    treated as knowing no photo, so every vector is made again."""
    from prodsearch.index.backend import load_backend

    vdir = reg.vectors_dir(version)
    if not (vdir / f"{KIND}.json").is_file():
        return None, {}
    backend = load_backend(engine._writer.backend, vdir, KIND)
    text = (vdir / PHOTOS).read_text("utf-8") if (vdir / PHOTOS).is_file() else ""
    saved = json.loads((vdir / f"{KIND}.json").read_text("utf-8")).get("photos_sha256")
    if not text or saved != _sha(text):
        log.warning("%s: photo list does not match the saved vectors; re-encoding them all", vdir)
        return backend, {}
    data = json.loads(text)
    return backend, {int(i): h for i, h in zip(data["iids"], data["hashes"], strict=True)}


def catch_up(
    engine: Any,
    backend: Any,
    photos: dict[int, str],
    embedder: Any,
    state: dict[int, str],
    progress: bool = False,
) -> int:
    """Bring a version's vectors to the store's products ``state``: drop gone or re-photographed
    products, encode new or re-photographed ones. Updates ``photos``; returns how many were encoded."""
    stale = [i for i in np.asarray(backend.iids).tolist() if state.get(int(i)) != photos.get(int(i))]
    if stale:
        backend.delete(np.asarray(stale, dtype=np.int64))
    todo = [i for i, h in state.items() if photos.get(i) != h or i not in backend]
    if todo:
        backend.upsert(np.asarray(todo, dtype=np.int64), encode_joint(engine, embedder, todo, progress))
    photos.clear()
    photos.update(state)
    return len(todo)


def build_snapshot(engine: Any, reg: Registry, version: str, embedder: Any, progress: bool = False) -> Any:
    """Build (or bring up to date) a version's joint vectors aside from the served ones and save them.
    Searches and writes go on; returns the backend."""
    w = engine._writer
    backend, photos = load_snapshot(engine, reg, version)
    if backend is None:
        backend = new_backend(engine, embedder.joint.image.dim)
    with w._mutex:  # a consistent product list; writes wait, searches go on
        with w.lock.write():
            w._catch_up()
        state, seq = photo_state(engine), w._seq
    n = catch_up(engine, backend, photos, embedder, state, progress)
    save_snapshot(reg, version, backend, photos, seq)
    log.info("version %s: %d product photos encoded into its joint space", version, n)
    return backend


# ----------------------------------------------------------------------------- views and the switch
def served_manifest(manifest: Any, embedder: Any, run_dir: Path, fusion: dict[str, Any] | None) -> Any:
    """The manifest of the index serving the model at ``run_dir`` with ``fusion``."""
    m = copy.deepcopy(manifest)
    m.embedder = embedder.spec()
    m.model_run = str(Path(run_dir).resolve())
    m.settings["recipe"] = {**m.settings.get("recipe", {}), "model": m.model_run}
    if fusion:
        m.settings["fusion"] = fusion
    else:
        m.settings.pop("fusion", None)
    m.updated_at = now()
    return m


def view(engine: Any, embedder: Any, backend: Any, run_dir: Path, fusion: dict[str, Any] | None) -> Any:
    """A read-only engine over the same store, text/photo vectors and lexical index as ``engine`` but
    with another model's query encoder, joint vectors and fusion (for evaluation; never closed)."""
    from prodsearch.search.engine import Engine

    vectors = {**engine.vectors, KIND: backend}
    v = Engine(
        engine.root,
        served_manifest(engine.manifest, embedder, run_dir, fusion),
        embedder,
        engine.store,
        vectors,
        engine.lexical,
    )
    v._writer = engine._writer  # its read lock
    if hasattr(engine, "popularity"):  # signals that are not the model's stay the served engine's
        v.popularity = engine.popularity
    return v


def load_embedder(reg: Registry, version: str, engine: Any) -> Any:
    """``version``'s index embedder, its untuned photo vectors at the size ``engine``'s index uses."""
    from prodsearch.training.embedder import load_index_embedder

    options = (engine.manifest.settings.get("recipe") or {}).get("image_options") or {}
    return load_index_embedder(reg.run_dir(version), untuned_image_size=options.get("image_size"))


def check_untuned_match(engine: Any, embedder: Any, version: str) -> None:
    """A version may only change the trained space: the index's untuned encoders must stay."""
    old, new = engine.manifest.embedder, embedder.spec()
    diff = [k for k in ("text", "image") if old.get(k) != new.get(k)]
    if diff:
        raise ConfigError(
            f"version {version}'s untuned {' and '.join(diff)} encoder differs from the index's "
            f"({old.get('name')!r} vs {new.get('name')!r}); index the catalog with it into a new folder instead"
        )


def require_embedded(engine: Any) -> None:
    if engine._writer.backend != "faiss":
        raise ConfigError(
            f"model versions need the embedded vector backend (this index uses {engine._writer.backend!r})"
        )


def switch_to(
    engine: Any,
    version: str,
    *,
    action: str = "promote",
    reg: Registry | None = None,
    recovering: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Make ``engine`` (and its index folder) serve ``version`` (see the module docstring).
    Returns a report: ``switched``, ``from``, ``to``, ``encoded`` products, ``seconds``, and
    ``swap_ms`` (how long searches were held)."""
    reg = reg or Registry(engine.root)
    require_embedded(engine)
    current = engine.model_version
    target = reg.get(version)
    if current == version and not recovering:
        return {
            "switched": False,
            "from": current,
            "to": version,
            "encoded": 0,
            "seconds": 0.0,
            "swap_ms": 0.0,
        }
    t0 = time.perf_counter()
    embedder = load_embedder(reg, version, engine)
    check_untuned_match(engine, embedder, version)
    backend, photos = load_snapshot(engine, reg, version)
    if backend is None:
        backend = new_backend(engine, embedder.joint.image.dim)
    w = engine._writer
    with w._compacting, w._mutex:  # no compaction, no write until the switch is done
        w._check_open()
        try:
            w._take_file_lock()
        except IndexNotFoundError as err:
            raise IndexNotFoundError(
                f"{err}: if `prodsearch serve` runs on it, switch there: POST /admin/reload "
                f'{{"version": "{version}"}} (bearer token)'
            ) from None
        with w.lock.write():
            w._catch_up()
        state, seq = photo_state(engine), w._seq
        encoded = catch_up(engine, backend, photos, embedder, state, progress)
        if not recovering and current not in (None, "unregistered") and KIND in engine.vectors:
            save_snapshot(reg, current, copy_backend(engine, engine.vectors[KIND]), state, seq)
        intent = reg.root / SWITCH
        atomic_write_text(intent, json.dumps({"to": version, "from": current, "action": action, "at": now()}))
        backend.compact()
        backend.save(engine.root / "vectors", KIND, meta={"applied_seq": seq})
        manifest = served_manifest(engine.manifest, embedder, reg.run_dir(version), target.fusion)
        manifest.save(engine.root)
        t = time.perf_counter()
        with w.lock.write():  # the in-memory swap: searches see the old model or the new, whole
            w.vectors[KIND] = backend
            engine.manifest = manifest
            engine._embedder = embedder
        swap_ms = (time.perf_counter() - t) * 1000
        reg.mark_served(version, action)
        if current not in (None, "unregistered", version):
            reg.set_status(current, "rolled-back" if action == "rollback" else "retired")
        reg.set_status(version, "promoted", note=action)
        intent.unlink(missing_ok=True)
    report = {
        "switched": True,
        "from": current,
        "to": version,
        "encoded": encoded,
        "seconds": round(time.perf_counter() - t0, 3),
        "swap_ms": round(swap_ms, 3),
    }
    log.info("index %s now serves model %s: %s", engine.root, version, report)
    return report


def recover(engine: Any) -> bool:
    """Finish a switch that died before its end (``models/switch.json`` left behind). Returns whether
    it did; a switch another process is running now (it holds the write lock) is left to it."""
    reg = Registry(engine.root)
    intent = reg.root / SWITCH
    if not intent.is_file():
        return False
    try:
        todo = json.loads(intent.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        intent.unlink(missing_ok=True)  # written atomically: unreadable means gone meanwhile
        return False
    try:
        engine._writer._take_file_lock()
    except IndexNotFoundError:
        log.info("a model switch of %s is under way in another process", engine.root)
        return False
    log.warning("finishing the interrupted switch of %s to model %s", engine.root, todo["to"])
    switch_to(engine, todo["to"], action=todo.get("action", "promote"), reg=reg, recovering=True)
    return True


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
