"""Stand-in activities registered under the real names, scripted per test."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from switchyard.catalog.models import SyncPlan
from switchyard.runs import (
    ChangePlan,
    ChunkResult,
    CommitInput,
    CommitResult,
    ConsentResult,
    DeliverChunkInput,
    PlanInput,
    QuietPlan,
    ReportInput,
    RunReport,
    SnapshotResult,
    StepInput,
    ValidationResult,
)

ROWS_PER_CHUNK = 10


@dataclass
class Script:
    """What the fake activities do, and what they saw."""

    plan: SyncPlan
    chunks: int = 3
    # chunk -> list of errors to raise on successive attempts before succeeding
    failures: dict[int, list[ApplicationError]] = field(default_factory=dict)
    block_chunks: set[int] = field(default_factory=set)
    preflight_error: ApplicationError | None = None
    attempts: dict[int, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    delivered: list[int] = field(default_factory=list)
    concurrency: set[int] = field(default_factory=set)
    commits: int = 0
    # Per commit: whether the run was declared complete, and to which destination.
    completions: list[tuple[bool, str | None]] = field(default_factory=list)
    reports: list[ReportInput] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    # The test environment's clock, which time skipping moves forward.
    clock: Callable[[], Awaitable[datetime]] | None = None
    # What fetch says of the last plan (None: inputs changed), and the steps that ran.
    quiet: QuietPlan | None = None
    steps: list[str] = field(default_factory=list)
    plan_inputs: list[PlanInput] = field(default_factory=list)
    commit_inputs: list[CommitInput] = field(default_factory=list)


def fake_activities(script: Script) -> list[object]:
    @activity.defn(name="resolve_plan")
    async def resolve_plan(sync: str) -> SyncPlan:
        return script.plan

    @activity.defn(name="check_destination")
    async def check_destination(request: StepInput) -> None:
        if script.preflight_error:
            raise script.preflight_error

    @activity.defn(name="snapshot_audience")
    async def snapshot_audience(request: StepInput) -> SnapshotResult:
        script.steps.append("fetch")
        rows = script.chunks * ROWS_PER_CHUNK + 5
        return SnapshotResult(rows=rows, fingerprint="inputs-v1", quiet=script.quiet)

    @activity.defn(name="validate_snapshot")
    async def validate_snapshot(request: StepInput) -> ValidationResult:
        script.steps.append("validate")
        return ValidationResult(
            valid=script.chunks * ROWS_PER_CHUNK + 3,
            invalid={"invalid_email:email": 2},
            fields_dropped={},
        )

    @activity.defn(name="filter_consent")
    async def filter_consent(request: StepInput) -> ConsentResult:
        script.steps.append("consent")
        return ConsentResult(eligible=script.chunks * ROWS_PER_CHUNK, excluded={"x": 3})

    @activity.defn(name="plan_changes")
    async def plan_changes(request: PlanInput) -> ChangePlan:
        script.steps.append("diff")
        script.plan_inputs.append(request)
        n = script.chunks * ROWS_PER_CHUNK
        return ChangePlan(
            added=n,
            changed=0,
            removed=0,
            forgotten=0,
            unchanged=0,
            to_send=n,
            chunks=script.chunks,
        )

    @activity.defn(name="deliver_chunk")
    async def deliver_chunk(request: DeliverChunkInput) -> ChunkResult:
        chunk = request.chunk
        script.concurrency.add(request.concurrency)
        now = await script.clock() if script.clock else datetime.now(UTC)
        script.attempts[chunk].append(now)
        script.started.set()
        pending = script.failures.get(chunk)
        if pending:
            raise pending.pop(0)
        if chunk in script.block_chunks:
            while True:  # until cancelled
                activity.heartbeat()
                await asyncio.sleep(0.05)
        script.delivered.append(chunk)
        return ChunkResult(chunk=chunk, sent=ROWS_PER_CHUNK, accepted=ROWS_PER_CHUNK, batches=1)

    @activity.defn(name="commit_delivered")
    async def commit_delivered(request: CommitInput) -> CommitResult:
        script.commits += 1
        script.commit_inputs.append(request)
        destination = request.destination.name if request.destination else None
        script.completions.append((request.complete, destination))
        return CommitResult(delivered=len(script.delivered) * ROWS_PER_CHUNK, removed=0, rejected=0)

    @activity.defn(name="report_run")
    async def report_run(request: ReportInput) -> RunReport:
        script.reports.append(request)
        return RunReport(
            run_id=request.run.run_id,
            sync=request.run.sync,
            audience=request.plan.audience.name,
            audience_version=request.plan.audience.version,
            destination=request.plan.destination.name,
            contract_version=request.plan.contract.version,
            status=request.status,
            dry_run=request.dry_run,
            full_resync=request.full_resync,
            started_at=request.started_at,
            finished_at=datetime.now(UTC),
            counts=request.counts,
            error=request.error,
        )

    return [
        resolve_plan,
        check_destination,
        snapshot_audience,
        validate_snapshot,
        filter_consent,
        plan_changes,
        deliver_chunk,
        commit_delivered,
        report_run,
    ]


def retryable(message: str, delay: timedelta | None = None) -> ApplicationError:
    return ApplicationError(message, type="DestinationUnavailableError", next_retry_delay=delay)


def fatal(message: str) -> ApplicationError:
    return ApplicationError(message, type="DestinationRefusedError", non_retryable=True)
