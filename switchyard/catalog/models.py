"""The catalog: traits, audiences, destinations (with their contracts) and syncs.

Everything a run needs to know is declared here, in YAML kept in git, and loaded into
these models. Names are identifiers (lowercase, digits, underscores) because they end up
in table names, workflow ids and search attributes.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field, TypeAdapter, ValidationInfo, field_validator, model_validator

from switchyard.catalog.base import Name, Strict
from switchyard.destinations import registry
from switchyard.destinations.spec import Capability, DestinationConfig, DestinationSpec

_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class TraitType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    DATE = "date"
    EMAIL = "email"
    PHONE = "phone"


class Classification(StrEnum):
    STANDARD = "standard"
    PII = "pii"
    SENSITIVE = "sensitive"


class Trait(Strict):
    name: Name
    type: TraitType
    owner: str = Field(min_length=1)
    classification: Classification = Classification.STANDARD
    description: str = ""


class Audience(Strict):
    name: Name
    version: int = Field(ge=1)
    owner: str = Field(min_length=1)
    description: str = ""
    # SQL over the warehouse's `profiles` table; must return `profile_id` and the traits
    # the contracts map.
    sql: str = Field(min_length=1)


class SyncMode(StrEnum):
    # Adds and changes are sent; rows that leave are forgotten, not removed downstream.
    UPSERT = "upsert"
    # Adds and changes are sent, and rows that leave are removed downstream.
    MIRROR = "mirror"


class FieldOwner(StrEnum):
    # Switchyard is the source of truth: always overwrite.
    SWITCHYARD = "switchyard"
    # The destination owns the field: it is never sent.
    DESTINATION = "destination"


class WriteRule(StrEnum):
    # Every change is written.
    ALWAYS = "always"
    # Written only where the destination's field is empty: a person there may fill it in.
    IF_EMPTY = "if_empty"


class FieldMapping(Strict):
    name: str = Field(min_length=1, description="field name in the destination")
    source: Name = Field(description="trait (column) the value comes from")
    type: TraitType = TraitType.STRING
    required: bool = False
    max_length: int | None = Field(default=None, ge=1)
    owner: FieldOwner = FieldOwner.SWITCHYARD
    write: WriteRule = Field(
        default=WriteRule.ALWAYS, description="always, or if_empty (never overwrite a value)"
    )
    send_nulls: bool = Field(
        default=True, description="false: a missing value is left out, not sent as null"
    )


class Identifier(Strict):
    """The match key: which destination field identifies a record, and where it comes from."""

    name: str = Field(min_length=1)
    source: Name
    type: TraitType = TraitType.STRING


class RateLimit(Strict):
    requests: int = Field(ge=1)
    per_seconds: float = Field(gt=0)

    @property
    def per_second(self) -> float:
        return self.requests / self.per_seconds


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    if isinstance(value, timedelta):
        return value
    # bool is an int subclass: `true` must not silently mean one second.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    # Anything else (None, lists, bools from YAML) must be a ValueError, not an AttributeError,
    # or pydantic lets it escape validation as a crash.
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 15m, 6h, 1d)")
    match = _DURATION.match(value.strip())
    if not match and value.startswith("P"):
        # ISO 8601, as the model serialises itself (e.g. into workflow history).
        return TypeAdapter(timedelta).validate_python(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 15m, 6h, 1d)")
    return timedelta(seconds=int(match[1]) * _DURATION_UNITS[match[2]])


class Gates(Strict):
    """Checks that stop a run before anything is sent."""

    max_invalid_ratio: float = Field(default=0.25, ge=0, le=1)
    min_identifier_coverage: float = Field(default=0.0, ge=0, le=1)


class Contract(Strict):
    version: int = Field(ge=1)
    identifier: Identifier
    fields: list[FieldMapping] = Field(default_factory=list)
    sync_mode: SyncMode = SyncMode.MIRROR
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    rate_limit: RateLimit | None = None
    max_in_flight: int = Field(default=8, ge=1, le=64)
    consent_purpose: Name | None = None
    default_phone_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    freshness_sla: timedelta = timedelta(hours=24)
    gates: Gates = Gates()

    @field_validator("freshness_sla", mode="before")
    @classmethod
    def _duration(cls, value: str | int | float | timedelta) -> timedelta:
        return parse_duration(value)

    @model_validator(mode="after")
    def _unique_field_names(self) -> Contract:
        seen: set[str] = {self.identifier.name}
        for mapping in self.fields:
            if mapping.name in seen:
                raise ValueError(f"field {mapping.name!r} is mapped twice")
            seen.add(mapping.name)
        return self

    @property
    def sent_fields(self) -> list[FieldMapping]:
        return [m for m in self.fields if m.owner is FieldOwner.SWITCHYARD]

    @property
    def source_columns(self) -> list[str]:
        return sorted({self.identifier.source, *(m.source for m in self.fields)})


# The `config:` block of a destination, selected by its `kind` among the registered ones.
if TYPE_CHECKING:
    DestinationConfigType = DestinationConfig
else:
    DestinationConfigType = Annotated[
        Union[registry.config_types()],  # noqa: UP007 - built from the registry at import
        Field(discriminator="kind"),
    ]


class Destination(Strict):
    name: Name
    owner: str = Field(min_length=1)
    description: str = ""
    config: DestinationConfigType
    contract: Contract

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def spec(self) -> DestinationSpec:
        return registry.spec_for(self.kind)

    @model_validator(mode="after")
    def _fits_the_destination(self, info: ValidationInfo) -> Destination:
        """The contract must ask only for what this kind of destination can do.

        The catalog loader defers this (context `defer_spec_checks`) to report each
        mismatch at its own line; built any other way, the first mismatch is an error.
        """
        if not (info.context or {}).get("defer_spec_checks"):
            for _, message, fix in spec_mismatches(self):
                raise ValueError(f"{message}; {fix}")
        return self


SpecMismatch = tuple[tuple[str | int, ...], str, str]


def spec_mismatches(destination: Destination) -> list[SpecMismatch]:
    """Where a destination's contract asks for more than its kind can do: (path, problem, fix)."""
    spec, contract = destination.spec, destination.contract
    found: list[SpecMismatch] = []
    if contract.batch_size > spec.max_batch_size:
        found.append(
            (
                ("contract", "batch_size"),
                f"batch_size {contract.batch_size} is above {spec.title}'s limit of "
                f"{spec.max_batch_size} records per request",
                f"use at most {spec.max_batch_size}",
            )
        )
    if spec.identifiers and contract.identifier.name not in spec.identifiers:
        found.append(
            (
                ("contract", "identifier", "name"),
                f"{spec.title} matches records on {', '.join(sorted(spec.identifiers))}, "
                f"not {contract.identifier.name!r}",
                f"use one of: {', '.join(sorted(spec.identifiers))}",
            )
        )
    if contract.sync_mode is SyncMode.MIRROR and Capability.REMOVE not in spec.operations:
        found.append(
            (
                ("contract", "sync_mode"),
                f"sync_mode mirror removes rows that leave, and {spec.title} cannot remove",
                "use sync_mode: upsert",
            )
        )
    longest = spec.max_field_chars
    for index, mapping in enumerate(contract.fields):
        if longest is not None and mapping.max_length is not None and mapping.max_length > longest:
            found.append(
                (
                    ("contract", "fields", index, "max_length"),
                    f"max_length {mapping.max_length} of field {mapping.name!r} is above "
                    f"{spec.title}'s longest value of {longest} characters",
                    f"use at most {longest}",
                )
            )
    if_empty = [m.name for m in contract.fields if m.write is WriteRule.IF_EMPTY]
    if if_empty and not spec.set_if_empty:
        found.append(
            (
                ("contract", "fields"),
                f"{spec.title} cannot read a field before writing it, so `write: if_empty` "
                f"cannot be honoured (fields: {', '.join(if_empty)})",
                "drop `write: if_empty` from those fields",
            )
        )
    return found


class Sync(Strict):
    name: Name
    audience: Name
    destination: Name
    # Cron expression (five fields) for the schedule; None means manual runs only.
    schedule: str | None = None
    paused: bool = False


class Catalog(Strict):
    traits: dict[str, Trait]
    audiences: dict[str, Audience]
    destinations: dict[str, Destination]
    syncs: dict[str, Sync]

    def sync(self, name: str) -> Sync:
        try:
            return self.syncs[name]
        except KeyError:
            known = ", ".join(sorted(self.syncs)) or "none"
            raise KeyError(f"unknown sync {name!r} (known: {known})") from None

    def plan_for(self, sync_name: str) -> SyncPlan:
        sync = self.sync(sync_name)
        return SyncPlan(
            sync=sync,
            audience=self.audiences[sync.audience],
            destination=self.destinations[sync.destination],
            traits={t.name: t for t in self.traits.values()},
        )


class SyncPlan(Strict):
    """Everything one run of one sync needs, resolved from the catalog."""

    sync: Sync
    audience: Audience
    destination: Destination
    traits: dict[str, Trait]

    @property
    def contract(self) -> Contract:
        return self.destination.contract
