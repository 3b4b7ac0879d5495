"""Braze: user profiles in a workspace, written through the REST API's /users endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from switchyard.destinations.spec import (
    Allowance,
    Capability,
    Category,
    DestinationConfig,
    DestinationSpec,
)

# What an attributes object of /users/track may identify its user by. `braze_id` is left
# out on purpose: Braze assigns it, so /users/track cannot create a profile from one and
# rows for unknown ids would count as delivered while nothing was written.
IDENTIFIERS = ("external_id", "user_alias", "email", "phone")

Prioritization = Literal["identified", "unidentified", "most_recently_updated"]


class BrazeConfig(DestinationConfig):
    kind: Literal["braze"] = "braze"
    # The workspace's REST endpoint (US-01 here; EU-01 is https://rest.fra-01.braze.eu).
    base_url: str = Field(default="https://rest.iad-01.braze.com", pattern=r"^https?://[^/]")
    # Name of the environment variable holding the REST API key: never the key itself.
    api_key_env: str = Field(default="BRAZE_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    # The alias label when the contract's identifier is `user_alias` (the key is its name).
    alias_label: str | None = Field(default=None, min_length=1)
    # Which profile /users/delete and /users/merge pick when an email or phone matches
    # several (Braze acts on one of them). The default finds email-only profiles too, such
    # as those a sync identified by email created.
    prioritization: tuple[Prioritization, ...] = ("most_recently_updated",)
    timeout_seconds: float = Field(default=30, gt=0)

    @field_validator("prioritization")
    @classmethod
    def _one_of_identified_or_not(
        cls, value: tuple[Prioritization, ...]
    ) -> tuple[Prioritization, ...]:
        if not value:
            raise ValueError("prioritization needs at least one entry")
        if "identified" in value and "unidentified" in value:
            raise ValueError("prioritization may hold `identified` or `unidentified`, not both")
        return value


SPEC = DestinationSpec(
    kind="braze",
    title="Braze",
    category=Category.MARKETING_AUTOMATION,
    config=BrazeConfig,
    identifiers=frozenset(IDENTIFIERS),
    # /users/track: at most 75 attributes, events and purchases together per request.
    max_batch_size=75,
    # "All API endpoints have a data payload limit of 4 MB" (413 beyond); decimal, to be safe.
    max_payload_bytes=4_000_000,
    # /users/track: 3,000 requests per 3 seconds per workspace. /users/delete and
    # /users/merge have their own 20,000 per minute, paced inside the client.
    rate_limit=Allowance(requests=3_000, per_seconds=3),
    operations=frozenset(
        {Capability.UPSERT, Capability.REMOVE, Capability.MERGE, Capability.DELETE}
    ),
    membership=(
        "a Braze user profile carrying the synced attributes; `remove` unsets those "
        "attributes (null, update-only) and keeps the profile, because deleting a Braze user "
        "is irreversible and erases what other tools wrote there, so it is kept for privacy "
        "deletion (`delete`)"
    ),
    set_if_empty=False,
    client="switchyard.destinations.braze.client:BrazeClient",
    simulator="switchyard.destinations.braze.simulator:create_app",
    example_config=lambda base_url: BrazeConfig(base_url=base_url, alias_label="switchyard"),
    # Braze stores string attributes of up to 255 characters.
    max_field_chars=255,
)
