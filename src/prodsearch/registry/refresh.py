"""``prodsearch refresh``: sync the catalog, re-train from the served model, evaluate, promote if better.

Steps (each can run alone, ``--step``; together they run in this order):

* ``sync``: the catalog into the index through ``build_index`` (incremental: new and changed products
  are encoded with the *served* model; the index's stored column mapping is used, so a catalog whose
  columns changed stops here with the reader's message, before anything is written);
* ``train``: a candidate warm-started from the served version's weights, with its config, on the
  index's products, with the registry's frozen split (no product ever held out is trained on; new
  products get their side by hash); registered as the next version, status "candidate";
* ``evaluate``: the candidate against the served version (:mod:`prodsearch.registry.evaluate`);
* ``promote``: switch to the candidate if its evaluation says it is better beyond the noise
  (:func:`prodsearch.registry.swap.switch_to`), else mark it "rejected".

Nothing before the switch writes the served model's files (the vectors, the manifest): a refresh
interrupted at any step leaves the index serving what it served.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prodsearch.errors import ConfigError
from prodsearch.registry.store import Registry

log = logging.getLogger(__name__)

STEPS = ("sync", "train", "evaluate", "promote")


def ensure_registered(engine: Any, reg: Registry | None = None) -> str:
    """The served version, registering the index's trained model as ``v1`` on first use: its run's
    release files are copied, its joint vectors kept as v1's, its run's split frozen, and the
    manifest pointed at the copy (same weights, so nothing is encoded)."""
    from prodsearch.registry.swap import copy_backend, photo_state, require_embedded, save_snapshot, switch_to

    reg = reg or Registry(engine.root)
    current = engine.model_version
    if current not in (None, "unregistered"):
        return current
    if current is None or "joint" not in engine.vectors:
        raise ConfigError(
            f"index {engine.root} has no trained model to start from; build it with one first: "
            f"prodsearch train CATALOG --out RUN && prodsearch index CATALOG --out {engine.root} --model RUN"
        )
    require_embedded(engine)
    run = Path(engine.manifest.model_run)
    rec = reg.add(run, status="candidate", parent=None, training={"imported": True})
    rec.fusion = engine.manifest.settings.get("fusion")
    reg.save(rec)
    if (run / "split.json").is_file():
        import json

        reg.freeze_split(json.loads((run / "split.json").read_text("utf-8")))
    w = engine._writer
    with w._mutex:
        state, seq = photo_state(engine), w._seq
        save_snapshot(reg, rec.version, copy_backend(engine, engine.vectors["joint"]), state, seq)
    switch_to(engine, rec.version, action="import", reg=reg)
    return rec.version


def sync(index: Path, catalog: Path, *, limit: int | None = None, progress: bool = False) -> Any:
    """The catalog (its first ``limit`` rows) into the index with the served model and the index's
    own column mapping."""
    from prodsearch.catalog.schema import ColumnMapping
    from prodsearch.search import layout
    from prodsearch.search.builder import build_index
    from prodsearch.search.recipe import EmbedderRecipe

    manifest = layout.Manifest.load(index)
    return build_index(
        catalog,
        index,
        mapping=ColumnMapping.from_dict(manifest.mapping),
        recipe=EmbedderRecipe.from_dict(manifest.settings.get("recipe", {})),
        limit=limit,
        progress=progress,
    )


def train_candidate(
    engine: Any,
    reg: Registry,
    *,
    epochs: int | None = None,
    interactions: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool = False,
    factory: Any = None,
) -> str:
    """Warm-start a candidate from the served version on the index's products; returns its version."""
    import json

    from prodsearch.training.main import train

    parent = ensure_registered(engine, reg)
    cfg = dict(reg.get(parent).config)
    if not cfg:
        raise ConfigError(f"version {parent} has no config.json to re-train with")
    cfg["max_products"] = None  # the index's products are the data (a first run may have sampled)
    cfg.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if epochs is not None:
        cfg["epochs"] = int(epochs)
    products = list(engine.store.iter_products())
    frozen = reg.frozen_split()
    extra = None
    if interactions is not None:
        from prodsearch.interactions.training import interaction_pairs

        pairs = interaction_pairs(interactions, [p.id for p in products])
        # a held-out product must not become a training target through a shopper's click either
        extra = [q for q in pairs if frozen.get(q.product_id, "train") == "train"]
        log.info("%d of %d interaction pairs name training-side products", len(extra), len(pairs))
    out = reg.root / f".train-{time.time_ns()}"
    try:
        result = train(
            None,
            out,
            cfg,
            products=products,
            factory=factory,
            progress=progress,
            init_from=reg.run_dir(parent),
            frozen_split=frozen,
            **({"interactions": extra} if extra else {}),
        )
        rec = reg.add(out, status="candidate", parent=parent, training={"seconds": result.seconds})
        rec.source_run = f"prodsearch refresh (warm start from {parent})"  # its folder was temporary
        reg.save(rec)
        reg.freeze_split(json.loads((out / "split.json").read_text("utf-8")))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return rec.version


