"""What can be wrong with a catalog, and how to say it so the reader can fix it.

    Exception
    └── CatalogError      one or more Problems, all of them, from every file

A Problem names the file, the line, the dotted location inside the document, what is wrong
and a concrete fix. `explain_validation_error` turns pydantic's errors into that vocabulary;
the loader attaches the file and line.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from switchyard.catalog.base import NAME_PATTERN

DocPath = tuple[str | int, ...]

NAME_FIX = "use lowercase letters, digits and underscores, starting with a letter"


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int | None
    location: str
    message: str
    fix: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else str(self.file)

    @property
    def headline(self) -> str:
        """`file:line: location: message`, without the fix."""
        parts = [self.where, self.location, self.message]
        return ": ".join(p for p in parts if p)

    def __str__(self) -> str:
        return f"{self.headline} (fix: {self.fix})"


class CatalogError(Exception):
    """The catalog is invalid; `problems` lists everything found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} catalog problem(s)")

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def dotted(path: DocPath) -> str:
    """('destination', 'contract', 'fields', 3) -> 'destination.contract.fields[3]'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def suggest(word: str, candidates: Iterable[str], *, what: str = "known") -> str:
    """'did you mean 'x'?' if something is close, else the list of what exists."""
    known = sorted(set(candidates))
    guess = did_you_mean(word, known)
    if guess is not None:
        return f"did you mean {guess!r}?"
    return f"{what}: {', '.join(known)}" if known else f"{what}: none"


def show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Explanation(NamedTuple):
    path: DocPath  # inside the validated object, discriminator tags removed
    message: str
    fix: str


def explain_validation_error(
    error: ValidationError,
    model: type[BaseModel],
    data: Any,
    *,
    hidden: frozenset[DocPath] = frozenset(),
) -> list[Explanation]:
    """Human messages for each of pydantic's errors.

    `hidden` are paths whose value came from the environment: they may hold secrets, so the
    value is never echoed.
    """
    out = []
    for detail in error.errors(include_url=False):
        path = _data_path(detail["loc"], data)
        shown = "the value from the environment" if path in hidden else show(detail["input"])
        out.append(_explain(detail, path, shown, model, data))
    return out


def _data_path(loc: tuple[str | int, ...], data: Any) -> DocPath:
    """Pydantic's loc, minus the discriminator tags it inserts ('config', 'webhook', 'url')."""
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        if (
            isinstance(current, dict)
            and isinstance(part, str)
            and part not in current
            and part in current.values()
            and i < len(loc) - 1
        ):
            continue
        path.append(part)
        try:
            current = current[part]
        except (KeyError, IndexError, TypeError):
            current = None
    return tuple(path)


def _explain(
    detail: ErrorDetails, path: DocPath, shown: str, model: type[BaseModel], data: Any
) -> Explanation:
    kind = detail["type"]
    ctx: dict[str, Any] = dict(detail.get("ctx") or {})
    field = str(path[-1]) if path else ""
    if kind == "extra_forbidden":
        names = _field_names(_annotation_at(model, path[:-1], data))
        guess = did_you_mean(field, names)
        fix = f"did you mean {guess!r}?" if guess else f"remove it (known: {', '.join(names)})"
        return Explanation(path, f"unknown field {field!r}", fix)
    if kind == "missing":
        described = _description(_annotation_at(model, path[:-1], data), field)
        hint = f" ({described})" if described else ""
        return Explanation(path, f"missing required field {field!r}", f"add '{field}:'{hint}")
    if kind in ("enum", "literal_error"):
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        value = str(detail["input"])
        guess = did_you_mean(value, allowed)
        lead = f"did you mean {guess!r}? " if guess else ""
        return Explanation(
            path, f"{shown} is not allowed", f"{lead}use one of: {', '.join(allowed)}"
        )
    if kind == "union_tag_invalid":
        tag = str(ctx.get("discriminator", "kind")).strip("'")
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        guess = did_you_mean(str(ctx.get("tag", "")), allowed)
        lead = f"did you mean {guess!r}? " if guess else ""
        return Explanation(
            (*path, tag),
            f"unknown {tag} {show(ctx.get('tag'))}",
            f"{lead}use one of: {', '.join(allowed)}",
        )
    if kind == "union_tag_not_found":
        tag = str(ctx.get("discriminator", "kind")).strip("'")
        tags = _tags(_annotation_at(model, path, data), tag)
        return Explanation(
            path, f"missing {tag!r}", f"add '{tag}:' (one of: {', '.join(tags) or '?'})"
        )
    if kind == "string_pattern_mismatch":
        return Explanation(path, f"{shown} is not valid here", _pattern_fix(ctx, detail["input"]))
    if kind == "value_error" or kind == "assertion_error":
        return _explain_value_error(detail, path, data)
    simple = _SIMPLE.get(kind)
    if simple is not None:
        message, fix = simple
        return Explanation(path, message.format(got=shown, **ctx), fix.format(**ctx))
    return Explanation(path, f"{detail['msg']} (got {shown})", "correct the value")


