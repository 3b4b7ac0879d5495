"""Load the YAML catalog into models, or say precisely everything that is wrong with it.

Layout under the catalog root:

    traits.yaml              traits: [ ... ]
    audiences/*.yaml         audience: { ... }       one per file
    destinations/*.yaml      destination: { ... }    one per file, with its contract
    syncs.yaml               syncs: [ ... ]

String scalars may use `${VAR}` or `${VAR:-default}` (the default also applies when VAR is
empty); `$${` is a literal `${`. Every problem in every file is collected before
`CatalogError` is raised, each with its file, line and a fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from yaml.nodes import ScalarNode

from switchyard.catalog.base import NAME_PATTERN
from switchyard.catalog.cron import cron_problem
from switchyard.catalog.models import (
    Audience,
    Catalog,
    Destination,
    FieldMapping,
    FieldOwner,
    Identifier,
    Sync,
    Trait,
    TraitType,
    spec_mismatches,
)
from switchyard.catalog.problems import (
    CatalogError,
    DocPath,
    Problem,
    explain_validation_error,
    suggest,
)
from switchyard.catalog.sql_check import sql_problem
from switchyard.catalog.yaml_source import Document, read_document

__all__ = [
    "CatalogError",
    "Problem",
    "cron_problem",
    "load_catalog",
    "sql_problem",
    "validate_catalog",
]

M = TypeVar("M", bound=BaseModel)

# --- one section of one file into models ------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One declaration as written (`raw`), where it is, and its model if it validated."""

    doc: Document
    path: DocPath
    raw: Any
    model: Any = None

    @property
    def line(self) -> int | None:
        return self.doc.line((*self.path, "name"))

    def get(self, *keys: str) -> Any:
        value = self.raw
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def problem(self, sub: DocPath, message: str, fix: str, line: int | None = None) -> None:
        self.doc.problem((*self.path, *sub), message, fix, line)


def _section(doc: Document, key: str, *, many: bool) -> Iterator[tuple[DocPath, Any]]:
    """The items under the file's single top-level key, each with its path."""
    data = doc.data
    shape = f"{key}:\n  - ..." if many else f"{key}:\n  name: ..."
    if data is None and not doc.problems:
        doc.problem((), "file is empty", f"start it with '{key}:'")
        return
    if not isinstance(data, dict):
        if data is not None:
            doc.problem((), f"expected a mapping with a '{key}:' key", f"write it as '{shape}'")
        return
    for other in data:
        if other != key:
            doc.problem(
                (str(other),), f"unknown top-level key {other!r}", suggest(str(other), [key])
            )
    if key not in data:
        doc.problem((), f"missing top-level key '{key}'", f"start the file with '{key}:'")
        return
    value = data[key]
    if not many:
        yield (key,), value
    elif value is None:
        return  # `syncs:` with nothing under it: no syncs
    elif not isinstance(value, list):
        doc.problem((key,), f"expected a list under '{key}'", "start each item with '- '")
    else:
        for index, item in enumerate(value):
            yield (key, index), item


def _validate(doc: Document, path: DocPath, model: type[M], data: Any) -> M | None:
    try:
        # Destinations are checked against their spec in `_check`, problem by problem.
        return model.model_validate(data, context={"defer_spec_checks": True})
    except ValidationError as exc:
        hidden = frozenset(p[len(path) :] for p in doc.from_env if p[: len(path)] == path)
        for found in explain_validation_error(exc, model, data, hidden=hidden):
            if (*path, *found.path) not in doc.env_failed:
                doc.problem((*path, *found.path), found.message, found.fix)
        return None


