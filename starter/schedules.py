"""Cron schedules from the catalog: one Temporal schedule per sync that declares one.

Scheduled runs resolve their plan from the worker's catalog when they start, so a schedule
never pins an old contract. Overlaps are skipped: a sync never runs twice at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from starter.runs import tuning_from, workflow_id
from switchyard.catalog.models import Catalog, Sync
from switchyard.runs import AudienceSyncInput
from switchyard.settings import Settings
from workflows import search_attributes
from workflows.audience_sync import AudienceSyncWorkflow

SCHEDULE_PREFIX = "switchyard-schedule-"


@dataclass(frozen=True)
class Applied:
    sync: str
    action: str  # created | updated | deleted


def schedule_id(sync: str) -> str:
    return f"{SCHEDULE_PREFIX}{sync}"


def build_schedule(settings: Settings, catalog: Catalog, sync: Sync) -> Schedule:
    assert sync.schedule is not None
    plan = catalog.plan_for(sync.name)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AudienceSyncWorkflow.run,
            AudienceSyncInput(sync=sync.name, tuning=tuning_from(settings)),
            id=workflow_id(sync.name),
            task_queue=settings.temporal.task_queue,
            typed_search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attributes.SYNC, sync.name),
                    SearchAttributePair(search_attributes.AUDIENCE, plan.audience.name),
                    SearchAttributePair(search_attributes.DESTINATION, plan.destination.name),
                ]
            ),
        ),
        spec=ScheduleSpec(cron_expressions=[sync.schedule]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            paused=sync.paused, note="paused in the catalog" if sync.paused else ""
        ),
    )


async def apply_schedules(client: Client, settings: Settings, catalog: Catalog) -> list[Applied]:
    """Make Temporal's schedules match the catalog: create, update, and delete leftovers."""
    wanted = {s.name: s for s in catalog.syncs.values() if s.schedule}
    existing = set()
    async for listed in await client.list_schedules():
        if listed.id.startswith(SCHEDULE_PREFIX):
            existing.add(listed.id.removeprefix(SCHEDULE_PREFIX))
    applied: list[Applied] = []
    for name, sync in sorted(wanted.items()):
        schedule = build_schedule(settings, catalog, sync)
        try:
            await client.create_schedule(schedule_id(name), schedule)
            applied.append(Applied(name, "created"))
        except ScheduleAlreadyRunningError:
            handle = client.get_schedule_handle(schedule_id(name))

            def replace(_: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=new)

            await handle.update(replace)
            applied.append(Applied(name, "updated"))
    for name in sorted(existing - wanted.keys()):
        await client.get_schedule_handle(schedule_id(name)).delete()
        applied.append(Applied(name, "deleted"))
    return applied