def latest_candidate(reg: Registry) -> str:
    cands = [v.version for v in reg.versions() if v.status == "candidate"]
    if not cands:
        raise ConfigError(f"{reg.root} has no candidate version; run: prodsearch refresh INDEX --step train")
    return cands[-1]


def promote_if_better(engine: Any, reg: Registry, version: str, *, force: bool = False) -> dict[str, Any]:
    """Switch to ``version`` when its stored evaluation says it is better (or ``force``); else reject it."""
    from prodsearch.registry.swap import switch_to

    rec = reg.get(version)
    ev = rec.evaluation
    if not force:
        if ev is None:
            raise ConfigError(
                f"version {version} has not been evaluated; run: prodsearch refresh INDEX --step evaluate"
            )
        if ev.get("against") != engine.model_version:
            raise ConfigError(
                f"version {version} was evaluated against {ev.get('against')}, but the index serves "
                f"{engine.model_version}; evaluate it again"
            )
        if not ev.get("better"):
            reg.set_status(version, "rejected", note="not better beyond the noise")
            return {"promoted": False, "version": version, "served": engine.model_version}
    report = switch_to(engine, version, action="promote", reg=reg)
    return {"promoted": True, "version": version, "served": version, "switch": report}


def refresh(
    index: str | Path,
    catalog: str | Path | None = None,
    *,
    steps: Sequence[str] = STEPS,
    version: str | None = None,
    epochs: int | None = None,
    metric: str = "mean",
    margin: float = 0.0,
    resamples: int = 1000,
    interactions: str | Path | None = None,
    max_queries: int = 300,
    limit: int | None = None,
    progress: bool = False,
    factory: Any = None,
    echo: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Run ``steps`` of a refresh (see the module docstring); returns what each step did.
    ``version``: the candidate that ``evaluate`` / ``promote`` use (default: the newest candidate);
    ``limit``: sync only the catalog's first rows (as ``prodsearch index --limit``)."""
    from prodsearch.registry.evaluate import compare_versions, format_evaluation
    from prodsearch.search.engine import Engine

    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ConfigError(f"unknown refresh step(s) {unknown}; steps are {list(STEPS)}")
    index = Path(index)
    report: dict[str, Any] = {}
    if "sync" in steps:
        if catalog is None:
            raise ConfigError("the sync step needs --catalog CATALOG")
        t = time.perf_counter()
        rep = sync(index, Path(catalog), limit=limit, progress=progress)
        report["sync"] = {
            "added": rep.added,
            "updated": rep.updated,
            "deleted": rep.deleted,
            "seconds": round(time.perf_counter() - t, 2),
        }
        echo(f"sync: added {rep.added}, updated {rep.updated}, deleted {rep.deleted}")
    rest = [s for s in steps if s != "sync"]
    if not rest:
        return report
    with Engine.open(index) as engine:
        reg = Registry(index)
        served = ensure_registered(engine, reg)
        if "train" in rest:
            t = time.perf_counter()
            version = train_candidate(
                engine, reg, epochs=epochs, interactions=interactions, progress=progress, factory=factory
            )
            report["train"] = {
                "version": version,
                "parent": served,
                "seconds": round(time.perf_counter() - t, 2),
            }
            echo(f"train: candidate {version} (warm start from {served})")
        if "evaluate" in rest:
            version = version or latest_candidate(reg)
            t = time.perf_counter()
            ev = compare_versions(engine, version, reg=reg, metric=metric, margin=margin, resamples=resamples,
                                  max_queries=max_queries, progress=progress)  # fmt: skip
            report["evaluate"] = {**ev, "version": version, "seconds": round(time.perf_counter() - t, 2)}
            echo(format_evaluation(version, ev))
        if "promote" in rest:
            version = version or latest_candidate(reg)
            res = promote_if_better(engine, reg, version)
            report["promote"] = res
            echo(
                f"promote: index now serves {version}" if res["promoted"]
                else f"promote: {version} rejected; index still serves {res['served']}"
            )  # fmt: skip
    return report
