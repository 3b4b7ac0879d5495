"""AudienceSyncWorkflow: one run of one sync, told as a story.

resolve → preflight → fetch → validate → consent-filter → diff → chunk-deliver → commit
→ report. Only references and counts pass through history; records stay in the warehouse.
Delivery runs a bounded window of chunk activities and continues as new long before the
history limits. Signals pause/resume dispatching; the `progress` query reports where the run
is; cancellation stops dispatching, lets in-flight batches finish and commits what the
destination acknowledged.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from switchyard.catalog.models import SyncPlan
    from switchyard.runs import (
        AudienceSyncInput,
        ChangePlan,
        ChunkResult,
        CommitInput,
        CommitResult,
        ConsentResult,
        Counts,
        DeliverChunkInput,
        PlanInput,
        Progress,
        QuietPlan,
        ReportInput,
        RunRef,
        RunReport,
        SnapshotResult,
        StepInput,
        SyncCheckpoint,
        ValidationResult,
        delivery_task_queue,
    )
    from workflows import search_attributes

STEP_TIMEOUT = timedelta(minutes=30)
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
PREFLIGHT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)


@workflow.defn
class AudienceSyncWorkflow:
    def __init__(self) -> None:
        self._phase = "starting"
        self._paused = False
        self._counts = Counts()
        self._run: RunRef | None = None
        # What the run's plan depends on, hashed by fetch; commit keeps a delivered plan by it.
        self._fingerprint = ""

    @workflow.run
    async def run(self, request: AudienceSyncInput) -> RunReport:
        if request.resume is not None:
            checkpoint = self._restore(request.resume)
        else:
            plan = request.plan or await self._step(
                "resolve", "resolve_plan", request.sync, SyncPlan
            )
            self._run = RunRef(run_id=workflow.info().run_id, sync=request.sync)
            checkpoint = SyncCheckpoint(
                run_id=self._run.run_id,
                plan=plan,
                started_at=workflow.now(),
                counts=self._counts,
                next_chunk=0,
            )
            try:
                await self._prepare(request, checkpoint.plan)
            except (ActivityError, asyncio.CancelledError) as error:
                return await self._finish(request, checkpoint, error, commit=False)
            if request.dry_run or self._counts.to_send == 0:
                status = "dry_run" if request.dry_run else "succeeded"
                return await self._finish(
                    request, checkpoint, None, commit=not request.dry_run, status=status
                )
        try:
            await self._deliver(request, checkpoint)
        except (ActivityError, asyncio.CancelledError) as error:
            return await self._finish(request, checkpoint, error, commit=True)
        return await self._finish(request, checkpoint, None, commit=True)

    @workflow.signal
    def pause(self) -> None:
        self._paused = True

    @workflow.signal
    def resume(self) -> None:
        self._paused = False

    @workflow.query
    def progress(self) -> Progress:
        run = self._run
        return Progress(
            run_id=run.run_id if run else "",
            sync=run.sync if run else "",
            phase=self._phase,
            paused=self._paused,
            counts=self._counts,
        )

    # -- the story's chapters ------------------------------------------------------------

    async def _prepare(self, request: AudienceSyncInput, plan: SyncPlan) -> None:
        """Everything before the first record leaves: nothing here sends data."""
        assert self._run is not None
        step = StepInput(run=self._run, plan=plan, full_resync=request.full_resync)
        self._label(plan)
        # On the destination's own queue: if no worker serves it, this fails in a minute,
        # before anything is read or sent, instead of the run waiting there unnoticed.
        await self._step(
            "preflight",
            "check_destination",
            step,
            None,
            retry=PREFLIGHT_RETRY,
            task_queue=self._delivery_queue(plan),
            schedule_to_start_timeout=request.tuning.pickup_timeout,
        )
        snapshot = await self._step("fetch", "snapshot_audience", step, SnapshotResult)
        self._counts.snapshot = snapshot.rows
        self._fingerprint = snapshot.fingerprint
        if snapshot.quiet is not None:
            # Nothing the last plan depended on changed and the destination holds what it
            # said: this run would send nothing, so it reuses that plan (see pipeline.quiet).
            self._reuse(snapshot.quiet)
            return
        checked = await self._step("validate", "validate_snapshot", step, ValidationResult)
        self._counts.invalid = checked.invalid
        self._counts.fields_dropped = checked.fields_dropped
        consent = await self._step("consent", "filter_consent", step, ConsentResult)
        self._counts.excluded = consent.excluded
        self._counts.eligible = consent.eligible
        changes = await self._step(
            "diff",
            "plan_changes",
            PlanInput(
                run=self._run,
                plan=plan,
                full_resync=request.full_resync,
                chunk_size=request.tuning.chunk_size,
                fingerprint=snapshot.fingerprint,
                counts=self._counts,
            ),
            ChangePlan,
        )
        self._counts.added, self._counts.changed = changes.added, changes.changed
        self._counts.removed, self._counts.forgotten = changes.removed, changes.forgotten
        self._counts.unchanged, self._counts.to_send = changes.unchanged, changes.to_send
        self._counts.chunks = changes.chunks

    async def _deliver(self, request: AudienceSyncInput, checkpoint: SyncCheckpoint) -> None:
        """A bounded window of chunk activities; continue-as-new between windows when due."""
        assert self._run is not None
        self._set_phase("deliver")
        tuning = request.tuning
        pending: list[asyncio.Task[ChunkResult]] = []
        dispatched = 0
        next_chunk = checkpoint.next_chunk
        failure: BaseException | None = None
        try:
            while next_chunk < self._counts.chunks or pending:
                window = min(tuning.window, checkpoint.plan.contract.max_in_flight)
                due = (
                    dispatched >= tuning.chunks_per_execution
                    or workflow.info().is_continue_as_new_suggested()
                )
                room = len(pending) < window and not due
                if (
                    failure is None
                    and not self._paused
                    and next_chunk < self._counts.chunks
                    and room
                ):
                    pending.append(
                        asyncio.create_task(self._deliver_chunk(request, checkpoint, next_chunk))
                    )
                    next_chunk += 1
                    dispatched += 1
                    continue
                if pending:
                    done, pending = await workflow.wait(
                        pending, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        try:
                            self._add(task.result())
                        except ActivityError as error:
                            failure = failure or error
                    continue
                if failure is not None:
                    break
                if due:
                    await self._continue_as_new(request, checkpoint, next_chunk)
                await workflow.wait_condition(lambda: not self._paused)
        except asyncio.CancelledError:
            # Stop dispatching; in-flight chunks finish their current batch and stop.
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise
        if failure is not None:
            raise failure

    async def _deliver_chunk(
        self, request: AudienceSyncInput, checkpoint: SyncCheckpoint, chunk: int
    ) -> ChunkResult:
        assert self._run is not None
        tuning = request.tuning
        result: ChunkResult = await workflow.execute_activity(
            "deliver_chunk",
            DeliverChunkInput(
                run=self._run,
                destination=checkpoint.plan.destination,
                chunk=chunk,
                concurrency=_per_chunk(checkpoint.plan.contract.max_in_flight, tuning.window),
            ),
            result_type=ChunkResult,
            task_queue=self._delivery_queue(checkpoint.plan),
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=tuning.heartbeat_timeout,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                backoff_coefficient=2,
                maximum_interval=timedelta(seconds=60),
                maximum_attempts=tuning.max_attempts,
            ),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return result

    async def _continue_as_new(
        self, request: AudienceSyncInput, checkpoint: SyncCheckpoint, next_chunk: int
    ) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        resume = checkpoint.model_copy(
            update={
                "counts": self._counts,
                "next_chunk": next_chunk,
                "paused": self._paused,
                "fingerprint": self._fingerprint,
            }
        )
        workflow.continue_as_new(request.model_copy(update={"resume": resume, "plan": None}))

    async def _finish(
        self,
        request: AudienceSyncInput,
        checkpoint: SyncCheckpoint,
        error: BaseException | None,
        *,
        commit: bool,
        status: str = "succeeded",
    ) -> RunReport:
        """Commit what was acknowledged, write the ledger, then end as the run ended."""
        assert self._run is not None
        message = (
            _describe(error, self._phase, self._delivery_queue(checkpoint.plan))
            if error is not None
            else None
        )
        if isinstance(error, asyncio.CancelledError):
            status = "cancelled"
        elif error is not None:
            status = "failed"
        if commit:
            await self._step(
                "commit",
                "commit_delivered",
                CommitInput(
                    run=self._run,
                    destination=checkpoint.plan.destination,
                    complete=status == "succeeded",
                    fingerprint=self._fingerprint,
                    counts=self._counts,
                ),
                CommitResult,
            )
        report: RunReport = await self._step(
            "report",
            "report_run",
            ReportInput(
                run=self._run,
                plan=checkpoint.plan,
                status=status,
                started_at=checkpoint.started_at,
                counts=self._counts,
                dry_run=request.dry_run,
                full_resync=request.full_resync,
                error=message,
            ),
            RunReport,
        )
        self._set_phase(status)
        if isinstance(error, asyncio.CancelledError):
            raise error
        if error is not None:
            raise ApplicationError(
                message or "run failed", report, non_retryable=True, type="SyncFailed"
            )
        return report

    # -- plumbing ------------------------------------------------------------------------

    async def _step(
        self,
        phase: str,
        activity: str,
        arg: Any,
        result_type: Any,
        retry: RetryPolicy = STEP_RETRY,
        task_queue: str | None = None,
        schedule_to_start_timeout: timedelta | None = None,
    ) -> Any:
        self._set_phase(phase)
        return await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            task_queue=task_queue,
            schedule_to_start_timeout=schedule_to_start_timeout,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=retry,
        )

    def _delivery_queue(self, plan: SyncPlan) -> str:
        return delivery_task_queue(workflow.info().task_queue, plan.destination.name)

    def _restore(self, checkpoint: SyncCheckpoint) -> SyncCheckpoint:
        self._run = RunRef(run_id=checkpoint.run_id, sync=checkpoint.plan.sync.name)
        self._counts = checkpoint.counts
        self._paused = checkpoint.paused
        self._fingerprint = checkpoint.fingerprint
        return checkpoint

    def _reuse(self, quiet: QuietPlan) -> None:
        counts = self._counts
        counts.invalid, counts.fields_dropped = quiet.invalid, quiet.fields_dropped
        counts.excluded, counts.eligible = quiet.excluded, quiet.eligible
        counts.unchanged, counts.unchanged_since = quiet.unchanged, quiet.planned_by

    def _add(self, result: ChunkResult) -> None:
        counts = self._counts
        counts.sent += result.sent
        counts.accepted += result.accepted
        counts.batches += result.batches
        counts.chunks_done += 1
        for reason, n in result.rejected.items():
            counts.rejected[reason] = counts.rejected.get(reason, 0) + n

    def _labelled(self) -> bool:
        return workflow.info().typed_search_attributes.get(search_attributes.SYNC) is not None

    def _label(self, plan: SyncPlan) -> None:
        if self._labelled():
            workflow.upsert_search_attributes(
                [
                    search_attributes.AUDIENCE.value_set(plan.audience.name),
                    search_attributes.DESTINATION.value_set(plan.destination.name),
                ]
            )

    def _set_phase(self, phase: str) -> None:
        self._phase = phase
        if self._labelled():
            workflow.upsert_search_attributes([search_attributes.PHASE.value_set(phase)])


def _per_chunk(max_in_flight: int, window: int) -> int:
    """Batches in flight per chunk so that the whole window uses the contract's allowance."""
    return max(1, max_in_flight // max(1, min(window, max_in_flight)))


def _describe(error: BaseException, phase: str, delivery_queue: str) -> str:
    if isinstance(error, asyncio.CancelledError):
        return f"cancelled during {phase}"
    cause = error.cause if isinstance(error, ActivityError) else None
    if isinstance(cause, ActivityTimeout) and cause.type is TimeoutType.SCHEDULE_TO_START:
        return (
            f"{phase} failed: no worker serves task queue {delivery_queue!r}; workers serve "
            "the destinations in the catalog they loaded at start: restart them after adding one"
        )
    detail = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
    return f"{phase} failed: {detail}"
