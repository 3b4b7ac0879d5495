"""The audience sync's activities: thin adapters from workflow inputs to domain calls.

Step activities are synchronous (they run SQL in the worker's thread pool); deliver_chunk
is async so it can pace requests and heartbeat while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from switchyard.catalog.loader import load_catalog
from switchyard.catalog.models import Destination, SyncPlan
from switchyard.delivery import engine
from switchyard.delivery.ratelimit import RateLimiters
from switchyard.destinations.base import CompletesRuns, DestinationClient
from switchyard.destinations.registry import create_client
from switchyard.errors import FatalError, RetryableError
from switchyard.pipeline import commit, consent, diff, ledger, quiet, snapshot, validate
from switchyard.runs import (
    ChangePlan,
    ChunkResult,
    CommitInput,
    CommitResult,
    ConsentResult,
    DeliverChunkInput,
    PlanInput,
    ReportInput,
    RunReport,
    SnapshotResult,
    StepInput,
    ValidationResult,
)
from switchyard.settings import Settings
from switchyard.warehouse.base import Warehouse, WarehouseError


@contextlib.contextmanager
def retry_meaning() -> Iterator[None]:
    """Turn the domain's error types into Temporal's retry semantics."""
    try:
        yield
    except FatalError as error:
        raise ApplicationError(str(error), type=type(error).__name__, non_retryable=True) from error
    except RetryableError as error:
        delay = timedelta(seconds=error.retry_after) if error.retry_after is not None else None
        raise ApplicationError(
            str(error), type=type(error).__name__, next_retry_delay=delay
        ) from error
    except WarehouseError as error:
        raise ApplicationError(str(error), type="WarehouseError") from error


class SyncActivities:
    def __init__(
        self,
        warehouse: Warehouse,
        settings: Settings,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._warehouse = warehouse
        self._settings = settings
        self._env = env
        self._limiters = RateLimiters()
        # Delivery clients live as long as the worker: their connection pools (and TLS
        # contexts, costly to build) are reused by every chunk sent to the same destination.
        self._clients: dict[str, DestinationClient] = {}

    @activity.defn(name="resolve_plan")
    def resolve_plan(self, sync: str) -> SyncPlan:
        with retry_meaning():
            catalog = load_catalog(self._settings.catalog_dir)
            try:
                return catalog.plan_for(sync)
            except KeyError as error:
                raise ApplicationError(str(error), non_retryable=True) from error

    @activity.defn(name="check_destination")
    async def check_destination(self, request: StepInput) -> None:
        with retry_meaning():
            client = self._client(request.plan.destination, request.run.sync)
            try:
                await client.preflight()
            finally:
                await client.aclose()

    @activity.defn(name="snapshot_audience")
    def snapshot_audience(self, request: StepInput) -> SnapshotResult:
        with retry_meaning(), self._warehouse.session() as session:
            return snapshot.snapshot_audience(
                session, request.run, request.plan, full_resync=request.full_resync
            )

    @activity.defn(name="validate_snapshot")
    def validate_snapshot(self, request: StepInput) -> ValidationResult:
        with retry_meaning(), self._warehouse.session() as session:
            return validate.validate_snapshot(session, request.run, request.plan)

    @activity.defn(name="filter_consent")
    def filter_consent(self, request: StepInput) -> ConsentResult:
        with retry_meaning(), self._warehouse.session() as session:
            return consent.filter_consent(session, request.run, request.plan)

    @activity.defn(name="plan_changes")
    def plan_changes(self, request: PlanInput) -> ChangePlan:
        with retry_meaning(), self._warehouse.session() as session:
            return diff.plan_changes(session, request)

    @activity.defn(name="deliver_chunk")
    async def deliver_chunk(self, request: DeliverChunkInput) -> ChunkResult:
        info = activity.info()
        details = info.heartbeat_details
        # The last batch a previous attempt reported done; the durable checkpoints are the
        # authority, this only saves re-reading them when they agree.
        progress = _Progress(int(details[0]) if details else -1)
        heartbeat = asyncio.create_task(_keep_heartbeating(progress, info.heartbeat_timeout))
        client = self._delivery_client(request.destination, request.run.sync)
        try:
            with retry_meaning():
                return await engine.deliver_chunk(
                    self._warehouse,
                    client,
                    request.run,
                    request.chunk,
                    progress.last_done,
                    progress.advance,
                    request.concurrency,
                    worker=worker_identity(),
                )
        finally:
            heartbeat.cancel()

    @activity.defn(name="commit_delivered")
    async def commit_delivered(self, request: CommitInput) -> CommitResult:
        with retry_meaning():
            result = await asyncio.to_thread(self._commit, request)
            destination = request.destination
            if request.complete and destination is not None:
                client = self._delivery_client(destination, request.run.sync)
                if isinstance(client, CompletesRuns):
                    await client.complete_run(request.run.run_id)
            return result

    def _commit(self, request: CommitInput) -> CommitResult:
        with self._warehouse.session() as session:
            result = commit.commit_delivered(session, request.run)
            if request.complete and request.counts is not None:
                quiet.settle(session, request.run, request.fingerprint, request.counts)
            return result

    @activity.defn(name="report_run")
    def report_run(self, request: ReportInput) -> RunReport:
        with retry_meaning(), self._warehouse.session() as session:
            return ledger.report_run(session, request, datetime.now(UTC))

    def _delivery_client(self, destination: Destination, sync: str) -> DestinationClient:
        key = hashlib.sha1(f"{sync}\0{destination.model_dump_json()}".encode()).hexdigest()
        client = self._clients.get(key)
        if client is None:
            with retry_meaning():
                client = self._clients[key] = self._client(destination, sync)
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def _client(self, destination: Destination, sync: str) -> DestinationClient:
        limiter = self._limiters.for_destination(destination.name, destination.contract.rate_limit)
        return create_client(destination, sync, limiter, self._settings.environment, self._env)

    def steps(self) -> list[Callable[..., Any]]:
        """The run's steps, on the sync's task queue."""
        return [
            self.resolve_plan,
            self.snapshot_audience,
            self.validate_snapshot,
            self.filter_consent,
            self.plan_changes,
            self.commit_delivered,
            self.report_run,
        ]

    def delivery(self) -> list[Callable[..., Any]]:
        """What talks to a destination, on that destination's own task queue."""
        return [self.check_destination, self.deliver_chunk]


def worker_identity() -> str:
    """This worker process, as Temporal's default identity names it (`pid@host`)."""
    return f"{os.getpid()}@{socket.gethostname()}"


class _Progress:
    def __init__(self, last_done: int) -> None:
        self.last_done = last_done

    def advance(self, batch: int) -> None:
        self.last_done = max(self.last_done, batch)
        activity.heartbeat(self.last_done)


async def _keep_heartbeating(progress: _Progress, timeout: timedelta | None) -> None:
    """Heartbeat while waiting (rate limits, slow responses) so the attempt isn't presumed dead."""
    interval = (timeout.total_seconds() / 3) if timeout else 10.0
    while True:
        await asyncio.sleep(interval)
        activity.heartbeat(progress.last_done)
