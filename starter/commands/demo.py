"""`switchyard demo`: the whole story on the embedded stack, from an empty folder.

Seeds a warehouse, starts Temporal, the simulator and a worker, runs every sync in full,
changes some profiles, runs again (only the changes go out), checks the simulator holds
what the delivered state says, and shuts everything down.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Annotated

import httpx
import pyarrow.parquet as pq
import typer
from rich.console import Console

from starter.client import connect
from starter.runs import RunFailed, start_sync, summary_table, ui_link, wait_for_result
from starter.stack import StackError, embedded_stack
from switchyard.catalog.loader import load_catalog
from switchyard.catalog.models import Destination
from switchyard.destinations.file_export.spec import FileExportConfig
from switchyard.destinations.webhook.spec import WebhookConfig
from switchyard.sampledata import mutate_duckdb, seed_duckdb
from switchyard.settings import Settings
from switchyard.warehouse.duckdb import DuckDBWarehouse

console = Console()


def demo(
    profiles: Annotated[int, typer.Option("--profiles", "-n", min=1000)] = 100_000,
    changes: Annotated[int, typer.Option("--changes", min=1)] = 1_000,
    state_dir: Annotated[Path, typer.Option(help="Wiped and reused on every demo.")] = Path(
        ".state/demo"
    ),
) -> None:
    """Seed, start the stack, sync, change profiles, sync again, verify, stop."""
    if state_dir.exists():
        shutil.rmtree(state_dir)
    settings = Settings(state_dir=state_dir, warehouse="")
    # The example file export writes here; the worker inherits it.
    exports = state_dir / "exports"
    exports.mkdir(parents=True)
    os.environ["SWITCHYARD_EXPORT_DIR"] = str(exports.resolve())
    started = time.monotonic()
    console.rule("1. seed the warehouse")
    summary = seed_duckdb(Path(settings.warehouse_url), profiles)
    console.print(f"{summary.profiles:,} profiles in {summary.seconds:.1f} s → {summary.path}")
    try:
        with embedded_stack(settings):
            console.print(f"stack up: Temporal UI {settings.temporal.ui_url}")
            code = asyncio.run(_story(settings, changes))
    except StackError as error:
        console.print(f"[red]stack failed:[/red] {error}")
        raise typer.Exit(1) from None
    console.rule(f"demo finished in {time.monotonic() - started:.0f} s")
    raise typer.Exit(code)


async def _story(settings: Settings, changes: int) -> int:
    client = await connect(settings)
    syncs = sorted(load_catalog(settings.catalog_dir).syncs)
    console.rule("2. first run of every sync: everything is new")
    for sync in syncs:
        if not await _run(client, settings, sync):
            return 1
    console.rule(f"3. change {changes:,} profiles")
    mutation = mutate_duckdb(Path(settings.warehouse_url), changes)
    console.print(
        f"{len(mutation.traits_changed):,} traits changed, {len(mutation.ltv_dropped):,} dropped "
        f"below the high-value line, {len(mutation.consent_revoked):,} revoked email consent"
    )
    console.rule("4. second run: only the changes go out")
    for sync in syncs:
        if not await _run(client, settings, sync):
            return 1
    console.rule("5. the destination holds exactly what the delivered state says")
    return 0 if await _verify(settings, syncs) else 1


async def _run(client, settings: Settings, sync: str) -> bool:  # type: ignore[no-untyped-def]
    handle = await start_sync(client, settings, sync)
    try:
        report = await wait_for_result(handle, console)
    except RunFailed as failure:
        console.print(f"[red]{sync} failed:[/red] {failure}")
        return False
    console.print(summary_table(report, ui_link(settings, handle)))
    return True


async def _verify(settings: Settings, syncs: list[str]) -> bool:
    """Each destination holds what the delivered state says it was sent."""
    catalog = load_catalog(settings.catalog_dir)
    warehouse = DuckDBWarehouse(settings.warehouse_url)
    ok = True
    async with httpx.AsyncClient(base_url=settings.simulator_url) as http:
        for sync in syncs:
            destination = catalog.destinations[catalog.syncs[sync].destination]
            with warehouse.session() as session:
                row = session.fetchone(
                    "SELECT count(*) FROM switchyard.delivered WHERE sync_id = ?", (sync,)
                )
            delivered = int(row[0]) if row else 0
            held, where = await _held(http, destination, sync)
            same = held == delivered
            ok &= same
            mark = "[green]match[/green]" if same else "[red]MISMATCH[/red]"
            console.print(
                f"{sync}: {where} holds {held:,} records, delivered state {delivered:,}: {mark}"
            )
    return ok


async def _held(http: httpx.AsyncClient, destination: Destination, sync: str) -> tuple[int, str]:
    """How many records the destination holds for this sync, and where that was read."""
    config = destination.config
    if isinstance(config, WebhookConfig):
        hook = config.url.rstrip("/").rsplit("/", 1)[1]
        held = (await http.get(f"/_sim/hooks/{hook}/records", params={"keys_only": 1})).json()
        return int(held["count"]), f"webhook /hooks/{hook}"
    if isinstance(config, FileExportConfig) and config.directory:
        return _exported(Path(config.directory) / sync), f"{config.directory}/{sync}"
    kind = destination.kind
    held = (await http.get(f"/{kind}/_sim/records")).json()
    if kind == "braze":
        # Braze keeps a user who leaves and unsets the synced attributes: a user is in the
        # sync while it holds the contract's required ones.
        required = [m.name for m in destination.contract.sent_fields if m.required]
        members = [
            r for r in held["records"].values() if all(r.get(n) is not None for n in required)
        ]
        return len(members), "braze simulator (users holding the synced attributes)"
    return int(held["count"]), f"{kind} simulator"


def _exported(root: Path) -> int:
    """Replay every completed run's manifest in order: the keys the files say are in."""
    keys: set[str] = set()
    manifests = sorted(
        (
            json.loads((run / "manifest.json").read_text())
            for run in root.iterdir()
            if (run / "_SUCCESS").exists()
        ),
        key=lambda m: str(m["created_at"]),
    )
    for manifest in manifests:
        identifier = manifest["identifier"]
        for part in manifest["parts"]:
            table = pq.read_table(root / manifest["run_id"] / part["file"])
            for op, key in zip(table["op"].to_pylist(), table[identifier].to_pylist(), strict=True):
                (keys.add if op == "upsert" else keys.discard)(key)
    return len(keys)


def register(app: typer.Typer) -> None:
    app.command()(demo)
