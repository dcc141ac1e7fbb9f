"""``prodsearch models list|show|promote|rollback INDEX`` and ``prodsearch refresh INDEX``: thin calls
into the registry (registered in cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from prodsearch.registry.evaluate import METRICS, RESAMPLES
from prodsearch.registry.refresh import STEPS

app = typer.Typer(
    no_args_is_help=True,
    help="Model versions of an index: list, show, promote, rollback (see also `prodsearch refresh`).",
)
Index = Annotated[Path, typer.Argument(help="Index folder.", metavar="INDEX")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")]


def _logging(verbose: bool) -> None:
    from prodsearch.cli import _setup_logging

    _setup_logging(verbose)


def _progress(flag: bool | None) -> bool:
    from prodsearch.cli import _progress as progress

    return progress(flag)


def _reload_hint() -> str:
    return (
        "a running `prodsearch serve` of this index picks it up with: "
        'curl -X POST -H "Authorization: Bearer $PRODSEARCH_API_TOKEN" http://HOST:PORT/admin/reload'
    )


@app.command("list")
def list_cmd(index: Index, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every registered version: status, parent, evaluation against the model it would replace."""
    from prodsearch.registry.store import Registry

    reg = Registry(index)
    versions = reg.versions()
    if as_json:
        typer.echo(json.dumps({"served": reg.served, "versions": [v.to_dict() for v in versions]}, indent=2))
        return
    if not versions:
        typer.echo(f"{index}: no registered model versions (`prodsearch refresh` registers the served one)")
        return
    for v in versions:
        ev = v.evaluation
        verdict = (
            f"{ev['metric']} {ev['difference']:+.4f} [{ev['ci_low']:+.4f}, {ev['ci_high']:+.4f}] vs {ev['against']}"
            if ev
            else "-"
        )
        mark = "*" if v.version == reg.served else " "
        typer.echo(
            f"{mark} {v.version:<5} {v.status:<12} parent {v.parent or '-':<5} {v.created_at}  {verdict}"
        )


@app.command()
def show(
    index: Index,
    version: Annotated[str | None, typer.Argument(help="Version (default: the served one).")] = None,
) -> None:
    """One version's record as JSON (config, catalog fingerprint, training, evaluation, history)."""
    from prodsearch.errors import ConfigError
    from prodsearch.registry.store import Registry

    reg = Registry(index)
    version = version or reg.served
    if version is None:
        raise ConfigError(f"{index}: no registered model versions")
    rec = reg.get(version).to_dict()
    rec.pop("fusion", None)
    rec["served"] = version == reg.served
    typer.echo(json.dumps(rec, indent=2, default=str))


@app.command()
def promote(
    index: Index,
    version: Annotated[str, typer.Argument(help="The version to serve, e.g. v3.")],
    force: Annotated[
        bool, typer.Option(help="Serve it even without an evaluation that says it is better.")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Serve a candidate: its vectors (built by `refresh --step evaluate`) replace the served ones in
    one atomic switch; refused unless its evaluation beat the served model beyond the noise."""
    from prodsearch.registry.refresh import promote_if_better
    from prodsearch.registry.store import Registry
    from prodsearch.search.engine import Engine

    _logging(verbose)
    with Engine.open(index) as engine:
        res = promote_if_better(engine, Registry(index), version, force=force)
    if res["promoted"]:
        sw = res["switch"]
        typer.echo(
            f"{index}: now serves {version} (was {sw['from']}; encoded {sw['encoded']} products in {sw['seconds']:.1f}s)"
        )
        typer.echo(_reload_hint())
    else:
        typer.echo(f"{index}: {version} rejected (not better beyond the noise); still serves {res['served']}")
        raise typer.Exit(1)


@app.command()
def rollback(
    index: Index,
    to: Annotated[
        str | None, typer.Option(help="Version to return to (default: the one served before).")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Switch back to the previously served version, from its kept vectors (no re-encoding, except
    products written since it was served)."""
    from prodsearch.errors import ConfigError
    from prodsearch.registry.store import Registry
    from prodsearch.registry.swap import switch_to
    from prodsearch.search.engine import Engine

    _logging(verbose)
    reg = Registry(index)
    target = to or reg.previous_served()
    if target is None:
        raise ConfigError(f"{index}: no earlier served version to roll back to (served: {reg.served})")
    with Engine.open(index) as engine:
        sw = switch_to(engine, target, action="rollback", reg=reg)
    typer.echo(f"{index}: now serves {target} (was {sw['from']}; encoded {sw['encoded']} products)")
    typer.echo(_reload_hint())


def refresh_command(
    index: Index,
    catalog: Annotated[Path | None, typer.Option(help="Catalog file to sync first (the sync step).")] = None,
    step: Annotated[
        list[str] | None,
        typer.Option(help=f"Run only these steps, repeatable: {', '.join(STEPS)} (default: all, in order)."),
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Candidate for evaluate/promote (default: the newest).")
    ] = None,
    interactions: Annotated[
        Path | None,
        typer.Option(help="Interaction log (JSONL/CSV/Parquet): shoppers' graded pairs join training."),
    ] = None,
    metric: Annotated[
        str,
        typer.Option(help=f"What must improve: {', '.join(METRICS)} (mean: over the query kinds both run)."),
    ] = "mean",
    margin: Annotated[float, typer.Option(help="The interval's lower end must exceed this.")] = 0.0,
    resamples: Annotated[int, typer.Option(help="Paired bootstrap resamples over queries.")] = RESAMPLES,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (default: the served version's).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Sync only the catalog's first N rows.")] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bars (default: only on a terminal)."),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Sync the catalog, re-train from the served model (warm start), evaluate the candidate against
    it on the fixed held-out split, and promote it only if better beyond the noise."""
    from prodsearch.registry.refresh import refresh

    _logging(verbose)
    steps = tuple(step) if step else (STEPS if catalog is not None else STEPS[1:])
    report = refresh(
        index,
        catalog,
        steps=steps,
        version=version,
        epochs=epochs,
        metric=metric,
        margin=margin,
        resamples=resamples,
        interactions=interactions,
        limit=limit,
        progress=_progress(progress),
        echo=typer.echo,
    )
    if report.get("promote", {}).get("promoted"):
        typer.echo(_reload_hint())