_SIMPLE: dict[str, tuple[str, str]] = {
    "int_parsing": ("expected a whole number, got {got}", "write a whole number, e.g. 100"),
    "int_type": ("expected a whole number, got {got}", "write a whole number, e.g. 100"),
    "int_from_float": ("expected a whole number, got {got}", "drop the fractional part"),
    "float_parsing": ("expected a number, got {got}", "write a number, e.g. 0.5"),
    "float_type": ("expected a number, got {got}", "write a number, e.g. 0.5"),
    "bool_parsing": ("expected true or false, got {got}", "write true or false"),
    "bool_type": ("expected true or false, got {got}", "write true or false"),
    "string_type": ("expected text, got {got}", "write text; quote it if YAML reads it otherwise"),
    "list_type": ("expected a list, got {got}", "write one item per line, each starting with '- '"),
    "dict_type": ("expected a mapping, got {got}", "write 'key: value' lines indented under it"),
    "model_type": ("expected a mapping, got {got}", "write 'key: value' lines indented under it"),
    "model_attributes_type": (
        "expected a mapping, got {got}",
        "write 'key: value' lines indented under it",
    ),
    "string_too_short": ("must not be empty", "fill in a value"),
    "string_too_long": ("is too long: {got}", "shorten it to at most {max_length} characters"),
    "greater_than_equal": ("must be at least {ge}, got {got}", "use a value of {ge} or more"),
    "greater_than": ("must be greater than {gt}, got {got}", "use a value above {gt}"),
    "less_than_equal": ("must be at most {le}, got {got}", "use a value of {le} or less"),
    "less_than": ("must be less than {lt}, got {got}", "use a value below {lt}"),
}

_PATTERN_FIXES = {
    r"^https?://": "start the URL with http:// or https://",
    r"^[A-Z_][A-Z0-9_]*$": "name an environment variable: uppercase letters, digits, underscores",
    r"^[A-Z]{2}$": "use a two-letter region code in capitals, e.g. 'US'",
}


def _pattern_fix(ctx: dict[str, Any], value: object) -> str:
    pattern = str(ctx.get("pattern", ""))
    if pattern == NAME_PATTERN:
        slug = re.sub(r"[^a-z0-9_]+", "_", str(value).lower()).strip("_")[:63]
        example = f", e.g. {slug!r}" if re.match(NAME_PATTERN, slug) else ""
        return NAME_FIX + example
    return _PATTERN_FIXES.get(pattern, f"match the pattern {pattern}")


def _explain_value_error(detail: ErrorDetails, path: DocPath, data: Any) -> Explanation:
    message = re.sub(r"^(Value error|Assertion failed), ", "", detail["msg"])
    if message.startswith("not a duration"):
        return Explanation(
            path, message.split(" (")[0], "use a number and a unit, e.g. 90s, 15m, 6h, 1d"
        )
    duplicate = re.match(r"field '(.+)' is mapped twice", message)
    if duplicate:
        return Explanation(
            _second_mapping(path, data, duplicate[1]),
            message,
            "give each mapping a distinct destination field name, or remove one",
        )
    return Explanation(path, message, "correct the value")


def _second_mapping(path: DocPath, data: Any, name: str) -> DocPath:
    """The mapping that repeats `name`, so the line points at the duplicate itself."""
    node = _get(data, path)
    if not isinstance(node, dict):
        return path
    identifier = node.get("identifier")
    seen = {identifier.get("name")} if isinstance(identifier, dict) else set()
    fields = node.get("fields")
    for i, mapping in enumerate(fields if isinstance(fields, list) else []):
        value = mapping.get("name") if isinstance(mapping, dict) else None
        if value == name and value in seen:
            return (*path, "fields", i, "name")
        seen.add(value)
    return path


def _get(data: Any, path: DocPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _annotation_at(model: type[BaseModel], path: DocPath, data: Any) -> Any:
    """The annotation of the value at `path`, walking model fields, lists and dicts."""
    current: Any = model
    for depth, part in enumerate(path):
        current = _pick_model(current, _get(data, path[:depth]))
        if isinstance(part, str) and _is_model(current):
            info = current.model_fields.get(part)
            if info is None:
                return None
            current = info.annotation
        elif isinstance(part, int):
            args = [a for a in typing.get_args(_strip(current)) if a is not type(None)]
            current = args[-1] if args else None
        else:
            return None
    return _pick_model(current, _get(data, path))


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _variants(annotation: Any) -> list[Any]:
    annotation = _strip(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [_strip(a) for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _pick_model(annotation: Any, data: Any) -> Any:
    """For a union of models, the variant whose tag matches the data (or the only one)."""
    variants = _variants(annotation)
    models = [v for v in variants if _is_model(v)]
    if len(variants) == 1 or len(models) == 1:
        return models[0] if models else variants[0]
    if isinstance(data, dict):
        for candidate in models:
            kind = candidate.model_fields.get("kind")
            if kind is not None and kind.default == data.get("kind"):
                return candidate
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field_names(annotation: Any) -> list[str]:
    return list(annotation.model_fields) if _is_model(annotation) else []


def _description(annotation: Any, field: str) -> str:
    if not _is_model(annotation) or field not in annotation.model_fields:
        return ""
    return annotation.model_fields[field].description or ""


def _tags(annotation: Any, tag: str) -> list[str]:
    out = []
    for variant in _variants(annotation):
        info = variant.model_fields.get(tag) if _is_model(variant) else None
        if info is not None and isinstance(info.default, str):
            out.append(info.default)
    return out
