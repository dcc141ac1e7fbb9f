"""The ``prodsearch`` command line: each command is a thin call into the library."""

from __future__ import annotations

import json
import logging
import os
import sys
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from prodsearch.errors import ProdsearchError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Multimodal product search.",
)
log = logging.getLogger("prodsearch")


def _setup_logging(verbose: bool) -> None:
    """Warnings only by default (``-v``: info). The handler filters by level too, because some
    libraries set their own loggers to DEBUG (bm25s logs "Building index from tokens" on every run)."""
    level = logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if not verbose:
        import warnings

        # library warnings are for developers; -v shows them
        warnings.filterwarnings(
            "ignore", category=UserWarning, module=r"(torch|transformers|sentence_transformers)"
        )
        warnings.filterwarnings("ignore", category=FutureWarning)


def _progress(flag: bool | None) -> bool:
    """Progress bars: ``--progress`` / ``--no-progress``, else only when stderr is a terminal (never
    into a log file or a pipe)."""
    show = sys.stderr.isatty() if flag is None else flag
    if not show:  # also the bars libraries draw themselves ("Loading weights")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
    return show


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _mapping(path: Path | None):
    if path is None:
        return None
    from prodsearch.catalog.mapping import load_mapping

    return load_mapping(path)


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")]
Interactions = Annotated[
    Path | None,
    typer.Option(help="Shoppers' interaction log (JSONL/CSV/Parquet), see `prodsearch interactions`."),
]
Holdout = Annotated[float, typer.Option(help="Later share of the interaction log held out (by time).")]
Progress = Annotated[
    bool | None, typer.Option("--progress/--no-progress", help="Progress bars (default: only on a terminal).")
]


