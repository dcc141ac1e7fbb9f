"""Run an evaluation: build the corpus and the systems from an index or a catalog, run every
protocol on every system with the same queries and judgements, and write the report.

``evaluate`` is the in-memory core (used by tests with fake encoders); ``run_evaluation`` is what
``prodsearch evaluate`` calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.catalog.schema import ColumnMapping, Product
from prodsearch.errors import ConfigError
from prodsearch.evaluation import metrics as M
from prodsearch.evaluation import protocols as P
from prodsearch.evaluation.corpus import Corpus, SplitParams, split_test_positions
from prodsearch.evaluation.fields import FieldChoice, resolve_fields
from prodsearch.evaluation.qrels import score
from prodsearch.evaluation.slices import check_slice_field, slice_counts, slice_labels, slice_means
from prodsearch.evaluation.systems import EmbeddedCorpus, LexicalSignal, SignalSystem, standard_systems
from prodsearch.evaluation.zeroshot import zero_shot

log = logging.getLogger(__name__)

#: Queries per protocol shown as examples (with their top results) in the report.
N_EXAMPLES = 3
EXAMPLE_K = 5


def _check_protocols(protocols: Sequence[str] | None, interactions: bool = False) -> list[str]:
    from prodsearch.interactions.evaluation import PROTOCOLS as SHOPPERS

    if protocols is None:
        return list(P.PROTOCOLS) + (list(SHOPPERS) if interactions else [])
    chosen = [p.strip() for p in protocols if p and p.strip()]
    known = [*P.PROTOCOLS, *SHOPPERS]
    bad = [p for p in chosen if p not in known]
    if bad or not chosen:
        raise ConfigError(f"unknown protocol(s) {bad or chosen}; expected some of {known}")
    return list(dict.fromkeys(chosen))


def build_systems(
    embedded: Sequence[EmbeddedCorpus], lexical: LexicalSignal | None, ids: Sequence[str]
) -> list[SignalSystem]:
    """BM25 + the first embedder's systems unprefixed, then ``<name>:`` systems per further embedder."""
    systems = []
    for i, emb in enumerate(embedded):
        systems += standard_systems(
            ids, lexical, emb, prefix="" if i == 0 else f"{emb.name}:", with_bm25=i == 0
        )
    if not embedded and lexical is not None:
        systems += standard_systems(ids, lexical, None)
    return systems


def _build_queryset(
    name: str, corpus: Corpus, fields: FieldChoice, max_queries: int, seed: int, interactions: Any = None
) -> P.QuerySet:
    if name.startswith("interactions"):
        from prodsearch.interactions.evaluation import interaction_queries

        return interaction_queries(corpus.ids, interactions or [], name, max_queries=max_queries, seed=seed)
    if name == "title2image":
        return P.title2image(corpus, max_queries=max_queries, seed=seed)
    if name == "attributes":
        return P.attribute_queries(corpus, fields, max_queries=max_queries, seed=seed)
    if name == "composed":
        return P.composed_queries(corpus, fields, max_queries=max_queries, seed=seed)
    return P.image_queries(corpus, fields, max_queries=max_queries, seed=seed)


