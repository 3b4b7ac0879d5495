"""`switchyard catalog ...`: validate the YAML catalog and show what a sync will do."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from switchyard.catalog.loader import CatalogError, load_catalog
from switchyard.catalog.models import Catalog, SyncPlan
from switchyard.catalog.problems import Problem, suggest
from switchyard.settings import Settings

app = typer.Typer(
    help="Validate the catalog and inspect what a sync will send.",
    no_args_is_help=True,
)

CatalogPath = Annotated[
    Path | None,
    typer.Argument(help="Catalog directory (default: SWITCHYARD_CATALOG_DIR or examples/catalog)."),
]


@app.command()
def validate(path: CatalogPath = None) -> None:
    """Check every file in the catalog; list every problem with its line and a fix."""
    root = _root(path)
    catalog = _load_or_exit(root)
    typer.echo(
        f"{root}: OK: {_count(len(catalog.traits), 'trait')}, "
        f"{_count(len(catalog.audiences), 'audience')}, "
        f"{_count(len(catalog.destinations), 'destination')}, "
        f"{_count(len(catalog.syncs), 'sync')}"
    )


@app.command()
def show(
    sync: Annotated[str, typer.Argument(help="Sync name, as in syncs.yaml.")],
    catalog_dir: Annotated[
        Path | None, typer.Option("--catalog", "-c", help="Catalog directory.")
    ] = None,
) -> None:
    """Print the resolved plan of one sync: audience, destination, contract and fields."""
    catalog = _load_or_exit(_root(catalog_dir))
    if sync not in catalog.syncs:
        typer.echo(f"unknown sync {sync!r} ({suggest(sync, catalog.syncs, what='known')})")
        raise typer.Exit(1)
    for line in render_plan(catalog.plan_for(sync)):
        typer.echo(line)


def render_plan(plan: SyncPlan) -> list[str]:
    audience, destination, contract = plan.audience, plan.destination, plan.contract
    identifier = contract.identifier
    schedule = plan.sync.schedule or "manual runs only"
    rows = [
        ("audience", f"{audience.name} (v{audience.version}, owner {audience.owner})"),
        ("destination", f"{destination.name} ({destination.kind}, owner {destination.owner})"),
        ("contract", f"v{contract.version}"),
        ("identifier", f"{identifier.name} <- {identifier.source} ({identifier.type.value})"),
        ("sync mode", contract.sync_mode.value),
        ("consent", contract.consent_purpose or "none required"),
        ("schedule", schedule + (" (paused)" if plan.sync.paused else "")),
        ("freshness", f"{_duration(contract.freshness_sla)} SLA"),
        ("delivery", _delivery(plan)),
    ]
    lines = [f"sync {plan.sync.name}"]
    lines += [f"  {label + ':':<13}{value}" for label, value in rows]
    lines.append("  fields:")
    table = [("name", "source", "type", "required", "owner", "class")]
    for mapping in contract.fields:
        trait = plan.traits.get(mapping.source)
        table.append(
            (
                mapping.name,
                mapping.source,
                mapping.type.value
                + (f"({mapping.max_length})" if mapping.max_length is not None else ""),
                "yes" if mapping.required else "",
                mapping.owner.value,
                trait.classification.value if trait is not None else "?",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        lines.append(
            "    " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        )
    return lines


def _root(path: Path | None) -> Path:
    # Settings are built here, at the entry point, never at import.
    return path if path is not None else Settings().catalog_dir


def _load_or_exit(root: Path) -> Catalog:
    try:
        return load_catalog(root)
    except CatalogError as error:
        _print_problems(error.problems)
        raise typer.Exit(1) from None


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        typer.echo(problem.headline)
        typer.echo(f"    fix: {problem.fix}")
    typer.echo(f"{_count(len(problems), 'problem')} found")


def _delivery(plan: SyncPlan) -> str:
    contract = plan.contract
    limit = contract.rate_limit
    rate = f", {limit.requests} requests per {limit.per_seconds:g}s" if limit else ""
    return f"batches of {contract.batch_size}, {contract.max_in_flight} in flight{rate}"


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
