"""fetch: run the audience query and materialise the run's snapshot in the warehouse.

One pass over the audience hashes each row's raw values (`_raw`) and matches it against the
sync's prepared table (see `prepared`) into a temporary table for the length of the step:
new rows keep their raw values to be prepared, rows the table already holds keep only their
identity, and prepared rows no audience row matched are marked to be forgotten. The
prepared table then holds the run's snapshot. The run's own tables stay small:
`snap_<run>` records the snapshot's columns (no rows) and `twins_<run>` the extra copies of
rows the audience returned more than once.
"""

from __future__ import annotations

from switchyard.catalog.models import SyncPlan
from switchyard.errors import AudienceQueryError, ContractMismatchError
from switchyard.pipeline import prepared, quiet
from switchyard.pipeline.expressions import quote
from switchyard.pipeline.prepared import SUPPRESSION_COLUMNS
from switchyard.pipeline.state import ensure_schema, more_working_memory, run_table
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


def snapshot_audience(
    session: Session, run: RunRef, plan: SyncPlan, *, full_resync: bool = False
) -> SnapshotResult:
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
    snap, twins = run_table(run, "snap"), run_table(run, "twins")
    audience = f"switchyard_audience_{run.tag}"  # temporary: this session only
    raw = ", ".join(f"q.{quote(c)}" for c in columns)
    _create(session, plan, f"TABLE {snap}", f"SELECT {raw} FROM ({sql}) AS q LIMIT 0")
    prep = prepared.prepared_for(session, run, plan)
    # One snapshot per sync at a time touches its prepared table: a retried fetch attempt
    # may still be running on another worker.
    with session.exclusive(f"switchyard.prepared.{run.sync}"):
        more_working_memory(session)
        prepared.ensure(session, run, prep)
        # Each audience row, marked `_new` when the prepared table lacks it (only new rows
        # keep their raw values: the others are prepared already), and each prepared row
        # no audience row matched, marked `_gone`: one join finds what to prepare and what
        # to forget.
        kept = ", ".join(
            [
                "coalesce(a.profile_id, p.profile_id) AS profile_id",
                "coalesce(a._raw, p._raw) AS _raw",
                "p._raw IS NULL AS _new",
                "a._raw IS NULL AS _gone",
                *(
                    f"CASE WHEN p._raw IS NULL THEN a.{quote(c)} END AS {quote(c)}"
                    for c in columns
                    if c != "profile_id"
                ),
            ]
        )
        _create(
            session,
            plan,
            f"TEMPORARY TABLE {audience}",
            f"""SELECT {kept}
            FROM (SELECT {raw}, {prepared.raw_hash(session, columns)} AS _raw
                  FROM ({sql}) AS q) AS a
            FULL JOIN {prep.table} AS p ON p.profile_id = a.profile_id AND p._raw = a._raw""",
        )
        if session.dialect.name == "postgres":
            # Temporary tables get no automatic statistics; joins with it need them.
            session.execute(f"ANALYZE {audience}")
        refreshed = prepared.refresh(session, prep, audience, twins)
        if refreshed.changed:
            # In the same transaction: a plan kept from before no longer describes the rows.
            quiet.forget(session, run.sync)
        session.execute(f"DROP TABLE {audience}")
    fingerprint = quiet.fingerprint(session, run, plan, prep.table)
    found = None if full_resync else quiet.recall(session, run, fingerprint)
    return SnapshotResult(rows=refreshed.rows, fingerprint=fingerprint, quiet=found)


def _create(session: Session, plan: SyncPlan, kind_and_name: str, select: str) -> None:
    session.execute(f"DROP TABLE IF EXISTS {kind_and_name.split()[-1]}")
    try:
        session.execute(f"CREATE {kind_and_name} AS {select}")
    except WarehouseError as error:
        raise AudienceQueryError(
            f"audience {plan.audience.name!r} v{plan.audience.version} failed in the "
            f"warehouse: {error}"
        ) from error