def evaluate(
    corpus: Corpus,
    embedded: Sequence[EmbeddedCorpus],
    *,
    lexical: LexicalSignal | None = None,
    protocols: Sequence[str] | None = None,
    fields: FieldChoice | None = None,
    zeroshot_fields: Sequence[str] | None = None,
    slice_by: str | None = None,
    seed: int = 0,
    max_queries: int = 2000,
    progress: bool = False,
    interactions: Sequence[Any] | None = None,
    served: Any = None,
) -> dict[str, Any]:
    """Run the protocols on every system; return the metrics dict (the content of metrics.json).

    ``served``: a :class:`~prodsearch.evaluation.systems.ServedSystem` (the index's own search,
    approximate where the service is) scored beside the exact re-rankings.

    ``interactions``: shoppers' held-out events (:mod:`prodsearch.interactions`), the judgments of
    the ``interactions`` (text) and ``interactions_photo`` protocols.

    ``embedded``: the index's (or catalog's) embedder first, then one per model run. Protocols named
    explicitly in ``protocols`` that cannot run raise :class:`ConfigError`; by default they are
    skipped with the reason recorded under ``skipped``.
    """
    explicit = protocols is not None
    chosen = _check_protocols(protocols, interactions=bool(interactions))
    if max_queries < 1:
        raise ConfigError(f"max_queries must be >= 1, got {max_queries}")
    if slice_by is not None:
        check_slice_field(corpus, slice_by)
    fields = fields or resolve_fields(corpus.products)
    systems: list[Any] = build_systems(embedded, lexical, corpus.ids)
    if served is not None:
        systems.append(served)
    result: dict[str, Any] = {
        "systems": {s.name: {} for s in systems},
        "curves": {},
        "queries": {},
        "skipped": {"protocols": {}, "systems": {}},
        "slices": {"field": slice_by, "counts": {}, "systems": {}} if slice_by else {},
        "zeroshot": {},
        "examples": {},
        "timings": {},
    }

    def skip(proto: str, reason: str) -> None:
        if explicit and proto != "zeroshot":
            raise ConfigError(f"protocol {proto!r} cannot run on this catalog: {reason}")
        result["skipped"]["protocols"][proto] = reason
        log.warning("skipping %s: %s", proto, reason)

    def add_slices(system: str, source: np.ndarray, per_query: dict[str, np.ndarray], proto: str) -> None:
        if not slice_by:
            return
        labels = slice_labels(corpus, slice_by, source)
        result["slices"]["counts"][proto] = slice_counts(labels)
        dest = result["slices"]["systems"].setdefault(system, {})
        for value, vals in slice_means(per_query, labels).items():
            dest.setdefault(value, {}).update(vals)

    for proto in chosen:
        if proto == "zeroshot":
            continue
        try:
            qs = _build_queryset(proto, corpus, fields, max_queries, seed, interactions)
        except P.ProtocolSkipped as err:
            skip(proto, str(err))
            continue
        result["queries"][proto] = len(qs)
        if qs.info:
            result.setdefault("protocol_info", {})[proto] = qs.info
        examples = result["examples"].setdefault(proto, {"queries": [], "source": [], "results": {}})
        examples["queries"] = qs.labels[:N_EXAMPLES]
        examples["source"] = [corpus.ids[int(p)] for p in qs.source[:N_EXAMPLES]]
        for system in systems:
            ok = system.supports(qs.kind)
            if ok is not True:
                result["skipped"]["systems"].setdefault(system.name, {})[proto] = ok
                continue
            t = time.perf_counter()
            rankings = system.rank_positions(qs.queries, qs.kind, qs.depth)
            per_query: dict[str, np.ndarray] = {}
            for judgement in qs.judgements:
                per_query.update(score(rankings, judgement))
            headline = {m for j in qs.judgements for m in (j.prefix + s for s in j.metrics)}
            for metric, vals in per_query.items():
                if metric in headline:
                    result["systems"][system.name][f"{proto}/{metric}"] = M.mean(vals)
            curve = {m.split("@")[1]: M.mean(v) for m, v in per_query.items() if m.startswith("recall@")}
            if curve:
                result["curves"].setdefault(proto, {})[system.name] = curve
            add_slices(
                system.name,
                qs.source,
                {f"{proto}/{m}": v for m, v in per_query.items() if m in headline},
                proto,
            )
            examples["results"][system.name] = [
                [corpus.ids[p] for p in row if p >= 0] for row in rankings[:N_EXAMPLES, :EXAMPLE_K].tolist()
            ]
            result["timings"][f"{proto}/{system.name}"] = round(time.perf_counter() - t, 3)
            log.info(
                "%s / %s: %s",
                proto,
                system.name,
                {k: v for k, v in result["systems"][system.name].items() if k.startswith(proto)},
            )

    if "zeroshot" in chosen:
        zs_fields = (
            list(zeroshot_fields) if zeroshot_fields else [f for f in (fields.type, fields.colour) if f]
        )
        if not zs_fields:
            skip("zeroshot", "no type or colour attribute column to classify (name one with zeroshot_fields)")
        for i, emb in enumerate(embedded if zs_fields else ()):
            name = ("" if i == 0 else f"{emb.name}:") + "image"
            for fname in zs_fields:
                try:
                    zs = zero_shot(emb, corpus, fname, max_queries=max_queries, seed=seed)
                except P.ProtocolSkipped as err:
                    result["skipped"]["systems"].setdefault(name, {})[f"zeroshot/{fname}"] = str(err)
                    continue
                result["systems"].setdefault(name, {}).update(zs.metrics())
                result["zeroshot"].setdefault(name, {})[fname] = zs.confusion_summary()
                result["queries"][f"zeroshot/{fname}"] = len(zs.source)
                add_slices(name, zs.source, {f"zeroshot/{fname}/accuracy": zs.correct()}, f"zeroshot/{fname}")
    result["systems"] = {k: v for k, v in result["systems"].items() if v}
    result["config"] = {
        "seed": seed,
        "max_queries": max_queries,
        "protocols": chosen,
        "slice_by": slice_by,
        "fields": fields.to_dict(),
        "zeroshot_fields": list(zeroshot_fields) if zeroshot_fields else None,
        "depth": P.DEPTH,
        "corpus": {
            "products": len(corpus),
            "with_image": int(corpus.has_image.sum()),
            "test": int(len(corpus.test)),
        },
        "split": corpus.split,
        "embedders": [
            {
                "name": e.name,
                "aligned": e.aligned,
                "vectors": {k: int(len(v[0])) for k, v in e.vectors.items()},
            }
            for e in embedded
        ],
    }
    return result


