"""SQL expressions that normalise and check values by trait type, per dialect.

Normalising in SQL keeps a million rows out of Python: emails are trimmed and lowercased,
phones become E.164 (`+` and digits) using the contract's default region for national
numbers, timestamps become ISO 8601 text.
"""

from __future__ import annotations

from switchyard.catalog.models import TraitType
from switchyard.warehouse.base import Dialect

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"

# Country calling code and whether national numbers start with a trunk "0".
_REGIONS: dict[str, tuple[str, bool]] = {
    "US": ("1", False),
    "CA": ("1", False),
    "GB": ("44", True),
    "DE": ("49", True),
    "FR": ("33", True),
    "ES": ("34", False),
    "IT": ("39", False),
    "NL": ("31", True),
    "AU": ("61", True),
    "BR": ("55", True),
    "IN": ("91", True),
    "JP": ("81", True),
}


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def phone_e164(expr: str, region: str) -> str:
    digits = f"regexp_replace({expr}, '[^0-9]', '', 'g')"
    international = (
        f"WHEN trim({expr}) LIKE '+%' THEN '+' || {digits} "
        f"WHEN {digits} LIKE '00%' THEN '+' || substr({digits}, 3) "
    )
    code, trunk_zero = _REGIONS.get(region, ("", False))
    national = ""
    if code == "1":
        national = (
            f"WHEN length({digits}) = 10 THEN '+1' || {digits} "
            f"WHEN length({digits}) = 11 AND {digits} LIKE '1%' THEN '+' || {digits} "
        )
    elif code and trunk_zero:
        national = f"WHEN {digits} LIKE '0%' THEN '+{code}' || substr({digits}, 2) "
    elif code:
        national = f"WHEN length({digits}) >= 6 THEN '+{code}' || {digits} "
    return f"(CASE WHEN {expr} IS NULL THEN NULL {international}{national}ELSE {expr} END)"


def normalised(dialect: Dialect, column: str, kind: TraitType, region: str) -> str:
    """The normalised value of a column, as the destination will receive it."""
    col = quote(column)
    match kind:
        case TraitType.EMAIL:
            # trim() strips only spaces; pasted emails also carry tabs and newlines.
            return (
                rf"NULLIF(lower(regexp_replace(CAST({col} AS VARCHAR), '^\s+|\s+$', '', 'g')), '')"
            )
        case TraitType.PHONE:
            return phone_e164(f"NULLIF(trim(CAST({col} AS VARCHAR)), '')", region)
        case TraitType.STRING:
            return f"CAST({col} AS VARCHAR)"
        case TraitType.INTEGER:
            return f"CAST({col} AS BIGINT)"
        case TraitType.NUMBER:
            return f"CAST({col} AS DOUBLE PRECISION)"
        case TraitType.BOOLEAN:
            return f"CAST({col} AS BOOLEAN)"
        case TraitType.TIMESTAMP:
            return dialect.iso_timestamp(col)
        case TraitType.DATE:
            return dialect.iso_date(col)


def is_valid(dialect: Dialect, expr: str, kind: TraitType, max_length: int | None) -> str:
    """A predicate true when a (non-null) normalised value is acceptable."""
    checks: list[str] = []
    if kind is TraitType.EMAIL:
        checks.append(dialect.regex_full_match(expr, EMAIL_PATTERN))
        checks.append(f"position('..' in {expr}) = 0")
    elif kind is TraitType.PHONE:
        checks.append(dialect.regex_full_match(expr, E164_PATTERN))
    if max_length is not None:
        checks.append(f"length({expr}) <= {max_length}")
    return " AND ".join(checks) if checks else "TRUE"


def problem_label(kind: TraitType, max_length: int | None) -> str:
    """The reason word for a value that fails `is_valid`."""
    if kind in (TraitType.EMAIL, TraitType.PHONE):
        return f"invalid_{kind.value}"
    return "too_long" if max_length is not None else "invalid"
