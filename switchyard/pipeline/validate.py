"""validate: check every snapshot row against the contract, in SQL.

A row is invalid (quarantined, with a reason) when its identifier is missing or malformed,
when a required field is missing or malformed, or when another row has the same key.
An optional field that fails its check is dropped from the row, not sent, and counted.
Gates then stop the run before anything is sent if too much is wrong.

A row's own checks were made when it was prepared (see `prepared`); duplicate keys depend
on the other rows, so they are found here, each run: grouping finds the few keys that
repeat, and only their rows are ranked. Rows held back, here and by consent, go to the
run's `held_<run>` table (stage, profile_id, _raw, key, reason, copies, extra), small next
to the snapshot.
"""

from __future__ import annotations

from switchyard.catalog.models import SyncPlan
from switchyard.errors import GateFailedError
from switchyard.pipeline import prepared
from switchyard.pipeline.expressions import problem_label, quote
from switchyard.pipeline.fields import Column, sent_columns
from switchyard.pipeline.state import planning, run_table
from switchyard.runs import RunRef, ValidationResult
from switchyard.warehouse.base import Session


def validate_snapshot(session: Session, run: RunRef, plan: SyncPlan) -> ValidationResult:
    held, twins = run_table(run, "held"), run_table(run, "twins")
    prep = prepared.prepared_for(session, run, plan).table
    with planning(session):
        session.execute(f"DROP TABLE IF EXISTS {held}")
        session.execute(
            f"""CREATE TABLE {held} AS
            WITH repeated AS (
                SELECT _key FROM {prep} WHERE _reason IS NULL GROUP BY _key HAVING count(*) > 1),
            ranked AS (
                SELECT p.profile_id, p._raw, p._key, row_number() OVER (
                    PARTITION BY p._key ORDER BY p.profile_id, p._raw) AS n
                FROM {prep} AS p JOIN repeated AS r ON r._key = p._key
                WHERE p._reason IS NULL)
            SELECT CAST('invalid' AS VARCHAR) AS stage, profile_id, _raw, _key AS key,
                   _reason AS reason, 1 AS copies, FALSE AS extra
            FROM {prep} WHERE _reason IS NOT NULL
            UNION ALL
            SELECT 'invalid', profile_id, _raw, _key, 'duplicate_key', 1, FALSE
            FROM ranked WHERE n > 1
            UNION ALL
            SELECT 'invalid', t.profile_id, t._raw, p._key, coalesce(p._reason, 'duplicate_key'),
                   t.extra, TRUE
            FROM {twins} AS t JOIN {prep} AS p ON p.profile_id = t.profile_id AND p._raw = t._raw"""
        )
        record_outcomes(session, run, "invalid")
        invalid = held_by_reason(session, run, "invalid")
        result = ValidationResult(
            valid=snapshot_rows(session, run, prep) - sum(invalid.values()),
            invalid=invalid,
            fields_dropped=_dropped_fields(session, run, prep, sent_columns(plan)),
        )
    _check_gates(plan, result)
    return result


def record_outcomes(session: Session, run: RunRef, stage: str) -> None:
    """Keep why each row was held back, per run; idempotent so a retried step is safe.

    Extra copies of an identical row share one outcome row."""
    session.execute(
        "DELETE FROM switchyard.row_outcomes WHERE run_id = ? AND stage = ?", (run.run_id, stage)
    )
    session.execute(
        f"""INSERT INTO switchyard.row_outcomes
        SELECT ?, ?, stage, key, profile_id, reason FROM {run_table(run, "held")}
        WHERE stage = ?""",
        (run.run_id, run.sync, stage),
    )


def held_by_reason(session: Session, run: RunRef, stage: str) -> dict[str, int]:
    rows = session.fetchall(
        f"SELECT reason, sum(copies) FROM {run_table(run, 'held')} WHERE stage = ? GROUP BY 1",
        (stage,),
    )
    return {str(reason): int(n) for reason, n in rows}


def snapshot_rows(session: Session, run: RunRef, prep: str) -> int:
    """The rows of the run's snapshot: the distinct ones prepared, and extra copies."""
    row = session.fetchone(
        f"""SELECT (SELECT count(*) FROM {prep})
                 + (SELECT coalesce(sum(extra), 0) FROM {run_table(run, "twins")})"""
    )
    return int(row[0]) if row else 0


def held_rows(session: Session, run: RunRef) -> int:
    row = session.fetchone(f"SELECT coalesce(sum(copies), 0) FROM {run_table(run, 'held')}")
    return int(row[0]) if row else 0


def eligible_rows(run: RunRef, prep: str) -> str:
    """The prepared rows no step has held back, as a derived table.

    An anti-join with the held rows filtered first: a correlated NOT EXISTS carrying the
    filter costs DuckDB several times as much over a million rows."""
    return f"""(SELECT p.* FROM {prep} AS p
        LEFT JOIN (SELECT profile_id, _raw FROM {run_table(run, "held")} WHERE NOT extra) AS h
          ON h.profile_id = p.profile_id AND h._raw = p._raw
        WHERE p._reason IS NULL AND h.profile_id IS NULL)"""


def _dropped_fields(
    session: Session, run: RunRef, prep: str, columns: list[Column]
) -> dict[str, int]:
    optional = [c for c in columns if not c.mapping.required]
    if not optional:
        return {}
    sums = ", ".join(f"sum(CASE WHEN p.d{c.index} THEN 1 ELSE 0 END)" for c in optional)
    row = session.fetchone(f"SELECT {sums} FROM {eligible_rows(run, prep)} AS p")
    counts: dict[str, int] = {}
    for column, value in zip(optional, row or (), strict=False):
        if value:
            label = problem_label(column.mapping.type, column.mapping.max_length)
            counts[f"{label}:{column.mapping.name}"] = int(value)
    return counts


def _check_gates(plan: SyncPlan, result: ValidationResult) -> None:
    gates = plan.contract.gates
    total = result.valid + sum(result.invalid.values())
    if total == 0:
        return
    invalid_ratio = sum(result.invalid.values()) / total
    if invalid_ratio > gates.max_invalid_ratio:
        worst = ", ".join(
            f"{r}={n}" for r, n in sorted(result.invalid.items(), key=lambda x: -x[1])[:3]
        )
        raise GateFailedError(
            f"{invalid_ratio:.1%} of rows are invalid, above the contract's gate of "
            f"{gates.max_invalid_ratio:.0%} (top reasons: {worst}); nothing was sent. "
            "Fix the source data or the mapping, or raise gates.max_invalid_ratio"
        )
    missing = sum(n for r, n in result.invalid.items() if r.startswith("missing_identifier"))
    coverage = 1 - missing / total
    if coverage < gates.min_identifier_coverage:
        raise GateFailedError(
            f"identifier coverage {coverage:.1%} is below the contract's gate of "
            f"{gates.min_identifier_coverage:.0%}; nothing was sent"
        )


__all__ = [
    "Column",
    "eligible_rows",
    "held_by_reason",
    "held_rows",
    "quote",
    "record_outcomes",
    "sent_columns",
    "snapshot_rows",
    "validate_snapshot",
]
