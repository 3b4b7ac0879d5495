"""The contract's sent fields as SQL: their working-table columns and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from switchyard.catalog.models import FieldMapping, SyncPlan, TraitType
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
    """The sent fields, each text field checked against the destination's longest value too:
    a value it would refuse is dropped (or its row quarantined) here, with a reason, instead
    of being rejected downstream and resent every run."""
    longest = plan.destination.spec.max_field_chars
    return [Column(i, _bounded(m, longest)) for i, m in enumerate(plan.contract.sent_fields)]


def _bounded(mapping: FieldMapping, longest: int | None) -> FieldMapping:
    if longest is None or mapping.type is not TraitType.STRING:
        return mapping
    if mapping.max_length is not None and mapping.max_length <= longest:
        return mapping
    return mapping.model_copy(update={"max_length": longest})


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
