"""A slow destination holds only its own delivery slots: syncs to the others keep their pace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from starter.runs import RunFailed, start_sync, wait_for_result
from switchyard.destinations.webhook.simulator import SimulatorConfig, create_app
from switchyard.sampledata import seed_warehouse
from switchyard.settings import Settings
from switchyard.simulators.server import run_in_thread
from tests.e2e.conftest import Simulator, Workers, set_batch_size
from workflows.audience_sync import AudienceSyncWorkflow

pytestmark = pytest.mark.e2e
SLOW_SYNC, FAST_SYNC = "high_value_to_crm", "churn_risk_to_retention"


@pytest.fixture
def slow_receiver() -> Iterator[str]:
    """A second webhook receiver that takes a second to answer each request."""
    with run_in_thread(create_app(SimulatorConfig(latency_ms=1_000), freeze_gc=False)) as url:
        yield url


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
async def test_a_slow_destination_does_not_hold_up_a_sync_to_another(
    client: Client,
    settings: Settings,
    simulator: Simulator,
    workers: Workers,
    slow_receiver: str,
) -> None:
    crm = settings.catalog_dir / "destinations" / "crm_webhook.yaml"
    crm.write_text(
        crm.read_text().replace("${SWITCHYARD_WEBHOOK_URL:-http://127.0.0.1:8787}", slow_receiver)
    )
    set_batch_size(settings, 50)
    # One delivery slot per destination per worker: were the slot shared, the fast sync
    # would wait behind every chunk of the slow one.
    settings = settings.model_copy(
        update={"delivery": settings.delivery.model_copy(update={"destination_slots": 1})}
    )
    workers.settings = settings
    seed_warehouse(settings.warehouse_url, 20_000)
    workers.start()

    slow = await start_sync(client, settings, SLOW_SYNC)
    while (await slow.query(AudienceSyncWorkflow.progress)).phase != "deliver":
        await asyncio.sleep(0.1)

    fast = await wait_for_result(await start_sync(client, settings, FAST_SYNC))

    assert fast.status == "succeeded" and fast.counts.sent > 0
    assert len(simulator.records("retention")) == fast.counts.sent
    # The slow sync is still delivering, a second per request, while the fast one is done.
    progress = await slow.query(AudienceSyncWorkflow.progress)
    assert (await slow.describe()).status is WorkflowExecutionStatus.RUNNING
    assert progress.phase == "deliver" and progress.counts.chunks_done < progress.counts.chunks
    # Cancelled and waited for, so the next test may start this sync again.
    await slow.cancel()
    with pytest.raises(RunFailed, match="cancelled"):
        await wait_for_result(slow)
