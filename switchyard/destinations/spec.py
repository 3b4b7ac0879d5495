"""What every destination declares about itself, in its own folder's `spec.py`.

The spec is the destination's side of the contract: which identifiers it matches on, how
big a batch and a request may be, how fast it may be called, which operations it supports
and how audience membership is represented there. The catalog checks each contract
against it before anything runs, and the contract test suite holds every client to it.
Client and simulator are named by import path so that reading the catalog never imports
an HTTP client or a web framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from switchyard.catalog.base import Strict


class Capability(StrEnum):
    UPSERT = "upsert"  # create or update the record (or add it to the audience)
    REMOVE = "remove"  # take the record out (delete it, or remove it from the audience)
    MERGE = "merge"  # fold one identity into another
    DELETE = "delete"  # erase the person (privacy deletion)


class Category(StrEnum):
    WEBHOOK = "webhook"
    CRM = "crm"
    MARKETING_AUTOMATION = "marketing_automation"
    PAID_MEDIA = "paid_media"
    FILES = "files"


class DestinationConfig(Strict):
    """Base of each destination's `config:` block; `kind` selects the destination."""

    kind: str


@dataclass(frozen=True)
class Allowance:
    """A documented rate limit: `requests` per `per_seconds`."""

    requests: int
    per_seconds: float


@dataclass(frozen=True)
class DestinationSpec:
    kind: str
    title: str
    category: Category
    config: type[DestinationConfig]
    # Destination field names a contract's identifier may match on; empty means any field.
    identifiers: frozenset[str]
    max_batch_size: int  # records per request
    max_payload_bytes: int  # bytes per request body
    rate_limit: Allowance | None  # the documented default allowance
    operations: frozenset[Capability]
    membership: str  # how "in the audience" is represented there, in a sentence
    # Whether the client can honour a field's `write: if_empty` (it can read before writing).
    set_if_empty: bool
    client: str  # "package.module:factory", see registry.ClientFactory
    simulator: str | None  # "package.module:create_app" for the local simulator
    # The config that points at a simulator served at `base_url` (demo, contract tests).
    example_config: Callable[[str], DestinationConfig]
    max_field_chars: int | None = None  # longest string value the destination stores
