"""Cron expressions: five fields, checked when the catalog is validated, not when applied."""

from __future__ import annotations

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_CRON_FIELDS: tuple[tuple[str, int, int, list[str]], ...] = (
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_HELP = "five fields: minute hour day-of-month month day-of-week, e.g. '*/30 * * * *'"


def cron_problem(expression: str) -> tuple[str, str] | None:
    """(message, fix) if `expression` is not a valid five-field cron expression."""
    parts = expression.split()
    if len(parts) != 5:
        macro = _MACROS.get(expression.strip().lower())
        fix = f"write {macro!r} instead" if macro else f"write {_CRON_HELP}"
        count = f"{len(parts)} field" + ("" if len(parts) == 1 else "s")
        return f"cron expression {expression!r} has {count}, expected 5", fix
    for text, (label, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            error = _cron_item(item, low, high, names)
            if error is not None:
                named = f" or {names[0]}-{names[-1]}" if names else ""
                return (
                    f"{label} field {text!r}: {error}",
                    f"use {low}-{high}{named}, '*', ranges a-b, steps */n and lists a,b",
                )
    return None


def _cron_item(item: str, low: int, high: int, names: list[str]) -> str | None:
    base, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        return f"step {step!r} must be a positive whole number"
    if base == "*":
        return None
    start, dash, end = base.partition("-")
    values = []
    for text in (start, end) if dash else (start,):
        value = _cron_value(text, names)
        if value is None:
            return f"{text!r} is not a number" + (" or a name" if names else "")
        if not low <= value <= high:
            return f"{value} is out of range {low}-{high}"
        values.append(value)
    if dash and values[0] > values[1]:
        return f"range {base!r} runs backwards"
    return None


def _cron_value(text: str, names: list[str]) -> int | None:
    if text.isdigit():
        return int(text)
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + (1 if names is _MONTHS else 0)
    return None
