"""The worker: runs AudienceSyncWorkflow and its activities against the configured warehouse.

python worker.py            # or: switchyard worker
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
from collections.abc import Mapping

from temporalio.client import Client
from temporalio.worker import Worker

from activities.sync import SyncActivities
from starter.client import connect
from switchyard.settings import Settings
from switchyard.warehouse.factory import open_warehouse
from workflows.audience_sync import AudienceSyncWorkflow

log = logging.getLogger("switchyard.worker")


def build_worker(
    client: Client,
    settings: Settings,
    task_queue: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Worker:
    warehouse = open_warehouse(
        settings.warehouse_url, linger_seconds=1.0, memory_limit=settings.duckdb_memory_limit
    )
    activities = SyncActivities(warehouse, settings, env)
    return Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=[AudienceSyncWorkflow],
        activities=activities.all(),
        activity_executor=concurrent.futures.ThreadPoolExecutor(max_workers=8),
        max_concurrent_activities=16,
        # Eagerly dispatched activities go to the worker that ran the workflow task, so one
        # worker would deliver nearly every chunk of a run; through the task queue, chunks
        # spread over every worker process polling it (Postgres lets several share a run).
        disable_eager_activity_execution=True,
    )


async def run_worker(settings: Settings) -> None:
    client = await connect(settings)
    worker = build_worker(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling %s on %s", settings.temporal.task_queue, settings.temporal.address)
    async with worker:
        await stop.wait()
        log.info("worker shutting down")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # One line per HTTP request would bury everything else (10k lines for a 10M-row run).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run_worker(Settings()))


if __name__ == "__main__":
    main()
