"""``prodsearch interactions check|rank``: thin calls into :mod:`prodsearch.interactions`
(registered in cli.py; ``train`` / ``evaluate`` / ``calibrate`` take ``--interactions LOG`` too)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=True, help="Shoppers' interaction logs: validate them, learn ranking from them."
)
Log = Annotated[Path, typer.Argument(help="Interaction log (JSONL, CSV or Parquet).", metavar="LOG")]


def _product_ids(index: Path | None, catalog: Path | None) -> list[str] | None:
    if index is not None:
        from prodsearch.search.engine import Engine

        with Engine.open(index) as engine:
            return [p.id for p in engine.store.iter_products()]
    if catalog is not None:
        from prodsearch.catalog import read_catalog

        return [p.id for p in read_catalog(catalog, check_images=False).products]
    return None


@app.command("check")
def check(
    log_path: Log,
    index: Annotated[Path | None, typer.Option(help="Index whose product ids events must name.")] = None,
    catalog: Annotated[Path | None, typer.Option(help="Or a catalog file.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the rejected rows as JSON here.")] = None,
    strict: Annotated[bool, typer.Option(help="Fail on the first bad row.")] = False,
) -> None:
    """Validate a log: every bad row with its row number, field and reason; a summary by reason."""
    from prodsearch.interactions.log import read_interactions

    res = read_interactions(log_path, _product_ids(index, catalog), strict=strict)
    typer.echo(res.summary())
    for p in res.problems[:20]:
        typer.echo(f"  {p}")
    if len(res.problems) > 20:
        typer.echo(
            f"  ... and {len(res.problems) - 20} more" + ("" if report else " (--report FILE lists all)")
        )
    if report is not None:
        res.write_report(report)
        typer.echo(f"report written to {report}")


@app.command("rank")
def rank(
    index: Annotated[Path, typer.Argument(help="Index folder.", metavar="INDEX")],
    log_path: Log,
    holdout: Annotated[float, typer.Option(help="Later share of the log that judges the fusion.")] = 0.2,
    half_life_days: Annotated[float, typer.Option(help="Popularity half-life in days.")] = 14.0,
    popularity: Annotated[bool, typer.Option(help="Store the popularity signal with the index.")] = True,
) -> None:
    """Store popularity with the index and calibrate its fusion on the log's held-out window."""
    from prodsearch.interactions.ranking import learn_ranking
    from prodsearch.search.calibration import format_comparison

    cal = learn_ranking(
        index, log_path, holdout=holdout, half_life_days=half_life_days, with_popularity=popularity
    )
    if cal is None:
        typer.echo("fusion: not calibrated (too few held-out queries); popularity keeps weight 0")
        return
    typer.echo(format_comparison(cal))
    typer.echo(f"shoppers' queries in the calibration: {cal.get('interaction_queries', {})}")