@dataclass
class Kind:
    """All declarations of one kind (traits, audiences, ...) across files."""

    label: str
    entries: dict[str, Entry] = field(default_factory=dict)
    # Every declaration as written, valid or not: cross-file checks run on what they can
    # read, so one bad field does not hide problems elsewhere in the same declaration.
    written: list[Entry] = field(default_factory=list)
    # Names declared even if their declaration is invalid, so references to them are not
    # reported a second time as "unknown".
    declared: set[str] = field(default_factory=set)

    def add(self, doc: Document, path: DocPath, model: type[BaseModel], raw: Any) -> bool:
        """Validate and keep one declaration; False if it has no readable name."""
        name = raw.get("name") if isinstance(raw, dict) else None
        named = isinstance(name, str)
        if isinstance(name, str):
            self.declared.add(name)
        value = _validate(doc, path, model, raw)
        self.written.append(Entry(doc, path, raw, value))
        if value is None:
            return named
        name = value.name  # type: ignore[attr-defined]
        first = self.entries.get(name)
        if first is not None:
            doc.problem(
                (*path, "name"),
                f"duplicate {self.label} name {name!r} (also at {first.doc.file}:{first.line})",
                f"rename one of them or delete the duplicate {self.label}",
            )
            return True
        self.entries[name] = Entry(doc, path, raw, value)
        return True

    def models(self) -> dict[str, Any]:
        return {name: entry.model for name, entry in self.entries.items()}


@dataclass
class Loaded:
    docs: list[Document] = field(default_factory=list)
    traits: Kind = field(default_factory=lambda: Kind("trait"))
    audiences: Kind = field(default_factory=lambda: Kind("audience"))
    destinations: Kind = field(default_factory=lambda: Kind("destination"))
    syncs: Kind = field(default_factory=lambda: Kind("sync"))

    def problems(self) -> list[Problem]:
        found = [p for doc in self.docs for p in doc.problems]
        return sorted(found, key=lambda p: (str(p.file), p.line or 0))


def _read_all(root: Path, env: Mapping[str, str]) -> Loaded:
    loaded = Loaded()

    def read(file: Path, key: str, kind: Kind, model: type[BaseModel], many: bool) -> None:
        doc = read_document(file, env)
        loaded.docs.append(doc)
        named = False
        for path, raw in _section(doc, key, many=many):
            named = kind.add(doc, path, model, raw)
        if not many and not named:
            # Unreadable: assume the file is named after what it declares, so references to
            # it are not also reported as unknown.
            kind.declared.add(file.stem)

    model: type[BaseModel]
    for name, key, kind, model in (
        ("traits.yaml", "traits", loaded.traits, Trait),
        ("syncs.yaml", "syncs", loaded.syncs, Sync),
    ):
        if (root / name).is_file():
            read(root / name, key, kind, model, True)
        else:
            missing = Document(root / name)
            missing.problem((), "file not found", f"create {name} with a '{key}:' list")
            loaded.docs.append(missing)
    for folder, key, kind, model in (
        ("audiences", "audience", loaded.audiences, Audience),
        ("destinations", "destination", loaded.destinations, Destination),
    ):
        files = sorted((root / folder).glob("*.yaml")) + sorted((root / folder).glob("*.yml"))
        for file in files:
            read(file, key, kind, model, False)
    return loaded


# --- checks across files ----------------------------------------------------------------


def _check(loaded: Loaded) -> None:
    for audience in loaded.audiences.written:
        _check_sql(audience)
    for destination in loaded.destinations.written:
        _check_contract(destination, loaded.traits)
        if isinstance(destination.model, Destination):
            for path, message, fix in spec_mismatches(destination.model):
                destination.problem(path, message, fix)
    for sync in loaded.syncs.written:
        _check_sync(sync, loaded)


def _check_sql(entry: Entry) -> None:
    sql = entry.get("sql")
    if not isinstance(sql, str) or not sql:  # pydantic has reported those
        return
    finding = sql_problem(sql)
    if finding is None:
        return
    message, fix, offset = finding
    node = entry.doc.nodes.get((*entry.path, "sql"))
    line = None
    if isinstance(node, ScalarNode) and node.style == "|" and offset is not None:
        # A literal block keeps its newlines: point at the line of the offending ';'.
        line = node.start_mark.line + 2 + sql[:offset].count("\n")
    entry.problem(("sql",), message, fix, line)


