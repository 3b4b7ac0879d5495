"""Switchyard's own path: a real run on the dev server, through a worker process.

The run is started and awaited exactly as the CLI does (`start_sync`, `wait_for_result`);
afterwards the workflow history (following continue-as-new) tells how long each step took,
so the report can separate planning (SQL in the warehouse) from delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError

from starter.runs import RunFailed, SyncHandle, start_sync, wait_for_result
from switchyard.runs import RunReport
from switchyard.settings import Settings
from workflows.audience_sync import AudienceSyncWorkflow

_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}
# The steps before the first record can leave.
PLAN_STEPS = (
    "check_destination",
    "snapshot_audience",
    "validate_snapshot",
    "filter_consent",
    "plan_changes",
)


@dataclass
class SyncMeasurement:
    # None when the run failed without a report (e.g. its commit step failed).
    report: RunReport | None
    # From start_sync to the result in hand: what an operator waits.
    wall_s: float
    # Per activity type: first scheduled → last closed, in seconds (chunks overlap).
    steps_s: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    # Per activity type: the last failure's message, for runs that failed or retried.
    failures: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def run_s(self) -> float:
        return self.report.duration.total_seconds() if self.report else self.wall_s

    @property
    def sent(self) -> int:
        return self.report.counts.sent if self.report else 0

    @property
    def records_per_s(self) -> float:
        return self.sent / self.run_s if self.run_s > 0 else 0.0

    @property
    def deliver_s(self) -> float | None:
        return self.steps_s.get("deliver_chunk")

    @property
    def plan_s(self) -> float:
        return sum(self.steps_s.get(step, 0.0) for step in PLAN_STEPS)

    def summary(self) -> dict[str, Any]:
        deliver = self.deliver_s
        report = self.report
        counts = report.counts if report else None
        return {
            "status": report.status if report else "failed",
            "error": self.error,
            "records_sent": self.sent,
            "snapshot": counts.snapshot if counts else None,
            "to_send": counts.to_send if counts else None,
            "added": counts.added if counts else None,
            "changed": counts.changed if counts else None,
            "unchanged": counts.unchanged if counts else None,
            "batches": counts.batches if counts else None,
            "chunks": counts.chunks if counts else None,
            "run_s": round(self.run_s, 3),
            "wall_s": round(self.wall_s, 3),
            "plan_s": round(self.plan_s, 3),
            "deliver_s": round(deliver, 3) if deliver is not None else None,
            "records_per_s": round(self.records_per_s, 1),
            "deliver_records_per_s": round(self.sent / deliver, 1) if deliver else None,
            "steps_s": {name: round(s, 3) for name, s in self.steps_s.items()},
            "attempts": self.attempts,
            "failures": self.failures,
            "started_at": report.started_at.isoformat() if report else None,
            "finished_at": report.finished_at.isoformat() if report else None,
        }


async def run_sync(
    client: Client,
    settings: Settings,
    sync: str,
    *,
    full_resync: bool = False,
    on_phase: Callable[[str], None] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> SyncMeasurement:
    """One run, measured; a failed run is measured too (its `error` says why)."""
    started = time.perf_counter()
    handle = await start_sync(client, settings, sync, full_resync=full_resync)
    watcher = asyncio.create_task(_watch(handle, on_phase, say))
    report: RunReport | None = None
    error: str | None = None
    try:
        report = await wait_for_result(handle)
    except RunFailed as failure:
        report, error = failure.report, str(failure)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    wall = time.perf_counter() - started
    first_run = handle.first_execution_run_id or handle.run_id
    history = await read_history(client, handle.id, first_run)
    if error is not None and history.failures:
        # "Activity task failed" alone says nothing; name the step and its own error.
        error += "; " + "; ".join(f"{k}: {v}" for k, v in history.failures.items())
    return SyncMeasurement(
        report=report,
        wall_s=wall,
        steps_s=history.steps_s,
        attempts=history.attempts,
        failures=history.failures,
        error=error,
    )


async def _watch(
    handle: SyncHandle, on_phase: Callable[[str], None] | None, say: Callable[[str], None]
) -> None:
    """Report phases and every tenth of delivery; once a second, so the worker barely notices
    (each query is a workflow task)."""
    phase, tenth = "", -1
    while True:
        await asyncio.sleep(1)
        try:
            progress = await handle.query(AudienceSyncWorkflow.progress)
        except RPCError:
            continue
        if progress.phase != phase:
            phase = progress.phase
            say(f"  phase {phase}")
            if on_phase is not None:
                on_phase(phase)
        counts = progress.counts
        if phase == "deliver" and counts.to_send:
            now = 10 * counts.sent // counts.to_send
            if now != tenth and now > 0:
                tenth = now
                say(f"  deliver {counts.sent:,}/{counts.to_send:,}")


@dataclass
class History:
    steps_s: dict[str, float]
    attempts: dict[str, int]
    failures: dict[str, str]


async def read_history(client: Client, workflow_id: str, run_id: str | None) -> History:
    """Per activity type, across every execution of the run (continue-as-new too): seconds
    from first scheduled to last closed, attempts, and the last failure message."""
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    attempts: dict[str, int] = {}
    failures: dict[str, str] = {}
    while run_id:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        run_id = None
        # Event ids restart in each execution.
        scheduled: dict[int, str] = {}
        async for event in handle.fetch_history_events():
            at = event.event_time.ToDatetime()
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[event.event_id] = name
                first.setdefault(name, at)
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                # Written once, for the attempt that closed the activity: its number counts
                # the retries before it.
                started = event.activity_task_started_event_attributes
                name = scheduled.get(started.scheduled_event_id, "?")
                attempts[name] = attempts.get(name, 0) + started.attempt
                if started.HasField("last_failure"):
                    failures[name] = _one_line(started.last_failure.message)
            elif kind in _CLOSED:
                closed = getattr(event, _CLOSED[kind])
                name = scheduled.get(closed.scheduled_event_id, "?")
                last[name] = max(last.get(name, at), at)
                if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
                    failures[name] = _one_line(closed.failure.message)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                attrs = event.workflow_execution_continued_as_new_event_attributes
                run_id = attrs.new_execution_run_id
    steps = {name: (last[name] - first[name]).total_seconds() for name in first if name in last}
    return History(steps, attempts, failures)


def _one_line(message: str, limit: int = 300) -> str:
    return " ".join(message.split())[:limit]
