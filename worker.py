"""The worker: runs AudienceSyncWorkflow and its activities against the configured warehouse.

python worker.py            # or: switchyard worker
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
from collections.abc import Mapping

from temporalio.client import Client
from temporalio.worker import Worker

from activities.sync import SyncActivities
from starter.client import connect
from switchyard.catalog.loader import load_catalog
from switchyard.runs import delivery_task_queue
from switchyard.settings import Settings
from switchyard.warehouse.factory import open_warehouse
from workflows.audience_sync import AudienceSyncWorkflow

log = logging.getLogger("switchyard.worker")


def sync_activities(settings: Settings, env: Mapping[str, str] | None = None) -> SyncActivities:
    warehouse = open_warehouse(
        settings.warehouse_url, linger_seconds=1.0, memory_limit=settings.duckdb_memory_limit
    )
    return SyncActivities(warehouse, settings, env)


def build_workers(
    client: Client,
    settings: Settings,
    task_queue: str | None = None,
    env: Mapping[str, str] | None = None,
    activities: SyncActivities | None = None,
) -> list[Worker]:
    """The sync's worker, plus one delivery worker per destination in the catalog.

    Each destination's deliveries run on a task queue of their own with their own slots, so
    a slow or failing destination holds only its own slots and never delays the others.
    """
    queue = task_queue or settings.temporal.task_queue
    activities = activities or sync_activities(settings, env)
    main = Worker(
        client,
        task_queue=queue,
        workflows=[AudienceSyncWorkflow],
        activities=activities.steps(),
        activity_executor=concurrent.futures.ThreadPoolExecutor(max_workers=8),
        max_concurrent_activities=8,
        # Eagerly dispatched activities go to the worker that ran the workflow task, so one
        # worker would deliver nearly every chunk of a run; through the task queue, chunks
        # spread over every worker process polling it (Postgres lets several share a run).
        disable_eager_activity_execution=True,
    )
    destinations = sorted(load_catalog(settings.catalog_dir).destinations)
    delivery = [
        Worker(
            client,
            task_queue=delivery_task_queue(queue, name),
            activities=activities.delivery(),
            max_concurrent_activities=settings.delivery.destination_slots,
        )
        for name in destinations
    ]
    return [main, *delivery]


async def run_worker(settings: Settings) -> None:
    client = await connect(settings)
    activities = sync_activities(settings)
    workers = build_workers(client, settings, activities=activities)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker polling %s (and %d destination queues) on %s",
        settings.temporal.task_queue,
        len(workers) - 1,
        settings.temporal.address,
    )
    async with contextlib.AsyncExitStack() as running:
        # Runs last, once every worker has stopped: destination clients' connections close.
        running.push_async_callback(activities.aclose)
        for worker in workers:
            await running.enter_async_context(worker)
        await stop.wait()
        log.info("worker shutting down")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # One line per HTTP request would bury everything else (10k lines for a 10M-row run).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run_worker(Settings()))


if __name__ == "__main__":
    main()
