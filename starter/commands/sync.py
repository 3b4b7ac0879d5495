"""`switchyard sync ...`: start runs, follow them, pause, resume and cancel them."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from starter.client import connect
from starter.runs import (
    RunFailed,
    describe_progress,
    latest_run,
    start_sync,
    summary_table,
    ui_link,
    wait_for_result,
)
from switchyard.catalog.problems import CatalogError
from switchyard.settings import Settings
from workflows.audience_sync import AudienceSyncWorkflow

app = typer.Typer(help="Run syncs and steer running ones.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

SyncName = Annotated[str, typer.Argument(help="Sync name from the catalog's syncs.yaml.")]


@app.command()
def run(
    sync: SyncName,
    full: Annotated[
        bool, typer.Option("--full", help="Resend every eligible record, not just changes.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Compute everything, send nothing, commit nothing.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the run and print its summary.")
    ] = True,
) -> None:
    """Start a run of SYNC (and by default follow it to the end)."""
    raise typer.Exit(asyncio.run(_run(Settings(), sync, full, dry_run, wait)))


async def _run(settings: Settings, sync: str, full: bool, dry_run: bool, wait: bool) -> int:
    try:
        client = await connect(settings)
        handle = await start_sync(client, settings, sync, full_resync=full, dry_run=dry_run)
    except (CatalogError, KeyError, RunFailed, RuntimeError) as error:
        errors.print(f"[red]cannot start {sync}:[/red] {error}")
        return 1
    link = ui_link(settings, handle)
    console.print(f"started {sync}: {link}", highlight=False)
    if not wait:
        return 0
    try:
        report = await wait_for_result(handle, console)
    except RunFailed as failure:
        if failure.report:
            console.print(summary_table(failure.report, link))
        errors.print(f"[red]run failed:[/red] {failure}")
        return 1
    console.print(summary_table(report, link))
    return 0


@app.command()
def status(sync: SyncName) -> None:
    """Show the latest run of SYNC: its state and, while running, its progress."""
    raise typer.Exit(asyncio.run(_status(Settings(), sync)))


async def _status(settings: Settings, sync: str) -> int:
    client = await connect(settings)
    handle = await latest_run(client, sync)
    if handle is None:
        errors.print(f"sync {sync!r} has no runs yet")
        return 1
    description = await handle.describe()
    state = description.status.name.lower() if description.status else "unknown"
    console.print(f"{sync}: {state} (run {description.run_id})", highlight=False)
    if description.status == WorkflowExecutionStatus.RUNNING:
        progress = await handle.query(AudienceSyncWorkflow.progress)
        console.print(describe_progress(progress), highlight=False)
    return 0


def _signal(sync: str, action: str) -> int:
    async def send() -> int:
        client = await connect(Settings())
        handle = await latest_run(client, sync, running_only=True)
        if handle is None:
            errors.print(f"sync {sync!r} has no run in progress")
            return 1
        try:
            if action == "cancel":
                await handle.cancel()
            else:
                await handle.signal(action)
        except RPCError as error:
            errors.print(f"cannot {action} {sync}: {error.message}")
            return 1
        console.print(f"{action} sent to {sync}")
        return 0

    return asyncio.run(send())


@app.command()
def pause(sync: SyncName) -> None:
    """Stop dispatching new chunks; batches in flight finish."""
    raise typer.Exit(_signal(sync, "pause"))


@app.command()
def resume(sync: SyncName) -> None:
    """Resume a paused run."""
    raise typer.Exit(_signal(sync, "resume"))


@app.command()
def cancel(sync: SyncName) -> None:
    """Cancel the run: in-flight batches finish, acknowledged records are committed."""
    raise typer.Exit(_signal(sync, "cancel"))