@app.command()
def index(
    catalog: Annotated[Path, typer.Argument(help="Catalog file: .csv, .tsv, .jsonl or .parquet.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index folder (created or updated).")],
    mapping: Annotated[Path | None, typer.Option(help="Column mapping file (TOML/YAML/JSON).")] = None,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Folder the image paths resolve in (default: the catalog's folder)."),
    ] = None,
    encoding: Annotated[
        str | None, typer.Option(help="Text encoding of the catalog file, e.g. cp1252 (default UTF-8).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="A `prodsearch train` run folder, or clip:PATH / hf-clip:PATH.")
    ] = None,
    text_encoder: Annotated[
        str, typer.Option(help="Text encoder name (see `prodsearch encoders`).")
    ] = "minilm",
    image_encoder: Annotated[
        str, typer.Option(help="Image encoder name, or 'none' for text only.")
    ] = "efficientnet-lite0",
    image_size: Annotated[
        int | None, typer.Option(help="Image encoder input size in pixels (default: the model's own).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Fail on the first bad row instead of skipping it.")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N catalog rows.")] = None,
    keep_missing: Annotated[
        bool, typer.Option(help="Keep products that are no longer in the catalog.")
    ] = False,
    index_kind: Annotated[
        str | None,
        typer.Option(
            help="Vector index: auto, flat (exact), hnsw, or ivfpq (compressed: IVF-PQ codes in RAM, "
            "exact re-rank from vectors memory-mapped from disk). Default: the index's current kind, else auto."
        ),
    ] = None,
    index_option: Annotated[
        list[str] | None,
        typer.Option(
            help="Embedded vector index setting KEY=NUMBER, repeatable, kept for later builds and "
            "searches. Search-time (no rebuild): ef_search, nprobe, rerank, exact_fraction, exact_min; "
            "build-time (rebuilds the vectors' index): hnsw_m, ef_construction, hnsw_threshold, nlist, "
            "pq_m, rebuild_ratio."
        ),
    ] = None,
    progress: Progress = None,
    ray: Annotated[
        str | None,
        typer.Option(help="Encode on a Ray cluster: auto, local[:N], HOST:PORT or ray://HOST:PORT."),
    ] = None,
    ray_actors: Annotated[int | None, typer.Option(help="Encoder actors (one model each).")] = None,
    ray_cpus_per_actor: Annotated[float | None, typer.Option(help="CPUs reserved per actor.")] = None,
    ray_gpus_per_actor: Annotated[float | None, typer.Option(help="GPUs reserved per actor.")] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="Where vectors live: faiss (embedded, default), milvus://HOST:PORT, or a Milvus Lite .db path."
        ),
    ] = None,
    milvus_collection: Annotated[
        str | None, typer.Option(help="Milvus collection name prefix (default: from the --out folder).")
    ] = None,
    milvus_option: Annotated[
        list[str] | None,
        typer.Option(
            help="Milvus setting KEY=VALUE (VALUE as JSON where it parses), repeatable: index_type, "
            "index_params, search_params, consistency_level, partition_key, timeout_s."
        ),
    ] = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            help="Fit the fusion weights of each query kind on held-out catalog queries after a change "
            "(search/calibration.py); skipped for catalogs too small to give 20 validation queries."
        ),
    ] = True,
    verbose: Verbose = False,
) -> None:
    """Ingest a catalog into an index folder (incremental: unchanged products cost nothing)."""
    _setup_logging(verbose)
    from prodsearch.search.builder import build_index
    from prodsearch.search.recipe import EmbedderRecipe

    recipe = EmbedderRecipe(
        model=model,
        text_encoder=text_encoder,
        image_encoder=None if image_encoder == "none" else image_encoder,
        image_options={"image_size": image_size} if image_size else {},
    )
    ray_encoder = None
    if ray is not None:  # connect first: a dead address fails before anything is written
        from prodsearch.distributed.ray_encode import ray_encoder_from_options

        ray_encoder = ray_encoder_from_options(
            recipe,
            ray,
            actors=ray_actors,
            cpus_per_actor=ray_cpus_per_actor,
            gpus_per_actor=ray_gpus_per_actor,
        )
    column_mapping = _mapping(mapping)
    detection = None
    if column_mapping is None:  # say which columns play which role, and which are left out
        from prodsearch.catalog.readers import suggest_mapping

        detection = suggest_mapping(catalog, encoding=encoding)
        typer.echo(
            detection.summary() + f"\n(edit it: prodsearch mapping {catalog} > mapping.toml)", err=True
        )
        column_mapping = detection.mapping
    rep = build_index(
        catalog,
        out,
        mapping=column_mapping,
        read_options={"encoding": encoding, "image_root": images, "detection": detection},
        progress=_progress(progress),
        recipe=recipe,
        strict=strict,
        limit=limit,
        delete_missing=not keep_missing,
        index_kind=index_kind,
        index_options=_key_values("--index-option", index_option, numbers=True),
        encode=ray_encoder,
        backend=backend,
        backend_options=_milvus_options(milvus_collection, milvus_option),
    )
    typer.echo(
        f"{rep.index}: {rep.accepted}/{rep.rows} rows accepted, {rep.rejected} rejected; "
        f"added {rep.added}, updated {rep.updated}, unchanged {rep.unchanged}, deleted {rep.deleted}; "
        f"encoded {rep.encoded_text} texts, {rep.encoded_images} images in {rep.timings.get('total', 0):.1f}s"
    )
    if ray_encoder is not None:
        typer.echo(ray_encoder.report.summary())
    if calibrate:
        _calibrate(Path(rep.index), only_if_stale=not rep.did_work)
    if rep.rejected:
        typer.echo(rep.problems_summary)
        typer.echo(f"full report: {Path(rep.index) / 'ingest-report.json'}")


def _milvus_options(collection: str | None, pairs: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"collection": collection} if collection else {}
    return {**out, **_key_values("--milvus-option", pairs)}


def _key_values(flag: str, pairs: list[str] | None, *, numbers: bool = False) -> dict[str, Any]:
    """Repeated ``KEY=VALUE`` flags as a dict, each VALUE as JSON where it parses (only a number
    with ``numbers``)."""
    from prodsearch.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if numbers and (isinstance(parsed, bool) or not isinstance(parsed, (int, float))):
            raise ConfigError(f"{flag} {pair!r}: the value must be a number")
        out[key.strip()] = parsed
    return out