# ---------------------------------------------------------------------------- from an index or a catalog
def _run_name(run: str, taken: set[str]) -> str:
    base = Path(run.split(":", 1)[-1].split("#")[0]).name or "model"
    name, i = base, 2
    while name in taken or name in ("bm25", "dense-text", "image", "hybrid"):
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def _encode_corpus(name: str, embedder: Any, products: Sequence[Product], progress: bool) -> EmbeddedCorpus:
    from prodsearch.search.builder import encode_products

    encoded = encode_products(embedder, list(products), progress=progress)
    vectors = {
        k: (np.asarray(pos, dtype=np.int64), np.asarray(v, dtype=np.float32))
        for k, (pos, v) in encoded.items()
    }
    return EmbeddedCorpus(name, embedder, vectors, progress=progress)


def _from_index(
    path: Path, progress: bool, embedder: Any = None
) -> tuple[list[Product], EmbeddedCorpus, LexicalSignal, dict]:
    from prodsearch.search.engine import Engine

    engine = Engine.open(path, embedder=embedder)  # checks the embedder against the index's spec
    products = list(engine.store.iter_products())
    iids = [int(i) for i in engine.store.iid_of([p.id for p in products])]
    pos_of_iid = {iid: pos for pos, iid in enumerate(iids)}
    vectors = {}
    for kind, vi in engine.vectors.items():
        v_iids = np.asarray(vi.iids, dtype=np.int64)
        keep = np.asarray([int(i) in pos_of_iid for i in v_iids.tolist()], dtype=bool)
        v_iids = v_iids[keep]
        vectors[kind] = (
            np.asarray([pos_of_iid[int(i)] for i in v_iids.tolist()], dtype=np.int64),
            np.asarray(vi.get(v_iids), dtype=np.float32),
        )
    name = Path(engine.manifest.model_run).name if engine.manifest.model_run else "index"
    joint = vectors.pop("joint", None)
    base_name = "index" if joint is not None else name
    emb = EmbeddedCorpus(base_name, engine.embedder, vectors, progress=progress)
    lexical = LexicalSignal(engine.lexical, pos_of_iid, progress=progress)
    emb_info = engine.manifest.embedder.get("name")
    engine.close()  # everything needed is in memory now
    info = {
        "kind": "index",
        "path": str(path),
        "embedder": emb_info,
        "mapping": engine.manifest.mapping,
        "model_run": engine.manifest.model_run,
        "fusion": engine.calibration,  # the served fusion's calibration and its test comparison
    }
    if joint is not None:
        # a trained model's space stored beside the untuned vectors: compared as its own system
        info["joint_corpus"] = EmbeddedCorpus(
            name, engine.embedder.joint, {"image": joint}, progress=progress
        )
    return products, emb, lexical, info


