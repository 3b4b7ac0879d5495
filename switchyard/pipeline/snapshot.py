"""fetch: run the audience query and materialise the run's snapshot in the warehouse."""

from __future__ import annotations

from switchyard.catalog.models import SyncPlan
from switchyard.errors import AudienceQueryError, ContractMismatchError
from switchyard.pipeline.expressions import quote
from switchyard.pipeline.state import ensure_schema, run_table
from switchyard.runs import RunRef, SnapshotResult
from switchyard.warehouse.base import Session, WarehouseError

# Kept in every snapshot when the audience returns them, so suppression lists keyed by
# email or phone apply even to contracts that don't send those fields.
SUPPRESSION_COLUMNS = ("email", "phone")


def audience_sql(plan: SyncPlan) -> str:
    return plan.audience.sql.strip().rstrip(";").strip()


def snapshot_columns(plan: SyncPlan, available: list[str]) -> list[str]:
    """The columns the snapshot keeps; a clear error if the audience lacks one."""
    needed = {"profile_id", *plan.contract.source_columns}
    missing = sorted(needed - set(available))
    if missing:
        raise ContractMismatchError(
            f"contract v{plan.contract.version} of destination {plan.destination.name!r} "
            f"maps column(s) {', '.join(missing)} that audience {plan.audience.name!r} "
            f"v{plan.audience.version} does not return (it returns: {', '.join(available)}); "
            "select them in the audience SQL or fix the mapping's `source`"
        )
    extra = {c for c in SUPPRESSION_COLUMNS if c in available}
    return sorted(needed | extra)


def snapshot_audience(session: Session, run: RunRef, plan: SyncPlan) -> SnapshotResult:
    ensure_schema(session)
    sql = audience_sql(plan)
    try:
        available = session.columns(sql)
    except WarehouseError as error:
        raise AudienceQueryError(
            f"audience {plan.audience.name!r} v{plan.audience.version} failed in the "
            f"warehouse: {error}"
        ) from error
    columns = ", ".join(f"q.{quote(c)}" for c in snapshot_columns(plan, available))
    table = run_table(run, "snap")
    session.execute(f"DROP TABLE IF EXISTS {table}")
    try:
        session.execute(f"CREATE TABLE {table} AS SELECT {columns} FROM ({sql}) AS q")
    except WarehouseError as error:
        raise AudienceQueryError(
            f"audience {plan.audience.name!r} v{plan.audience.version} failed in the "
            f"warehouse: {error}"
        ) from error
    row = session.fetchone(f"SELECT count(*) FROM {table}")
    return SnapshotResult(rows=int(row[0]) if row else 0)