def _print_results(resp: Any, as_json: bool, match: Any = None) -> None:
    """Results as a table or JSON; ``match``: the weak-match verdict (search/relevance.py), if judged."""
    if as_json:
        data = resp.to_dict()
        if match is not None:
            data["match"] = match.to_dict()
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if match is not None and match.weak:
        typer.echo(f"{match.reason}; the results below are only the least distant products")
    if not resp.results:
        typer.echo("no results")
        return
    typer.echo(f"{'#':>3}  {'score':>7}  {'id':<12} title  [attributes]")
    for r in resp.results:
        attrs = ", ".join(f"{v}" for v in list(r.attributes.values())[:5] if v)
        typer.echo(f"{r.rank:>3}  {r.score:7.4f}  {r.id:<12} {r.title}  [{attrs}]")
        if r.explanation is not None:
            e = r.explanation
            sims = ", ".join(f"{s}={v:.3f}" for s, v in e.similarities.items())
            terms = ", ".join(e.matched_terms)
            typer.echo(f"{'':>24} {sims}" + (f"; terms: {terms}" if terms else ""))


@app.command()
def search(
    index_dir: Annotated[Path, typer.Argument(help="Index folder.", metavar="INDEX")],
    text: Annotated[str | None, typer.Argument(help="Query text.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Query photo.")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    offset: Annotated[int, typer.Option(help="Skip this many results (paging).")] = 0,
    mode: Annotated[str, typer.Option(help="hybrid, lexical, text or image.")] = "hybrid",
    filter_: Annotated[
        str | None, typer.Option("--filter", help='JSON filter, e.g. \'{"gender": "Men"}\'.')
    ] = None,
    not_: Annotated[str | None, typer.Option("--not", help="Move results away from this text.")] = None,
    explain: Annotated[bool, typer.Option(help="Show why each result matched.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    crop: Annotated[
        str | None, typer.Option(help="Search only this box of the photo: x0,y0,x1,y1 as fractions.")
    ] = None,
    regions: Annotated[
        str, typer.Option(help="off, or auto: find the products in a scene photo region by region.")
    ] = "off",
    verbose: Verbose = False,
) -> None:
    """Search an index by text, by photo, or both."""
    _setup_logging(verbose)
    from prodsearch.search.engine import Engine

    filters = None
    if filter_:
        try:
            filters = json.loads(filter_)
        except json.JSONDecodeError as err:
            _fail(f"--filter is not valid JSON: {err}")
    img = None
    if image is not None:
        from prodsearch.catalog.images import load_image

        img = load_image(image, name=f"query image {image}")
        if crop:
            from prodsearch.search.regions import crop as crop_image

            img = crop_image(img, crop)
    if regions not in ("off", "auto"):
        _fail(f"--regions must be 'off' or 'auto', got {regions!r}")
    if regions == "auto" and (img is None or text):
        _fail("--regions auto searches a photo by its regions: give --image and no query text")
    with Engine.open(index_dir) as engine:
        if regions == "auto":
            from prodsearch.search.regions import multi_crop_search

            resp = multi_crop_search(engine, img, k=k, offset=offset, filters=filters, explain=explain)
        else:
            resp = engine.search(
                text, img, k=k, offset=offset, mode=mode, filters=filters, negative=not_, explain=explain
            )
        from prodsearch.search.relevance import assess

        _print_results(resp, as_json, assess(engine, text, mode=mode, has_image=img is not None))


@app.command()
def similar(
    index_dir: Annotated[Path, typer.Argument(help="Index folder.", metavar="INDEX")],
    product_id: Annotated[str, typer.Argument(help="Product id.")],
    by: Annotated[str, typer.Option(help="fused, image or text.")] = "fused",
    k: Annotated[int, typer.Option("-k")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Products similar to a product."""
    from prodsearch.search.engine import Engine

    with Engine.open(index_dir) as engine:
        _print_results(engine.similar(product_id, by=by, k=k), as_json)


@app.command()
def info(index_dir: Annotated[Path, typer.Argument(help="Index folder.", metavar="INDEX")]) -> None:
    """Describe an index: size, encoders, mapping."""
    from prodsearch.search.engine import Engine

    with Engine.open(index_dir) as engine:
        data = engine.info()
    report = Path(index_dir) / "ingest-report.json"
    if report.is_file():  # how the columns were chosen, and the rows left out, at the last index run
        ingest = json.loads(report.read_text(encoding="utf-8"))
        data["ingest"] = {k: ingest.get(k) for k in ("source", "rows", "accepted", "rejected", "by_kind")}
        if ingest.get("detection"):
            data["ingest"]["ignored_columns"] = ingest["detection"]["ignored"]
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _calibrate(index_dir: Path, only_if_stale: bool = False) -> None:
    """Calibrate an index's fusion and print the comparison (and a warning when a trained model lost)."""
    from prodsearch.search.calibration import calibrate as fit
    from prodsearch.search.calibration import format_comparison, verdict
    from prodsearch.search.engine import Engine

    with Engine.open(index_dir) as engine:
        if only_if_stale and engine.calibration:
            return
        cal = fit(engine)
    if cal is None:
        typer.echo("fusion: not calibrated (too few products for held-out queries); using RRF")
        return
    typer.echo(format_comparison(cal))
    for line in verdict(cal):
        typer.echo(f"WARNING: {line}", err=True)


@app.command("calibrate")
def calibrate_cmd(
    index_dir: Annotated[Path, typer.Argument(help="Index folder.", metavar="INDEX")],
    interactions: Interactions = None,
    holdout: Holdout = 0.2,
    verbose: Verbose = False,
) -> None:
    """Fit the index's fusion weights per query kind on held-out queries drawn from its catalog, and
    compare RRF, min-max and calibrated fusion (and the untuned signals alone) on test queries.
    With --interactions: shoppers' held-out queries join them and popularity becomes a signal
    (`prodsearch interactions rank`)."""
    _setup_logging(verbose)
    if interactions is not None:
        from prodsearch.interactions.commands import rank

        return rank(index_dir, interactions, holdout=holdout)
    _calibrate(index_dir)


@app.command()
def compact(
    index_dir: Annotated[Path, typer.Argument(help="Index folder.", metavar="INDEX")],
    verbose: Verbose = False,
) -> None:
    """Merge pending writes into the main vector and BM25 indexes and checkpoint the write log."""
    from prodsearch.search.engine import Engine

    _setup_logging(verbose)
    with Engine.open(index_dir) as engine:
        pending = engine._writer.pending
        seq = engine.compact()
    typer.echo(f"{index_dir}: compacted {pending} pending write(s); the saved index includes log entry {seq}")


@app.command("mapping")
def mapping_cmd(
    catalog: Annotated[Path, typer.Argument(help="Catalog file: .csv, .tsv, .jsonl or .parquet.")],
    encoding: Annotated[str | None, typer.Option(help="Text encoding of the catalog file.")] = None,
) -> None:
    """Print the detected column mapping as an editable TOML file, with the reason for each ignored
    column: `prodsearch mapping CATALOG > mapping.toml`, edit, then `index --mapping mapping.toml`."""
    from prodsearch.catalog.readers import suggest_mapping

    typer.echo(suggest_mapping(catalog, encoding=encoding).to_toml(str(catalog)), nl=False)


@app.command()
def encoders() -> None:
    """List the built-in encoders."""
    from prodsearch.encoders.base import describe_encoders

    for e in describe_encoders():
        typer.echo(f"{e['name']:<24} {e['modality']:<6} {e['description']}")


def find_demo_catalog() -> Path | None:
    """The shared fashion catalog: $PRODSEARCH_DEMO_CATALOG, else a `shared/datasets/...` folder next
    to the current directory or the source checkout, walking up."""
    env = os.environ.get("PRODSEARCH_DEMO_CATALOG")
    if env:
        return Path(env)
    rel = Path("shared/datasets/fashion-product-images-small/styles.csv")
    for start in (Path.cwd(), Path(__file__).resolve()):
        for parent in [start, *start.parents]:
            if (parent / rel).is_file():
                return parent / rel
    return None


@app.command()
def demo(
    full: Annotated[bool, typer.Option(help="Index the whole catalog instead of a sample.")] = False,
    limit: Annotated[
        int, typer.Option(help="Stratified sample size when not --full.", envvar="PRODSEARCH_DEMO_LIMIT")
    ] = 3000,
    catalog: Annotated[
        Path | None, typer.Option(help="Catalog file (default: the shared fashion catalog).")
    ] = None,
    serve: Annotated[bool, typer.Option(help="Start the web page and HTTP API after the searches.")] = True,
    port: Annotated[int, typer.Option()] = 8000,
    train: Annotated[
        bool, typer.Option(help="Train projection heads on the fly for cross-modal search.")
    ] = True,
    where: Annotated[
        bool, typer.Option("--where", help="Print the demo's index folder (for the README's tour) and exit.")
    ] = False,
) -> None:
    """Index the shared fashion catalog (cached), run example searches, then serve the web page."""
    _setup_logging(False)
    from prodsearch.demo import demo_index, port_problem, run_demo

    if catalog is not None and not catalog.is_file():
        _fail(f"demo catalog not found: {catalog} (give a catalog file, e.g. .../styles.csv)")
    catalog = catalog or find_demo_catalog()
    if catalog is None or not Path(catalog).is_file():
        where_env = os.environ.get("PRODSEARCH_DEMO_CATALOG")
        _fail(
            f"demo catalog not found: $PRODSEARCH_DEMO_CATALOG={where_env} is not a file"
            if where_env
            else "demo catalog not found: no shared/datasets/fashion-product-images-small/styles.csv next to "
            "this checkout; pass --catalog FILE or set PRODSEARCH_DEMO_CATALOG"
        )
    limit_or_none = None if full else limit
    if where:
        typer.echo(str(demo_index(Path(catalog), limit_or_none, train=train)))
        return
    if serve:  # before minutes of indexing, not after
        problem = port_problem("127.0.0.1", port)
        if problem:
            _fail(problem)
    run_demo(Path(catalog), limit=limit_or_none, serve=serve, port=port, train=train)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="Catalog file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")],
    config: Annotated[Path | None, typer.Option(help="Config file (TOML/YAML/JSON).")] = None,
    resume: Annotated[bool, typer.Option(help="Resume the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a different run already in --out.")] = False,
    interactions: Interactions = None,
    self_evaluate: Annotated[
        bool,
        typer.Option(
            help="After training, build the run's index aside and compare it with the untuned index on "
            "held-out queries, whole catalog as gallery (recorded in run.json and calibration.json)."
        ),
    ] = True,
    progress: Progress = None,
    verbose: Verbose = False,
) -> None:
    """Fine-tune text and image towers on the catalog's (title, image) pairs. Extra `--field value`
    flags override config fields (see `prodsearch train-options`). Data-parallel on N processes:
    `torchrun --nproc-per-node N -m prodsearch.cli train ...` (--batch-size is the global batch).
    The run then judges itself against the untuned index (--no-self-evaluate skips it)."""
    _setup_logging(verbose)
    from prodsearch.distributed.ddp import is_main_process
    from prodsearch.training.main import train_from_cli

    overrides = _parse_overrides(ctx.args)
    if interactions is not None:  # shoppers' query -> product pairs, graded by event, as extra pairs
        from prodsearch.interactions.training import train_cli

        train_from_cli = partial(train_cli, interactions=interactions)
    res = train_from_cli(
        catalog,
        out,
        config_path=config,
        overrides=overrides,
        resume=resume,
        overwrite=overwrite,
        progress=_progress(progress),
    )
    if not is_main_process():  # under torchrun, rank 0 reports for the job
        return
    typer.echo(_train_summary(res))
    if self_evaluate:
        from prodsearch.catalog.mapping import load_mapping
        from prodsearch.evaluation.selfeval import format_self_evaluation
        from prodsearch.evaluation.selfeval import self_evaluate as judge_run
        from prodsearch.training.config import from_dict

        stored = from_dict(json.loads((Path(res.run_dir) / "config.json").read_text()))
        got = judge_run(
            res.run_dir,
            catalog,
            mapping=load_mapping(stored.mapping) if stored.mapping else None,
            limit=stored.max_products or None,
            progress=_progress(progress),
        )
        typer.echo(format_self_evaluation(got))
        for line in got.get("verdict", []):
            typer.echo(f"WARNING: {line}", err=True)


def _train_summary(res: Any) -> str:
    """One readable summary of a training run (not the RunResult repr)."""
    best = "n/a" if res.best_metric is None else f"{res.best_metric:.4f}"
    lines = [
        f"trained {res.epochs_run} epoch(s), {res.step} steps in {res.seconds:.0f}s"
        + (" (stopped early)" if res.stopped_early else "")
        + f"; best validation metric {best} at epoch {res.best_epoch}",
    ]
    if res.pairs:
        lines.append("pairs: " + ", ".join(f"{k} {v}" for k, v in res.pairs.items()))
    if res.test_metrics:
        lines.append("test: " + ", ".join(f"{k} {v:.4f}" for k, v in res.test_metrics.items()))
    lines.append(
        f"run folder: {res.run_dir}  (use it with: prodsearch index CATALOG --out INDEX --model {res.run_dir})"
    )
    return "\n".join(lines)


@app.command("train-options")
def train_options() -> None:
    """List the training config fields, defaults and help."""
    import dataclasses

    from prodsearch.training.config import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )  # type: ignore[misc]
        typer.echo(f"--{f.name.replace('_', '-'):<28} {default!r:<18} {f.metadata.get('help', '')}")