def _from_catalog(
    path: Path, mapping: ColumnMapping | None, limit: int | None, progress: bool, embedder: Any = None
) -> tuple[list[Product], EmbeddedCorpus, LexicalSignal, dict]:
    from prodsearch.catalog import read_catalog
    from prodsearch.search.recipe import EmbedderRecipe

    read = read_catalog(path, mapping, limit=limit)
    if not read.products:
        raise ConfigError(f"{path}: no valid products to evaluate ({len(read.problems)} rows rejected)")
    products = list(read.products)
    recipe = EmbedderRecipe()
    emb = _encode_corpus("catalog", embedder or recipe.build(), products, progress)
    lexical = LexicalSignal.build([p.full_text() for p in products])
    lexical.progress = progress
    info = {
        "kind": "catalog",
        "path": str(path),
        "mapping": read.mapping.to_dict(),
        "recipe": recipe.to_dict(),
    }
    return products, emb, lexical, info


def _check_model_matches(run: str, embedder: Any) -> None:
    """A compared model must put text and photos in one space and have an image tower."""
    from prodsearch.errors import EncoderMismatchError

    if not getattr(embedder, "aligned", False):
        raise EncoderMismatchError(
            f"--model {run!r}: its embedder is not aligned (text and image in different "
            "spaces); expected a `prodsearch train` run or a clip: checkpoint"
        )
    if embedder.image is None:
        raise EncoderMismatchError(f"--model {run!r} has no image tower; this evaluation needs image vectors")


#: Share of a run's split products that must be in the evaluated catalog (else it was trained elsewhere).
MIN_RUN_OVERLAP = 0.5


def _run_split(run: str, ids: set[str], target: Path) -> dict[str, set[str]] | None:
    """The run's ``split.json`` as id sets; raise if the run was trained on another catalog."""
    import json

    path = Path(run) / "split.json"
    if not path.is_file():
        return None
    split = {k: {str(i) for i in v} for k, v in json.loads(path.read_text("utf-8")).items()}
    known = set().union(*split.values()) if split else set()
    if known:
        share = len(known & ids) / len(known)
        if share < MIN_RUN_OVERLAP:
            from prodsearch.errors import EncoderMismatchError

            raise EncoderMismatchError(
                f"--model {run!r} does not match {str(target)!r}: only {share:.0%} of the {len(known)} products "
                "it was trained and tested on are in this catalog/index; evaluate it on the catalog it was trained on"
            )
    return split


