"""Starting sync runs and following them: the operator's side of a run."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import ApplicationError, CancelledError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from switchyard.catalog.loader import load_catalog
from switchyard.runs import AudienceSyncInput, Counts, DeliveryTuning, Progress, RunReport
from switchyard.settings import Settings
from workflows import search_attributes
from workflows.audience_sync import AudienceSyncWorkflow

SyncHandle = WorkflowHandle[AudienceSyncWorkflow, RunReport]


class RunFailed(Exception):
    def __init__(self, message: str, report: RunReport | None = None) -> None:
        super().__init__(message)
        self.report = report


def workflow_id(sync: str) -> str:
    """One id per sync: Temporal then refuses a second concurrent run of the same sync."""
    return f"switchyard-sync-{sync}"


async def latest_run(client: Client, sync: str, running_only: bool = False) -> SyncHandle | None:
    """The newest run of a sync, manual or scheduled (schedules suffix their workflow ids)."""
    query = f"{search_attributes.SYNC.name} = '{sync}'"
    if running_only:
        query += " AND ExecutionStatus = 'Running'"
    async for execution in client.list_workflows(query, limit=1):
        return client.get_workflow_handle_for(
            AudienceSyncWorkflow.run, execution.id, run_id=execution.run_id
        )
    return None


def tuning_from(settings: Settings) -> DeliveryTuning:
    delivery = settings.delivery
    return DeliveryTuning(
        chunk_size=delivery.chunk_size,
        window=delivery.window,
        heartbeat_timeout=timedelta(seconds=delivery.heartbeat_timeout_seconds),
        chunks_per_execution=delivery.chunks_per_execution,
    )


def ui_link(settings: Settings, handle: SyncHandle) -> str:
    run = handle.result_run_id or handle.run_id or ""
    return (
        f"{settings.temporal.ui_url}/namespaces/{settings.temporal.namespace}"
        f"/workflows/{handle.id}/{run}/history"
    )


async def start_sync(
    client: Client,
    settings: Settings,
    sync: str,
    *,
    full_resync: bool = False,
    dry_run: bool = False,
) -> SyncHandle:
    plan = load_catalog(settings.catalog_dir).plan_for(sync)
    # Scheduled runs carry a suffixed workflow id, so the id alone can't refuse overlap.
    if await latest_run(client, sync, running_only=True) is not None:
        raise RunFailed(_already_running(sync))
    try:
        return await client.start_workflow(
            AudienceSyncWorkflow.run,
            AudienceSyncInput(
                sync=sync,
                plan=plan,
                full_resync=full_resync,
                dry_run=dry_run,
                tuning=tuning_from(settings),
            ),
            id=workflow_id(sync),
            task_queue=settings.temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attributes.SYNC, sync),
                    SearchAttributePair(search_attributes.AUDIENCE, plan.audience.name),
                    SearchAttributePair(search_attributes.DESTINATION, plan.destination.name),
                    SearchAttributePair(search_attributes.PHASE, "starting"),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        raise RunFailed(_already_running(sync)) from None


def _already_running(sync: str) -> str:
    return (
        f"sync {sync!r} already has a run in progress; follow it with "
        f"`switchyard sync status {sync}` or cancel it with `switchyard sync cancel {sync}`"
    )


async def wait_for_result(
    handle: SyncHandle, console: Console | None = None, interval: float = 0.5
) -> RunReport:
    """Wait for the run, showing its live progress when a console is given."""
    result = asyncio.ensure_future(handle.result())
    last = ""
    while not result.done():
        await asyncio.wait([result], timeout=interval)
        if console is None or result.done():
            continue
        try:
            progress = await handle.query(AudienceSyncWorkflow.progress)
        except RPCError:
            continue
        line = describe_progress(progress)
        if line != last:
            console.print(line, highlight=False)
            last = line
    try:
        return result.result()
    except WorkflowFailureError as failure:
        cause = failure.cause
        if isinstance(cause, CancelledError):
            raise RunFailed("the run was cancelled; acknowledged records were committed") from None
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        report = None
        if isinstance(cause, ApplicationError) and cause.details:
            detail = cause.details[0]
            report = RunReport.model_validate(detail) if isinstance(detail, dict) else None
        raise RunFailed(message, report) from None


def describe_progress(progress: Progress) -> str:
    counts = progress.counts
    paused = " (paused)" if progress.paused else ""
    if progress.phase == "deliver" and counts.to_send:
        share = counts.sent / counts.to_send
        return (
            f"  deliver{paused}: {counts.sent:,}/{counts.to_send:,} records ({share:.0%}), "
            f"chunk {counts.chunks_done}/{counts.chunks}"
        )
    return f"  {progress.phase}{paused}"


def summary_table(report: RunReport, link: str | None = None) -> Table:
    counts: Counts = report.counts
    table = Table(
        title=f"{report.sync}: {report.status}"
        + (" (dry run: nothing sent)" if report.dry_run else ""),
        show_header=False,
        title_justify="left",
    )
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows: list[tuple[str, str]] = [
        ("audience", f"{report.audience} v{report.audience_version}"),
        ("destination", f"{report.destination} (contract v{report.contract_version})"),
        ("profiles in audience", f"{counts.snapshot:,}"),
        ("added", f"{counts.added:,}"),
        ("changed", f"{counts.changed:,}"),
        ("removed", f"{counts.removed:,}"),
        ("unchanged (not sent)", f"{counts.unchanged:,}"),
        *(
            [("plan", f"reused from run {counts.unchanged_since}: no input changed")]
            if counts.unchanged_since
            else []
        ),
        ("excluded by consent", _breakdown(counts.excluded)),
        ("invalid", _breakdown(counts.invalid)),
        ("fields dropped", _breakdown(counts.fields_dropped)),
        ("rejected by destination", _breakdown(counts.rejected)),
        ("sent", f"{counts.sent:,} in {counts.batches:,} batches"),
        ("duration", f"{report.duration.total_seconds():.1f} s"),
    ]
    if report.error:
        rows.append(("error", report.error))
    if link:
        rows.append(("Temporal UI", link))
    for label, value in rows:
        table.add_row(label, value)
    return table


def _breakdown(by_reason: dict[str, int]) -> str:
    total = sum(by_reason.values())
    if not total:
        return "0"
    parts = ", ".join(f"{reason} {n:,}" for reason, n in sorted(by_reason.items()))
    return f"{total:,} ({parts})"
