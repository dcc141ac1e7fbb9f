"""`prodsearch demo`: index the shared fashion catalog (cached), train projection heads on the fly
for cross-modal search, run example searches, then serve the web page."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer

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


def run_demo(catalog: Path, *, limit: int | None, serve: bool, port: int, train: bool) -> None:
    from prodsearch.search.builder import build_index
    from prodsearch.search.engine import Engine
    from prodsearch.search.recipe import EmbedderRecipe

    tag = "full" if limit is None else str(limit)
    root = cache_dir() / "demo" / tag
    typer.echo(f"catalog: {catalog}\ncache:   {root}")

    model = None
    if train:
        run = root / "run"
        if not (run / "model.pt").is_file():
            from prodsearch.training.main import train_from_cli

            typer.echo("training projection heads on cached features (fast path)...")
            t = time.perf_counter()
            train_from_cli(catalog, run, overrides={"max_products": limit} if limit else {}, overwrite=True)
            typer.echo(f"trained in {time.perf_counter() - t:.0f}s -> {run}")
        model = str(run)
    index_dir = root / ("index-trained" if model else "index")
    t = time.perf_counter()
    rep = build_index(catalog, index_dir, recipe=EmbedderRecipe(model=model), limit=limit, progress=True)
    what = "reused cached index" if not rep.did_work else f"indexed {rep.accepted} products"
    typer.echo(f"{what} in {time.perf_counter() - t:.1f}s -> {index_dir}")

    with Engine.open(index_dir) as engine:
        for q in TEXT_QUERIES:
            _show(f"text: {q!r}", engine.search(q, k=5))
        if engine.aligned:
            _show(
                f"text -> image only: {TEXT_QUERIES[0]!r}", engine.search(TEXT_QUERIES[0], k=5, mode="image")
            )
        first = next(iter(engine.store.iter_products()))
        if first.image_path:
            _show(
                f"image: photo of {first.id} ({first.title})",
                engine.search(image=first.image_path, k=5, mode="image"),
            )
            if engine.aligned:
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
