"""AudienceSyncWorkflow on the time-skipping server, with scripted stand-in activities."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from switchyard.runs import (
    AudienceSyncInput,
    DeliveryTuning,
    Progress,
    QuietPlan,
    RunReport,
    delivery_task_queue,
)
from tests.support.catalogs import webhook_plan
from tests.workflows.fakes import ROWS_PER_CHUNK, Script, fake_activities, fatal, retryable
from workflows.audience_sync import AudienceSyncWorkflow

TUNING = DeliveryTuning(chunk_size=ROWS_PER_CHUNK, window=2, max_attempts=5)


class Workers(contextlib.AsyncExitStack):
    """The sync's worker and its destination's delivery worker, run together."""

    def __init__(self, *workers: Worker) -> None:
        super().__init__()
        self.workers = workers

    async def __aenter__(self) -> Workers:
        await super().__aenter__()
        for worker in self.workers:
            await self.enter_async_context(worker)
        return self


async def start(
    env: WorkflowEnvironment,
    script: Script,
    tuning: DeliveryTuning = TUNING,
    serve_destination: bool = True,
    **options: object,
) -> tuple[Workers, WorkflowHandle[AudienceSyncWorkflow, RunReport]]:
    queue = f"test-{uuid.uuid4()}"
    activities = fake_activities(script)
    workers = [
        Worker(
            env.client,
            task_queue=queue,
            workflows=[AudienceSyncWorkflow],
            activities=activities,
            # A bug in the workflow fails the test at once instead of retrying the task forever.
            workflow_failure_exception_types=[Exception],
        )
    ]
    if serve_destination:
        destination_queue = delivery_task_queue(queue, script.plan.destination.name)
        workers.append(Worker(env.client, task_queue=destination_queue, activities=activities))
    worker = Workers(*workers)
    handle = await env.client.start_workflow(
        AudienceSyncWorkflow.run,
        AudienceSyncInput(sync="test_sync", tuning=tuning, **options),  # type: ignore[arg-type]
        id=f"sync-{uuid.uuid4()}",
        task_queue=queue,
    )
    return worker, handle


async def test_a_run_delivers_every_chunk_once_commits_and_reports(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = Script(plan=webhook_plan(), chunks=5)
    worker, handle = await start(time_skipping_env, script)
    async with worker:
        report = await handle.result()
    assert sorted(script.delivered) == [0, 1, 2, 3, 4]
    assert report.status == "succeeded"
    assert report.counts.sent == 5 * ROWS_PER_CHUNK
    assert report.counts.invalid == {"invalid_email:email": 2}
    assert report.counts.chunks_done == 5
    assert script.commits == 1
    # Only a run that ended well tells its destination it is complete (a file's manifest).
    assert script.completions == [(True, "crm_webhook")]
    # A window of 2 chunks shares the contract's 8 requests in flight: 4 per chunk.
    assert script.concurrency == {4}


async def test_transient_failures_are_retried_and_retry_after_is_honoured(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = Script(
        plan=webhook_plan(),
        chunks=2,
        failures={
            0: [retryable("HTTP 503")],
            1: [retryable("429", delay=timedelta(minutes=7))],
        },
        clock=time_skipping_env.get_current_time,
    )
    worker, handle = await start(time_skipping_env, script)
    async with worker:
        report = await handle.result()
    assert report.status == "succeeded"
    assert len(script.attempts[0]) == 2
    first, second = script.attempts[1]
    assert second - first >= timedelta(minutes=7)


async def test_a_fatal_error_fails_the_run_loudly_after_committing_what_was_acknowledged(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = Script(
        plan=webhook_plan(), chunks=3, failures={1: [fatal("HTTP 401: credentials refused")]}
    )
    worker, handle = await start(time_skipping_env, script)
    async with worker:
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert "deliver failed" in cause.message and "credentials refused" in cause.message
    assert len(script.attempts[1]) == 1  # non-retryable: no second attempt
    assert script.commits == 1
    assert script.completions == [(False, "crm_webhook")]
    assert script.reports[-1].status == "failed"


async def test_a_destination_no_worker_serves_fails_the_run_clearly_before_any_fetch(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = Script(plan=webhook_plan(), chunks=2)
    tuning = TUNING.model_copy(update={"pickup_timeout": timedelta(seconds=2)})
    worker, handle = await start(time_skipping_env, script, tuning, serve_destination=False)
    async with worker:
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert "no worker serves task queue" in cause.message
    assert ".deliver.crm_webhook" in cause.message
    assert script.delivered == [] and script.reports[-1].status == "failed"


async def test_an_unreachable_destination_fails_before_anything_is_fetched(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = Script(
        plan=webhook_plan(), preflight_error=fatal("unreachable at http://nowhere: ConnectError")
    )
    worker, handle = await start(time_skipping_env, script)
    async with worker:
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "preflight failed" in str(failure.value.cause)
    assert script.delivered == [] and script.commits == 0


async def wait_for(handle: WorkflowHandle[AudienceSyncWorkflow, RunReport], phase: str) -> Progress:
    for _ in range(200):
        progress = await handle.query(AudienceSyncWorkflow.progress)
        if progress.phase == phase:
            return progress
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached phase {phase}")


async def test_pause_stops_dispatching_and_resume_finishes_the_run(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = Script(plan=webhook_plan(), chunks=4)
    worker, handle = await start(time_skipping_env, script)
    await handle.signal(AudienceSyncWorkflow.pause)
    async with worker:
        progress = await wait_for(handle, "deliver")
        assert progress.paused
        await asyncio.sleep(0.5)
        assert script.delivered == []
        await handle.signal(AudienceSyncWorkflow.resume)
        report = await handle.result()
    assert sorted(script.delivered) == [0, 1, 2, 3]
    assert report.counts.chunks_done == 4


async def test_cancellation_stops_in_flight_chunks_and_commits(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = Script(plan=webhook_plan(), chunks=6, block_chunks={1})
    worker, handle = await start(time_skipping_env, script)
    async with worker:
        await wait_for(handle, "deliver")
        await script.started.wait()
        await asyncio.sleep(0.3)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert 1 not in script.delivered
    assert len(script.delivered) < 6
    assert script.commits == 1
    assert script.completions == [(False, "crm_webhook")]
    assert script.reports[-1].status == "cancelled"


async def test_long_runs_continue_as_new_and_keep_exact_counts(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = Script(plan=webhook_plan(), chunks=7)
    tuning = TUNING.model_copy(update={"chunks_per_execution": 2})
    worker, handle = await start(time_skipping_env, script, tuning)
    first_run = handle.first_execution_run_id or handle.result_run_id
    async with worker:
        report = await handle.result()
        description = await handle.describe()
    assert sorted(script.delivered) == list(range(7))
    assert report.counts.chunks_done == 7
    assert report.counts.sent == 7 * ROWS_PER_CHUNK
    assert description.run_id != first_run
    # The run keeps one identity across executions: ledger and state refer to it.
    assert report.run_id == first_run


async def test_dry_run_sends_nothing(time_skipping_env: WorkflowEnvironment) -> None:
    script = Script(plan=webhook_plan(), chunks=3)
    worker, handle = await start(time_skipping_env, script, dry_run=True)
    async with worker:
        report = await handle.result()
    assert report.status == "dry_run"
    assert report.counts.to_send == 3 * ROWS_PER_CHUNK
    assert script.delivered == [] and script.commits == 0


async def test_a_run_whose_inputs_did_not_change_reuses_the_last_plan_and_sends_nothing(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    last = QuietPlan(
        planned_by="run-before",
        invalid={"invalid_email:email": 2},
        excluded={"no_consent:email_marketing": 3},
        eligible=30,
    )
    script = Script(plan=webhook_plan(), quiet=last)
    worker, handle = await start(time_skipping_env, script)
    async with worker:
        report = await handle.result()
    assert script.steps == ["fetch"]
    assert script.delivered == []
    assert report.status == "succeeded"
    counts = report.counts
    assert (counts.snapshot, counts.eligible, counts.unchanged, counts.to_send) == (35, 30, 30, 0)
    assert (counts.invalid, counts.excluded) == (last.invalid, last.excluded)
    assert counts.unchanged_since == "run-before"
    # Committed like any run that sent nothing, so a file export still completes its run.
    assert script.completions == [(True, "crm_webhook")]


async def test_a_run_that_plans_hands_diff_and_commit_its_fingerprint_and_counts(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Diff keeps a plan that sends nothing, commit one whose run delivered all of it: both
    need what fetch hashed, across continue-as-new too (one chunk per execution here)."""
    script = Script(plan=webhook_plan(), chunks=2)
    tuning = TUNING.model_copy(update={"chunks_per_execution": 1})
    worker, handle = await start(time_skipping_env, script, tuning=tuning)
    async with worker:
        await handle.result()
    assert script.steps == ["fetch", "validate", "consent", "diff"]
    (request,) = script.plan_inputs
    assert request.fingerprint == "inputs-v1"
    assert request.counts is not None
    assert (request.counts.invalid, request.counts.eligible) == ({"invalid_email:email": 2}, 20)
    (committed,) = script.commit_inputs
    assert committed.fingerprint == "inputs-v1" and committed.complete
    assert committed.counts is not None
    assert (committed.counts.sent, committed.counts.to_send) == (20, 20)
