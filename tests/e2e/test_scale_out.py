"""Scale-out: two worker processes share one run's chunks through a Postgres warehouse.

The run's changes span many small chunks and the destination answers a little slowly, so
both workers pick up deliver activities. Each acknowledged batch records the worker that
sent it; the run must be exact whoever sent what: every record once, none twice, and the
delivered state equal to what the destination holds.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from starter.runs import start_sync, wait_for_result
from switchyard.pipeline.checkpoints import batches_by_worker
from switchyard.sampledata import seed_warehouse
from switchyard.settings import DeliverySettings, Settings
from tests.e2e.conftest import Simulator, Workers, delivered_keys, session_of, set_batch_size

pytestmark = pytest.mark.e2e
SYNC = "high_value_to_crm"
HOOK = "crm"


async def activity_pollers(client: Client, task_queue: str, at_least: int) -> set[str]:
    """The identities polling the queue for activities, once `at_least` of them are."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    )
    deadline = time.monotonic() + 60
    while True:
        response = await client.workflow_service.describe_task_queue(request)
        identities = {poller.identity for poller in response.pollers}
        if len(identities) >= at_least or time.monotonic() > deadline:
            return identities
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("warehouse_url", ["postgres"], indirect=True)
async def test_two_workers_share_one_runs_chunks_and_the_result_is_exact(
    client: Client,
    settings: Settings,
    simulator: Simulator,
    workers: Workers,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_batch_size(settings, 50)
    # ~4,000 records in chunks of 200: ~20 deliver activities of 4 batches each.
    tuning = DeliverySettings(chunk_size=200, window=4, heartbeat_timeout_seconds=10)
    settings = settings.model_copy(update={"delivery": tuning})
    workers.settings = settings
    seed_warehouse(settings.warehouse_url, 20_000)
    simulator.configure(latency_ms=25)
    started = [workers.start(), workers.start()]
    expected = {f"{process.pid}@{socket.gethostname()}" for process in started}
    pollers = await activity_pollers(client, settings.temporal.task_queue, at_least=2)
    assert expected <= pollers, f"both workers should be polling: {pollers}"

    report = await wait_for_result(await start_sync(client, settings, SYNC))

    assert report.status == "succeeded"
    assert report.counts.chunks >= 15
    with session_of(settings) as session:
        by_worker = batches_by_worker(session, report.run_id)
    with capsys.disabled():
        print(
            f"\n[e2e] {report.counts.batches} batches in {report.counts.chunks} chunks, "
            f"acknowledged per worker: {by_worker}"
        )
    assert set(by_worker) == expected, "each worker process should have delivered batches"
    assert all(n > 0 for n in by_worker.values())
    # Every batch acknowledged exactly once, by one worker or the other.
    assert sum(by_worker.values()) == report.counts.batches
    stats = simulator.stats()
    held = simulator.records(HOOK)
    assert stats["duplicate_records"] == 0
    assert stats["records_received"] == report.counts.sent == report.counts.added == len(held)
    assert set(held) == delivered_keys(settings)
