"""fetch: run the audience query and materialise the run's snapshot in the warehouse.

The snapshot `snap_<run>` keeps, for every row the audience returned, its profile_id and a
hash of its raw values (`_raw`); only rows the sync's prepared table has not seen (`_new`)
keep their raw values too, and fetch prepares them at once (see `prepared`). Later steps
read each row's normalised values from the prepared table, so a run with few changes
normalises few rows and writes no wide table.
"""

from __future__ import annotations

from switchyard.catalog.models import SyncPlan
from switchyard.errors import AudienceQueryError, ContractMismatchError
from switchyard.pipeline import prepared
from switchyard.pipeline.expressions import quote
from switchyard.pipeline.prepared import SUPPRESSION_COLUMNS
from switchyard.pipeline.state import ensure_schema, run_table
from switchyard.runs import RunRef, SnapshotResult
from switchyard.warehouse.base import Session, WarehouseError


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
    columns = snapshot_columns(plan, available)
    table = run_table(run, "snap")
    raw = ", ".join(f"q.{quote(c)}" for c in columns)
    # An empty probe gives the columns' types, part of the prepared table's fingerprint.
    _create(session, plan, table, f"SELECT {raw} FROM ({sql}) AS q LIMIT 0")
    prep = prepared.prepared_for(session, run, plan)
    kept = ", ".join(
        f"CASE WHEN p._raw IS NULL THEN q.{quote(c)} END AS {quote(c)}"
        for c in columns
        if c != "profile_id"
    )
    # One snapshot per sync at a time touches its prepared table: a retried fetch attempt
    # may still be running on another worker.
    with session.exclusive(f"switchyard.prepared.{run.sync}"):
        prepared.ensure(session, run, prep)
        _create(
            session,
            plan,
            table,
            f"""SELECT row_number() OVER () AS _row, q.profile_id, q._raw,
                p._raw IS NULL AS _new, {kept}
            FROM (SELECT {raw}, {prepared.raw_hash(session, columns)} AS _raw
                  FROM ({sql}) AS q) AS q
            LEFT JOIN {prep.table} AS p ON p.profile_id = q.profile_id AND p._raw = q._raw""",
        )
        prepared.refresh(session, run, prep)
    row = session.fetchone(f"SELECT count(*) FROM {table}")
    return SnapshotResult(rows=int(row[0]) if row else 0)


def _create(session: Session, plan: SyncPlan, table: str, select: str) -> None:
    session.execute(f"DROP TABLE IF EXISTS {table}")
    try:
        session.execute(f"CREATE TABLE {table} AS {select}")
    except WarehouseError as error:
        raise AudienceQueryError(
            f"audience {plan.audience.name!r} v{plan.audience.version} failed in the "
            f"warehouse: {error}"
        ) from error
