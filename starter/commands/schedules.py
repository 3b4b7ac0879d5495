"""`switchyard schedules apply|list`: the catalog's cron schedules, in Temporal."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from starter.client import connect
from starter.schedules import SCHEDULE_PREFIX, apply_schedules
from switchyard.catalog.loader import load_catalog
from switchyard.catalog.problems import CatalogError
from switchyard.settings import Settings

app = typer.Typer(help="Keep Temporal schedules in step with the catalog.", no_args_is_help=True)
console = Console()


@app.command()
def apply() -> None:
    """Create, update or delete one schedule per sync so they match syncs.yaml."""
    settings = Settings()
    try:
        catalog = load_catalog(settings.catalog_dir)
    except CatalogError as error:
        console.print(f"[red]catalog has problems; nothing applied[/red]\n{error}")
        raise typer.Exit(1) from None

    async def go() -> None:
        client = await connect(settings)
        for applied in await apply_schedules(client, settings, catalog):
            console.print(f"{applied.action:8} {applied.sync}")

    asyncio.run(go())


@app.command("list")
def list_() -> None:
    """List Switchyard's schedules with their next run times."""

    async def go() -> None:
        client = await connect(Settings())
        async for listed in await client.list_schedules():
            if not listed.id.startswith(SCHEDULE_PREFIX):
                continue
            upcoming = listed.info.next_action_times[:1] if listed.info else []
            when = upcoming[0].isoformat() if upcoming else "-"
            console.print(f"{listed.id.removeprefix(SCHEDULE_PREFIX):32} next {when}")

    asyncio.run(go())
