"""`prodsearch demo`: index the shared fashion catalog (cached), train projection heads on the fly
for cross-modal search, run example searches, then serve the web page.

Without ``--full`` the demo uses a stratified sample (:mod:`prodsearch.catalog.sample`): every
product type is represented, so the example queries find what they ask for, and a smaller sample
is a subset of a larger one.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from pathlib import Path

import typer

from prodsearch.errors import EncoderMismatchError
from prodsearch.paths import cache_dir

log = logging.getLogger(__name__)

TEXT_QUERIES = [
    "navy blue men's casual shirt",
    "red dress for women",
    "black leather wallet",
    "white sports shoes",
]


def _show(title: str, resp) -> None:
    typer.echo(
        f"\n== {title}  ({resp.mode}: {', '.join(resp.signals)}; {sum(resp.timings.values()) * 1000:.0f} ms)"
    )
    for r in resp.results:
        attrs = " / ".join(v for v in list(r.attributes.values())[:4] if v)
        typer.echo(f"  {r.rank:>2}. {r.score:6.3f}  {r.id:<8} {r.title}  [{attrs}]")


def demo_root(catalog: Path, limit: int | None) -> Path:
    """The demo's cache folder for a catalog and a sample size (``None``: the whole catalog)."""
    import hashlib

    from prodsearch.catalog.sample import SAMPLE_VERSION

    key = hashlib.sha256(f"{Path(catalog).resolve()}|{SAMPLE_VERSION}".encode()).hexdigest()[:8]
    return cache_dir() / "demo" / f"{'full' if limit is None else f's{limit}'}-{key}"


def demo_index(catalog: Path, limit: int | None, train: bool = True) -> Path:
    """Where ``prodsearch demo`` puts its index (``prodsearch demo --where`` prints it)."""
    return demo_root(catalog, limit) / ("index-trained" if train else "index")


def port_problem(host: str, port: int) -> str | None:
    """None if ``host:port`` can be served on, else a one-line reason with what to do."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            return (
                f"port {port} on {host} is not free ({err.strerror}); another `prodsearch serve` or demo may "
                f"be running. Pick another with --port {port + 1}, or skip the web page with --no-serve"
            )
    return None


def run_demo(catalog: Path, *, limit: int | None, serve: bool, port: int, train: bool) -> None:
    from prodsearch.search.builder import build_index
    from prodsearch.search.engine import Engine
    from prodsearch.search.recipe import EmbedderRecipe

    root = demo_root(catalog, limit)
    source = catalog
    typer.echo(f"catalog: {catalog}\ncache:   {root}")
    progress = sys.stderr.isatty()
    mapping = None
    mapping_file = None
    if limit is not None:  # a stratified sample: every product type, photos read where they are
        from prodsearch.catalog.mapping import load_mapping
        from prodsearch.catalog.sample import write_stratified_sample

        sample_csv, mapping_file = root / "sample" / "catalog.csv", root / "sample" / "mapping.json"
        if not (sample_csv.is_file() and mapping_file.is_file()):
            _, _, field = write_stratified_sample(catalog, root / "sample", limit)
            typer.echo(f"sampled {limit} products across {field or 'the catalog'} -> {sample_csv}")
        catalog, mapping = sample_csv, load_mapping(mapping_file)

    model = None
    if train:
        run = root / "run"
        if not (run / "model.pt").is_file():
            from prodsearch.training.main import train_from_cli

            typer.echo("training projection heads on cached features (fast path)...")
            t = time.perf_counter()
            overrides = {"mapping": str(mapping_file)} if mapping_file else {}
            train_from_cli(catalog, run, overrides=overrides, overwrite=True, progress=progress)
            typer.echo(f"trained in {time.perf_counter() - t:.0f}s -> {run}")
        model = str(run)
    index_dir = demo_index(source, limit, train=bool(model))
    t = time.perf_counter()
    recipe = EmbedderRecipe(model=model)
    try:
        rep = build_index(catalog, index_dir, mapping=mapping, recipe=recipe, progress=progress)
    except EncoderMismatchError:  # a cached index from an older encoder: it is only a cache, rebuild it
        import shutil

        typer.echo(f"the cached index {index_dir} was built with another encoder version; rebuilding it")
        shutil.rmtree(index_dir)
        rep = build_index(catalog, index_dir, mapping=mapping, recipe=recipe, progress=progress)
    what = "reused cached index" if not rep.did_work else f"indexed {rep.accepted} products"
    typer.echo(f"{what} in {time.perf_counter() - t:.1f}s -> {index_dir}")
    from prodsearch.cli import _calibrate

    _calibrate(index_dir, only_if_stale=not rep.did_work)  # fusion weights fitted on held-out queries

    with Engine.open(index_dir) as engine:
        for q in TEXT_QUERIES:
            _show(f"text: {q!r}", engine.search(q, k=5))
        if engine.cross_modal:
            _show(
                f"text -> image only: {TEXT_QUERIES[0]!r}", engine.search(TEXT_QUERIES[0], k=5, mode="image")
            )
        first = next(iter(engine.store.iter_products()))
        if first.image_path:
            _show(
                f"image: photo of {first.id} ({first.title})",
                engine.search(image=first.image_path, k=5, mode="image"),
            )
            if engine.cross_modal:
                _show(
                    f"photo of {first.id} + 'but in red'",
                    engine.search("red", image=first.image_path, k=5, mode="image"),
                )
        if first.attributes:
            field, value = next(iter(first.attributes.items()))
            _show(
                f"filtered: 'shoes' where {field} = {value!r}",
                engine.search("shoes", k=5, filters={field: value}),
            )
    if serve:
        from prodsearch.service.app import run_server

        typer.echo(f"\nweb page and API: http://127.0.0.1:{port}/  (Ctrl-C to stop)")
        run_server(index_dir, host="127.0.0.1", port=port)