def _parse_overrides(args: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            _fail(f"unexpected argument {a!r}; config overrides look like --field value")
        key = a[2:]
        if "=" in key:
            key, val = key.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            val = args[i + 1]
            i += 1
        else:
            val = "true"
        out[key.replace("-", "_")] = val
        i += 1
    return out


@app.command()
def evaluate(
    target: Annotated[
        Path, typer.Argument(help="An index folder or a catalog file.", metavar="INDEX_OR_CATALOG")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    model: Annotated[list[str] | None, typer.Option(help="A training run to compare (repeatable).")] = None,
    mapping: Annotated[Path | None, typer.Option(help="Column mapping file.")] = None,
    protocols: Annotated[str | None, typer.Option(help="Comma-separated protocols (default: all).")] = None,
    slice_by: Annotated[str | None, typer.Option(help="Attribute to break metrics down by.")] = None,
    progress: Progress = None,
    seed: Annotated[int, typer.Option()] = 0,
    max_queries: Annotated[int, typer.Option()] = 2000,
    limit: Annotated[int | None, typer.Option(help="Only the first N catalog rows.")] = None,
    type_field: Annotated[
        str | None, typer.Option(help="Attribute holding the product type (default: detected).")
    ] = None,
    colour_field: Annotated[
        str | None, typer.Option(help="Attribute holding the colour (default: detected).")
    ] = None,
    attr_fields: Annotated[
        str | None, typer.Option(help="Comma-separated attributes for attribute queries.")
    ] = None,
    interactions: Interactions = None,
    holdout: Holdout = 0.2,
    verbose: Verbose = False,
) -> None:
    """Evaluate retrieval (title->image, attribute queries, image->product, zero-shot) with baselines;
    with --interactions, also on shoppers' held-out queries (protocols interactions, interactions_photo)."""
    _setup_logging(verbose)
    from prodsearch.evaluation.runner import run_evaluation

    run_evaluation(
        target,
        out,
        models=tuple(model or ()),
        mapping=_mapping(mapping),
        protocols=protocols.split(",") if protocols else None,
        slice_by=slice_by,
        seed=seed,
        max_queries=max_queries,
        limit=limit,
        progress=_progress(progress),
        interactions=interactions,
        holdout=holdout,
    )
    typer.echo(f"report written to {out}/ (metrics.json, report.md, report.html)")


@app.command()
def serve(
    index_dir: Annotated[Path, typer.Argument(help="Index folder.", metavar="INDEX")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Start the HTTP API and web page."""
    from prodsearch.service.app import run_server

    run_server(index_dir, host=host, port=port)


from prodsearch.registry import commands as _models  # noqa: E402  (model versions, issue 12)

app.add_typer(_models.app, name="models")
app.command("refresh")(_models.refresh_command)

from prodsearch.interactions import commands as _interactions  # noqa: E402  (issue 12, items 4-5)

app.add_typer(_interactions.app, name="interactions")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: domain errors print one line (no traceback) and exit 2."""
    try:
        app(args=argv, standalone_mode=True)
    except ProdsearchError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
