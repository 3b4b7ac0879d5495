"""validate: check every snapshot row against the contract, in SQL.

A row is invalid (quarantined, with a reason) when its identifier is missing or malformed,
when a required field is missing or malformed, or when another row has the same key.
An optional field that fails its check is dropped from the row, not sent, and counted.
Gates then stop the run before anything is sent if too much is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchyard.catalog.models import FieldMapping, SyncPlan, TraitType
from switchyard.errors import GateFailedError
from switchyard.pipeline.expressions import is_valid, normalised, problem_label, quote
from switchyard.pipeline.snapshot import SUPPRESSION_COLUMNS
from switchyard.pipeline.state import run_table
from switchyard.runs import RunRef, ValidationResult
from switchyard.warehouse.base import Session


@dataclass(frozen=True)
class Column:
    """One sent field in the working tables: `f{index}` holds its normalised value."""

    index: int
    mapping: FieldMapping

    @property
    def name(self) -> str:
        return f"f{self.index}"


def sent_columns(plan: SyncPlan) -> list[Column]:
    return [Column(i, m) for i, m in enumerate(plan.contract.sent_fields)]


def _invalid_reason(session: Session, plan: SyncPlan, columns: list[Column]) -> str:
    dialect = session.dialect
    ident = plan.contract.identifier
    cases = [
        f"WHEN n._key IS NULL THEN 'missing_identifier:{ident.name}'",
        f"WHEN NOT ({is_valid(dialect, 'n._key', ident.type, None)}) "
        f"THEN '{problem_label(ident.type, None)}:{ident.name}'",
    ]
    for column in columns:
        if not column.mapping.required:
            continue
        ref, mapping = f"n.{column.name}", column.mapping
        cases.append(f"WHEN {ref} IS NULL THEN 'missing_required:{mapping.name}'")
        check = is_valid(dialect, ref, mapping.type, mapping.max_length)
        label = problem_label(mapping.type, mapping.max_length)
        cases.append(f"WHEN NOT ({check}) THEN '{label}:{mapping.name}'")
    return "CASE " + " ".join(cases) + " END"


def _kept_value(session: Session, column: Column) -> str:
    """The field's value if it passes its check; optional fields that fail become NULL."""
    ref, mapping = f"n.{column.name}", column.mapping
    if mapping.required:
        return ref
    check = is_valid(session.dialect, ref, mapping.type, mapping.max_length)
    return f"CASE WHEN {ref} IS NOT NULL AND ({check}) THEN {ref} END"


def validate_snapshot(session: Session, run: RunRef, plan: SyncPlan) -> ValidationResult:
    dialect, contract = session.dialect, plan.contract
    snap, table = run_table(run, "snap"), run_table(run, "val")
    columns = sent_columns(plan)
    snap_columns = set(session.columns(f"SELECT * FROM {snap}"))
    region = contract.default_phone_region

    normalise = [
        "profile_id",
        f"{normalised(dialect, contract.identifier.source, contract.identifier.type, region)}"
        " AS _key",
        *(
            f"{normalised(dialect, c.mapping.source, c.mapping.type, region)} AS {c.name}"
            for c in columns
        ),
        *(
            f"{normalised(dialect, name, TraitType(name), region)} AS _{name}"
            if name in snap_columns
            else f"CAST(NULL AS VARCHAR) AS _{name}"
            for name in SUPPRESSION_COLUMNS
        ),
    ]
    checked = [
        "n.profile_id",
        "n._key",
        *(f"{_kept_value(session, c)} AS {c.name}" for c in columns),
        *(f"n.{c.name} AS raw_{c.name}" for c in columns if not c.mapping.required),
        *(f"n._{name}" for name in SUPPRESSION_COLUMNS),
        f"{_invalid_reason(session, plan, columns)} AS _reason",
    ]
    session.execute(f"DROP TABLE IF EXISTS {table}")
    # MATERIALIZED: normalise each row once. Postgres would otherwise inline `n` and evaluate
    # a normalisation (several regexes for a phone) again at every reference to it.
    session.execute(
        f"""CREATE TABLE {table} AS
        WITH n AS MATERIALIZED (SELECT {", ".join(normalise)} FROM {snap}),
        c AS (SELECT {", ".join(checked)} FROM n)
        SELECT c.*,
          CASE WHEN _reason IS NOT NULL THEN _reason
               WHEN row_number() OVER (
                   PARTITION BY _key, _reason IS NULL ORDER BY profile_id) > 1
               THEN 'duplicate_key' END AS _invalid
        FROM c"""
    )
    record_outcomes(session, run, "invalid", table, "_invalid")
    result = ValidationResult(
        valid=_count(session, f"SELECT count(*) FROM {table} WHERE _invalid IS NULL"),
        invalid=_by_reason(session, table, "_invalid"),
        fields_dropped=_dropped_fields(session, table, columns),
    )
    _check_gates(plan, result)
    return result


def record_outcomes(session: Session, run: RunRef, stage: str, table: str, column: str) -> None:
    """Keep why each row was held back, per run; idempotent so a retried step is safe."""
    session.execute(
        "DELETE FROM switchyard.row_outcomes WHERE run_id = ? AND stage = ?", (run.run_id, stage)
    )
    session.execute(
        f"""INSERT INTO switchyard.row_outcomes
        SELECT ?, ?, ?, _key, profile_id, {column}
        FROM {table} WHERE {column} IS NOT NULL""",
        (run.run_id, run.sync, stage),
    )


def _dropped_fields(session: Session, table: str, columns: list[Column]) -> dict[str, int]:
    optional = [c for c in columns if not c.mapping.required]
    if not optional:
        return {}
    sums = ", ".join(
        f"sum(CASE WHEN raw_{c.name} IS NOT NULL AND {c.name} IS NULL THEN 1 ELSE 0 END)"
        for c in optional
    )
    row = session.fetchone(f"SELECT {sums} FROM {table} WHERE _invalid IS NULL")
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


def _count(session: Session, sql: str) -> int:
    row = session.fetchone(sql)
    return int(row[0]) if row else 0


def _by_reason(session: Session, table: str, column: str) -> dict[str, int]:
    rows = session.fetchall(
        f"SELECT {column}, count(*) FROM {table} WHERE {column} IS NOT NULL GROUP BY 1"
    )
    return {str(reason): int(n) for reason, n in rows}


__all__ = ["Column", "quote", "record_outcomes", "sent_columns", "validate_snapshot"]
