"""Whole runs on the Temporal dev server: worker processes, the webhook simulator, and the
warehouse on each engine (DuckDB and Postgres)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys

import pytest
from temporalio.client import Client

from starter.runs import RunFailed, start_sync, wait_for_result
from switchyard.catalog.loader import load_catalog
from switchyard.catalog.models import TraitType
from switchyard.delivery.engine import UNSETTLED_PER_SLOT
from switchyard.pipeline.expressions import normalised
from switchyard.runs import RunReport
from switchyard.sampledata import mutate_warehouse, seed_warehouse
from switchyard.settings import Settings
from tests.conftest import REPO
from tests.e2e.conftest import Simulator, Workers, delivered_keys, session_of, set_batch_size
from workflows.audience_sync import AudienceSyncWorkflow

pytestmark = pytest.mark.e2e
SYNC = "high_value_to_crm"
HOOK = "crm"


async def run_sync(client: Client, settings: Settings, sync: str = SYNC, **kw: bool) -> RunReport:
    handle = await start_sync(client, settings, sync, **kw)
    return await wait_for_result(handle)


def keys_of(settings: Settings, profile_ids: list[str]) -> set[str]:
    """The match keys (normalised emails) of some profiles, as the pipeline computes them."""
    with session_of(settings) as session:
        email = normalised(session.dialect, "email", TraitType.EMAIL, "US")
        rows = session.fetchall(
            f"SELECT {email} FROM profiles WHERE profile_id IN "
            f"({', '.join('?' for _ in profile_ids)})",
            profile_ids,
        )
    return {r[0] for r in rows if r[0]}


async def test_full_run_then_no_change_then_only_the_changes(
    client: Client, settings: Settings, simulator: Simulator, workers: Workers
) -> None:
    seed_warehouse(settings.warehouse_url, 20_000)
    workers.start()

    first = await run_sync(client, settings)
    assert first.status == "succeeded"
    held = simulator.records(HOOK)
    assert set(held) == delivered_keys(settings)
    assert first.counts.sent == first.counts.added == len(held)

    received = simulator.stats()["records_received"]
    second = await run_sync(client, settings)
    assert second.counts.sent == 0
    assert simulator.stats()["records_received"] == received

    mutation = mutate_warehouse(settings.warehouse_url, 300)
    third = await run_sync(client, settings)
    after = simulator.records(HOOK)
    differing = {k for k in held.keys() | after.keys() if held.get(k) != after.get(k)}
    sent = simulator.stats()["records_received"] - received
    # Exactly the records that differ went out: nothing unchanged was resent...
    assert sent == len(differing) == third.counts.sent
    assert third.counts.sent == third.counts.added + third.counts.changed + third.counts.removed
    # ...and every one of them belongs to a profile that was changed.
    assert differing <= keys_of(settings, mutation.profile_ids)
    assert set(after) == delivered_keys(settings)


async def test_killing_the_worker_mid_run_loses_nothing_and_resends_only_in_flight_batches(
    client: Client,
    settings: Settings,
    simulator: Simulator,
    workers: Workers,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_batch_size(settings, 100)
    seed_warehouse(settings.warehouse_url, 100_000)  # about 20k records for this sync
    simulator.configure(latency_ms=40)
    worker = workers.start()

    handle = await start_sync(client, settings, SYNC)
    result = asyncio.ensure_future(wait_for_result(handle))
    kills: list[dict[str, int]] = []
    for threshold in (3_000, 8_000, 13_000):
        while simulator.stats()["records_received"] < threshold and not result.done():
            await asyncio.sleep(0.05)
        if result.done():
            break
        before = simulator.stats()["duplicate_records"]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = workers.start()
        kills.append({"at_records": threshold, "duplicates_before": before})
    report = await asyncio.wait_for(result, timeout=300)
    stats = simulator.stats()

    assert report.status == "succeeded"
    assert len(kills) == 3, "the run finished before the worker could be killed three times"
    held = simulator.records(HOOK)
    assert set(held) == delivered_keys(settings)
    assert len(held) == report.counts.added
    # Re-sends after each kill are bounded by what was sent and not yet checkpointed: the
    # window's chunk activities, each with its share of the contract's max_in_flight batches
    # (as the workflow sizes them) in flight and as many again awaiting their checkpoint,
    # of 100 records each.
    contract = load_catalog(settings.catalog_dir).plan_for(SYNC).contract
    chunks_in_flight = min(settings.delivery.window, contract.max_in_flight)
    batches_per_chunk = max(1, contract.max_in_flight // chunks_in_flight)
    in_flight_bound = chunks_in_flight * batches_per_chunk * UNSETTLED_PER_SLOT * 100
    resent = stats["duplicate_records"]
    marks = [k["duplicates_before"] for k in kills] + [resent]
    per_kill = [after - before for before, after in itertools.pairwise(marks)]
    with capsys.disabled():
        print(
            f"\n[e2e] {len(kills)} worker SIGKILLs mid-run; records re-sent per kill: "
            f"{per_kill} (bound {in_flight_bound}); total {resent} of {report.counts.added}"
        )
    assert resent <= in_flight_bound * len(kills)
    # The idempotency key made every re-send a no-op downstream.
    assert stats["records_received"] == report.counts.added


async def test_cancelling_mid_run_commits_exactly_what_the_destination_holds(
    client: Client, settings: Settings, simulator: Simulator, workers: Workers
) -> None:
    set_batch_size(settings, 100)
    seed_warehouse(settings.warehouse_url, 100_000)  # about 20k records
    simulator.configure(latency_ms=40)
    workers.start()
    handle = await start_sync(client, settings, SYNC)
    while simulator.stats()["records_received"] < 2_000:
        await asyncio.sleep(0.05)
    await handle.cancel()
    with pytest.raises(RunFailed, match="cancelled"):
        await wait_for_result(handle)
    held = simulator.records(HOOK)
    assert 2_000 <= len(held) < 15_000
    assert set(held) == delivered_keys(settings)


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starter", *args],
        cwd=REPO,
        env={**os.environ, **settings.as_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cli_runs_a_sync_and_exits_zero_with_a_summary(
    settings: Settings, simulator: Simulator, workers: Workers
) -> None:
    seed_warehouse(settings.warehouse_url, 5_000)
    workers.start()
    done = await asyncio.to_thread(cli, settings, "sync", "run", SYNC)
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout and "added" in done.stdout and "Temporal UI" in done.stdout
    dry = await asyncio.to_thread(cli, settings, "sync", "run", SYNC, "--dry-run", "--full")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing sent" in dry.stdout


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (("audiences/high_value_customers.yaml", "FROM profiles", "FROM profilez"), "profilez"),
        (
            ("destinations/crm_webhook.yaml", "source: last_name,", "source: city,"),
            "does not return",
        ),
        (
            (
                "destinations/crm_webhook.yaml",
                "${SWITCHYARD_WEBHOOK_URL:-http://127.0.0.1:8787}",
                "http://127.0.0.1:9",
            ),
            "unreachable",
        ),
    ],
    ids=["audience-sql-fails", "mapping-to-missing-column", "destination-unreachable"],
)
async def test_bad_input_fails_clearly_and_sends_nothing(
    settings: Settings,
    simulator: Simulator,
    workers: Workers,
    breakage: tuple[str, str, str],
    expected: str,
) -> None:
    file, old, new = breakage
    path = settings.catalog_dir / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    if "city" in new:  # the audience must not return the column the mapping wants
        audience = settings.catalog_dir / "audiences" / "high_value_customers.yaml"
        audience.write_text(
            audience.read_text().replace(
                "SELECT *",
                "SELECT profile_id, email, phone, first_name, last_name, plan, "
                "lifetime_value, orders_count, last_order_at, crm_id",
            )
        )
    seed_warehouse(settings.warehouse_url, 2_000)
    workers.start()
    done = await asyncio.to_thread(cli, settings, "sync", "run", SYNC)
    assert done.returncode == 1
    assert expected in done.stderr + done.stdout
    assert simulator.stats()["records_received"] == 0


# The catalog is refused before anything reaches a warehouse: one engine is enough.
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_an_invalid_catalog_is_reported_with_file_and_line(settings: Settings) -> None:
    path = settings.catalog_dir / "destinations" / "crm_webhook.yaml"
    path.write_text(path.read_text().replace("batch_size: 1000", "bach_size: 1000"))
    done = cli(settings, "catalog", "validate", str(settings.catalog_dir))
    assert done.returncode == 1
    assert "crm_webhook.yaml:" in done.stdout and "batch_size" in done.stdout
    refused = cli(settings, "sync", "run", SYNC)
    assert refused.returncode == 1
    assert "bach_size" in refused.stderr + refused.stdout


async def test_schedules_follow_the_catalog_and_a_scheduled_run_resolves_its_plan(
    client: Client, settings: Settings, simulator: Simulator, workers: Workers
) -> None:
    from starter.schedules import apply_schedules, schedule_id

    seed_warehouse(settings.warehouse_url, 3_000)
    workers.start()
    catalog = load_catalog(settings.catalog_dir)
    try:
        applied = await apply_schedules(client, settings, catalog)
        assert {(a.sync, a.action) for a in applied} >= {(SYNC, "created")}
        again = await apply_schedules(client, settings, catalog)
        assert {a.action for a in again} == {"updated"}

        await client.get_schedule_handle(schedule_id(SYNC)).trigger()
        # This test's own scheduled run: its task queue is unique to the test.
        query = (
            f"TaskQueue = '{settings.temporal.task_queue}' "
            f"AND WorkflowId STARTS_WITH 'switchyard-sync-{SYNC}-'"
        )
        found = []
        for _ in range(100):  # visibility is eventually consistent
            found = [w async for w in client.list_workflows(query)]
            if found:
                break
            await asyncio.sleep(0.2)
        assert found, "the triggered run never appeared"
        report = await client.get_workflow_handle_for(
            AudienceSyncWorkflow.run, found[0].id
        ).result()
        assert report.status == "succeeded"
        assert set(simulator.records(HOOK)) == delivered_keys(settings)
    finally:
        for sync in catalog.syncs:
            with contextlib.suppress(Exception):
                await client.get_schedule_handle(schedule_id(sync)).delete()
