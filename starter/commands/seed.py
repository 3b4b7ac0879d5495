"""`switchyard seed` and `switchyard mutate`: sample CDP data in the warehouse (a DuckDB file
or a Postgres database)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from switchyard.sampledata import (
    MutationSummary,
    SampleDataMissingError,
    SeedSummary,
    mutate_warehouse,
    seed_warehouse,
)
from switchyard.settings import Settings
from switchyard.warehouse.base import WarehouseError
from switchyard.warehouse.duckdb_lock import WarehouseLockedError
from switchyard.warehouse.factory import is_postgres
from switchyard.warehouse.postgres import redact

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)

WarehouseOption = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        help="DuckDB file or postgresql:// URL to write. Default: the configured warehouse "
        "(SWITCHYARD_WAREHOUSE, else .state/warehouse.duckdb).",
    ),
]


def seed(
    profiles: Annotated[
        int, typer.Option("--profiles", "-n", min=1, help="How many profiles to generate.")
    ] = 100_000,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed; same seed, same bytes.")
    ] = 42,
    warehouse: WarehouseOption = None,
) -> None:
    """Fill the warehouse with deterministic sample CDP data (see SEED_HELP)."""
    url = _warehouse_url(warehouse)
    with _progress() as bar:
        task = bar.add_task("seeding profiles", total=profiles)
        summary = _run(
            lambda: seed_warehouse(
                url,
                profiles,
                seed,
                progress=lambda done: bar.update(task, completed=done),
                on_lock_wait=_say_waiting,
            )
        )
    _print_seed(summary)


def mutate(
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, help="How many profiles to change.")
    ] = 1_000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Picks which profiles change.")] = 7,
    warehouse: WarehouseOption = None,
) -> None:
    """Change some seeded profiles so the next sync has work to do (see MUTATE_HELP)."""
    url = _warehouse_url(warehouse)
    summary = _run(lambda: mutate_warehouse(url, count, seed, on_lock_wait=_say_waiting))
    _print_mutation(summary, url)


# Help as single paragraphs: typer keeps a docstring's line breaks when it renders help.
SEED_HELP = (
    "Fill the warehouse with deterministic sample CDP data.\n\n"
    "(Re)creates main.profiles, main.consents and main.suppressions: realistic, messy "
    "profiles (bad emails and phones, shared emails, unicode and over-long names), consent "
    "per purpose and a suppression list. The same --profiles and --seed always produce the "
    "same data. Sync state in the `switchyard` schema is left untouched."
)
MUTATE_HELP = (
    "Change some seeded profiles so the next sync has real work to do.\n\n"
    "About 70 % get a trait change (new order, higher lifetime value, plan or first name), "
    "15 % drop below a lifetime value of 500 (they leave 'lifetime_value >= 500' audiences) "
    "and 15 % revoke email_marketing consent. The same warehouse and --seed always change "
    "the same profiles."
)


def register(app: typer.Typer) -> None:
    app.command("seed", help=SEED_HELP)(seed)
    app.command("mutate", help=MUTATE_HELP)(mutate)


def _warehouse_url(option: str | None) -> str:
    url = option if option is not None else Settings().warehouse_url
    if "://" in url and not is_postgres(url) and not url.startswith("duckdb://"):
        errors.print(
            f"[red]error:[/] unsupported warehouse {url.split('://')[0]}://…; "
            "pass a DuckDB file path or a postgresql:// URL"
        )
        raise typer.Exit(2)
    return url


def _run(action: Callable[[], T]) -> T:
    try:
        return action()
    except (WarehouseLockedError, WarehouseError, SampleDataMissingError, ValueError) as error:
        errors.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from error


def _say_waiting(message: str) -> None:
    errors.print(f"[yellow]{message}[/] …")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _print_seed(summary: SeedSummary) -> None:
    rows = " · ".join(f"{table} {count:,}" for table, count in summary.rows.items())
    console.print(
        f"[green]seeded[/] {rows} in {summary.seconds:.1f}s (seed {summary.seed}) "
        f"→ {summary.warehouse}"
    )


def _print_mutation(summary: MutationSummary, url: str) -> None:
    console.print(
        f"[green]mutated[/] {summary.total:,} profiles in {redact(url)} at {summary.mutated_at}: "
        f"traits {len(summary.traits_changed):,} · "
        f"lifetime_value < 500 {len(summary.ltv_dropped):,} · "
        f"email_marketing revoked {len(summary.consent_revoked):,}"
    )
