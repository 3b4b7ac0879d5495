"""The contract's sent fields as SQL: their working-table columns and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from switchyard.catalog.models import FieldMapping, SyncPlan
from switchyard.pipeline.expressions import is_valid, problem_label
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


def invalid_reason(session: Session, plan: SyncPlan, columns: list[Column]) -> str:
    """Why a row of normalised values `n` is invalid on its own, or NULL."""
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


def kept_value(session: Session, column: Column) -> str:
    """The field's value if it passes its check; optional fields that fail become NULL."""
    ref, mapping = f"n.{column.name}", column.mapping
    if mapping.required:
        return ref
    check = is_valid(session.dialect, ref, mapping.type, mapping.max_length)
    return f"CASE WHEN {ref} IS NOT NULL AND ({check}) THEN {ref} END"
