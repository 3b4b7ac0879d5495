"""A cheap static check of audience SQL: not empty, one statement."""

from __future__ import annotations

import re

_SQL_SKIP = re.compile(r"'(?:[^']|'')*'?|\"(?:[^\"]|\"\")*\"?|--[^\n]*|/\*.*?(?:\*/|\Z)", re.DOTALL)


def sql_problem(sql: str) -> tuple[str, str, int | None] | None:
    """Empty, or more than one statement (a ';' that is not trailing). Cheap, not a parser:
    string literals, quoted identifiers and comments are skipped."""
    code = _SQL_SKIP.sub(lambda m: " " * len(m[0]) if m[0][0] in "-/" else "x" * len(m[0]), sql)
    if not code.replace(";", "").strip():
        return "audience SQL is empty", "write a SELECT over the profiles table", None
    body = re.sub(r"[\s;]+$", "", code)
    offset = body.find(";")
    if offset < 0:
        return None
    return (
        "audience SQL has more than one statement",
        "keep a single SELECT; remove the ';' and what follows, or split it into two audiences",
        offset,
    )