def _compatible(trait: TraitType) -> set[TraitType]:
    """Mapping types a trait of this type may be sent as."""
    text_like = {TraitType.STRING, TraitType.EMAIL, TraitType.PHONE}
    if trait is TraitType.STRING:
        return text_like
    if trait in (TraitType.EMAIL, TraitType.PHONE):
        return {trait, TraitType.STRING}
    if trait is TraitType.INTEGER:
        return {TraitType.INTEGER, TraitType.NUMBER}  # widening loses nothing
    return {trait}


def _check_contract(entry: Entry, traits: Kind) -> None:
    mappings: list[tuple[DocPath, type[BaseModel], Any]] = [
        (("contract", "identifier"), Identifier, entry.get("contract", "identifier"))
    ]
    fields = entry.get("contract", "fields")
    for index, raw in enumerate(fields if isinstance(fields, list) else []):
        mappings.append((("contract", "fields", index), FieldMapping, raw))
    for path, model, raw in mappings:
        try:
            mapping = model.model_validate(raw)
        except ValidationError:
            continue  # already reported, with its own lines
        _check_mapping(entry, path, mapping, traits)


def _check_mapping(entry: Entry, path: DocPath, mapping: Any, traits: Kind) -> None:
    trait = traits.entries.get(mapping.source)
    if trait is None:
        if mapping.source not in traits.declared:
            entry.problem(
                (*path, "source"),
                f"source {mapping.source!r} is not a declared trait",
                f"{suggest(mapping.source, traits.declared)} (or declare it in traits.yaml)",
            )
    elif mapping.type not in (allowed := _compatible(trait.model.type)):
        entry.problem(
            (*path, "type"),
            f"trait {trait.model.name!r} is {trait.model.type.value} "
            f"but is mapped as {mapping.type.value}",
            "map it as " + " or ".join(sorted(t.value for t in allowed)),
        )
    destination_owned = getattr(mapping, "owner", None) is FieldOwner.DESTINATION
    if destination_owned and mapping.required:
        entry.problem(
            (*path, "required"),
            f"field {mapping.name!r} is required but owned by the destination (never sent)",
            "drop 'required: true', or set 'owner: switchyard' if Switchyard should send it",
        )


def _check_sync(entry: Entry, loaded: Loaded) -> None:
    for key, kind in (("audience", loaded.audiences), ("destination", loaded.destinations)):
        target = entry.get(key)
        # A malformed name is reported by the model; only well-formed ones are looked up.
        well_formed = isinstance(target, str) and re.match(NAME_PATTERN, target)
        if well_formed and target not in kind.declared:
            entry.problem(
                (key,),
                f"unknown {key} {target!r}",
                suggest(target, kind.declared, what=f"known {key}s"),
            )
    schedule = entry.get("schedule")
    if isinstance(schedule, str):
        finding = cron_problem(schedule)
        if finding is not None:
            entry.problem(("schedule",), *finding)


# --- public API -------------------------------------------------------------------------


def _load(root: Path, env: Mapping[str, str] | None) -> tuple[Catalog | None, list[Problem]]:
    root = Path(root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        problem = Problem(
            root,
            None,
            "",
            f"catalog directory {what}",
            "pass the catalog directory, or set SWITCHYARD_CATALOG_DIR",
        )
        return None, [problem]
    loaded = _read_all(root, os.environ if env is None else env)
    _check(loaded)
    problems = loaded.problems()
    if problems:
        return None, problems
    catalog = Catalog(
        traits=loaded.traits.models(),
        audiences=loaded.audiences.models(),
        destinations=loaded.destinations.models(),
        syncs=loaded.syncs.models(),
    )
    return catalog, []


def load_catalog(root: Path, env: Mapping[str, str] | None = None) -> Catalog:
    """The catalog under `root`; `env` (default `os.environ`) resolves `${VAR}` references.

    Raises CatalogError listing every problem found in every file.
    """
    catalog, problems = _load(root, env)
    if catalog is None:
        raise CatalogError(problems)
    return catalog


def validate_catalog(root: Path, env: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem in the catalog under `root`; empty means it loads."""
    return _load(root, env)[1]