def run_evaluation(
    target: str | Path,
    out: str | Path,
    *,
    models: Sequence[str] = (),
    mapping: ColumnMapping | None = None,
    protocols: Sequence[str] | None = None,
    slice_by: str | None = None,
    seed: int = 0,
    max_queries: int = 2000,
    limit: int | None = None,
    progress: bool = True,
    type_field: str | None = None,
    colour_field: str | None = None,
    attr_fields: Sequence[str] | None = None,
    embedder: Any = None,
    interactions: str | Path | None = None,
    holdout: float = 0.2,
) -> dict[str, Any]:
    """Evaluate an index folder or a catalog file (plus model runs) and write ``out``/metrics.json,
    report.md and report.html. Returns the metrics dict.

    ``interactions``: a shoppers' interaction log; its later ``holdout`` share by time judges the
    ``interactions`` / ``interactions_photo`` protocols (bad rows are reported and left out).

    ``models``: ``prodsearch train`` run folders (or clip:/hf-clip: checkpoints), each compared as
    ``<run>:dense-text``, ``<run>:image`` and ``<run>:hybrid``. ``type_field`` / ``colour_field`` /
    ``attr_fields`` override the heuristic choice of attribute columns. ``embedder`` replaces the
    index's (or the default) embedder; an index checks that it matches the one it was built with.
    """
    from prodsearch.evaluation.report import write_report
    from prodsearch.search import layout

    t0 = time.perf_counter()
    target = Path(target)
    chosen = _check_protocols(protocols, interactions=interactions is not None)  # before any slow work
    if layout.is_index(target):
        if limit is not None:
            log.warning("--limit applies to catalogs only; evaluating the whole index")
        products, base, lexical, info = _from_index(target, progress, embedder)
    elif target.is_file():
        products, base, lexical, info = _from_catalog(target, mapping, limit, progress, embedder)
    else:
        raise ConfigError(
            f"{target}: neither a prodsearch index folder (no manifest.json) nor a catalog file"
        )

    corpus_probe = Corpus(products)
    if slice_by is not None:
        check_slice_field(corpus_probe, slice_by)
    fields = resolve_fields(
        products, type_field=type_field, colour_field=colour_field, attr_fields=attr_fields
    )

    from prodsearch.search.recipe import EmbedderRecipe

    embedded = [base]
    if info.get("joint_corpus") is not None:
        embedded.append(info.pop("joint_corpus"))
    taken = {e.name for e in embedded}
    split_params = None
    id_set = {p.id for p in products}
    run_splits: list[dict[str, set[str]]] = []
    for run in models:
        run_split = _run_split(str(run), id_set, target) if Path(str(run)).is_dir() else None
        run_embedder = EmbedderRecipe(model=str(run)).build()
        run_embedder = getattr(run_embedder, "joint", None) or run_embedder  # a run's own space
        _check_model_matches(str(run), run_embedder)
        if run_split is not None:
            run_splits.append(run_split)
        embedded.append(_encode_corpus(_run_name(str(run), taken), run_embedder, products, progress))
        params = SplitParams.from_run(run) if Path(str(run)).is_dir() else None
        if params is not None and split_params is not None and params != split_params:
            raise ConfigError(
                f"--model runs were trained with different splits ({split_params} vs {params}); "
                "evaluate them separately"
            )
        split_params = split_params or params
    split_params = split_params or SplitParams()
    test = split_test_positions(products, split_params)
    for rs in run_splits:  # never query a product any compared run has trained or validated on
        seen = rs.get("train", set()) | rs.get("val", set())
        test = np.asarray([i for i in test.tolist() if products[i].id not in seen], dtype=np.int64)
    split_info = {
        **split_params.__dict__,
        "test_products": int(len(test)),
        "runs_with_split": len(run_splits),
    }
    corpus = Corpus(products, test=test, split=split_info)
    held_out = None
    if interactions is not None:
        from prodsearch.interactions.evaluation import held_out_events

        held_out = held_out_events(interactions, [p.id for p in products], holdout)

    served_engine = None
    if layout.is_index(target):  # the search that is served, scored beside the exact re-rankings
        from prodsearch.evaluation.systems import ServedSystem
        from prodsearch.search.engine import Engine

        served_engine = Engine.open(target, embedder=embedder)
    try:
        result = evaluate(
            corpus,
            embedded,
            lexical=lexical,
            protocols=chosen if protocols is not None else None,
            fields=fields,
            slice_by=slice_by,
            seed=seed,
            max_queries=max_queries,
            progress=progress,
            interactions=held_out,
            served=ServedSystem(served_engine, corpus.ids, progress) if served_engine is not None else None,
        )
    finally:
        if served_engine is not None:
            served_engine.close()
    if interactions is not None:
        result["config"]["interactions"] = {
            "log": str(interactions),
            "holdout": holdout,
            "events": len(held_out),
        }
    fusion = info.pop("fusion", None)
    if fusion and fusion.get("comparison"):
        result["fusion"] = {"weights": fusion.get("weights"), "comparison": fusion["comparison"]}
    result["config"]["target"] = info
    result["config"]["models"] = [str(m) for m in models]
    result["timings"]["total"] = round(time.perf_counter() - t0, 3)
    write_report(result, out, corpus=corpus)
    return result
