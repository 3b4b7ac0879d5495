"""Drive every pipeline step in order, as the workflow would, without Temporal."""

from __future__ import annotations

from switchyard.catalog.models import SyncPlan
from switchyard.delivery.engine import deliver_chunk
from switchyard.destinations.base import DestinationClient
from switchyard.pipeline import commit, consent, diff, snapshot, validate
from switchyard.runs import ChangePlan, ConsentResult, PlanInput, RunRef, ValidationResult
from switchyard.warehouse.base import Warehouse


def plan_run(
    warehouse: Warehouse,
    plan: SyncPlan,
    run_id: str,
    full_resync: bool = False,
    chunk_size: int = 4,
) -> tuple[RunRef, ValidationResult, ConsentResult, ChangePlan]:
    """Every step before delivery, leaving the run's `chg` table ready for `deliver_chunk`."""
    run = RunRef(run_id=run_id, sync=plan.sync.name)
    with warehouse.session() as s:
        snapshot.snapshot_audience(s, run, plan)
        checked = validate.validate_snapshot(s, run, plan)
        allowed = consent.filter_consent(s, run, plan)
        changes = diff.plan_changes(
            s, PlanInput(run=run, plan=plan, full_resync=full_resync, chunk_size=chunk_size)
        )
    return run, checked, allowed, changes


async def run_once(
    warehouse: Warehouse,
    plan: SyncPlan,
    client: DestinationClient,
    run_id: str,
    full_resync: bool = False,
    chunk_size: int = 4,
) -> tuple[ValidationResult, ConsentResult, ChangePlan]:
    run, checked, allowed, changes = plan_run(warehouse, plan, run_id, full_resync, chunk_size)
    for chunk in range(changes.chunks):
        await deliver_chunk(warehouse, client, run, chunk)
    with warehouse.session() as s:
        commit.commit_delivered(s, run)
    return checked, allowed, changes
