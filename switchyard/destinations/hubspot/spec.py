"""HubSpot CRM contacts: batch upserts keyed by a unique property (email, or a custom one)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from switchyard.destinations.spec import (
    Allowance,
    Capability,
    Category,
    DestinationConfig,
    DestinationSpec,
)

HUBSPOT_API = "https://api.hubapi.com"
# What a missing token falls back to in development (the simulator takes any bearer token).
DEV_HUBSPOT_TOKEN = "dev-only-hubspot-token"


class HubSpotConfig(DestinationConfig):
    kind: Literal["hubspot"] = "hubspot"
    base_url: str = Field(default=HUBSPOT_API, pattern=r"^https?://")
    # Name of the environment variable holding the private app's access token.
    token_env: str = Field(default="HUBSPOT_ACCESS_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")
    timeout_seconds: float = Field(default=30, gt=0)


SPEC = DestinationSpec(
    kind="hubspot",
    title="HubSpot (CRM contacts)",
    category=Category.CRM,
    config=HubSpotConfig,
    # Upserts match on email or on any custom property with unique values; which one a
    # contract names is checked by the client's preflight (HubSpot refuses the others).
    identifiers=frozenset(),
    max_batch_size=100,  # inputs per batch request (upsert, read, archive)
    # HubSpot documents no request-size limit (unverified); bodies above this are split.
    max_payload_bytes=3_000_000,
    # A private app's burst allowance on the lowest tiers (190 / 10 s on higher ones).
    rate_limit=Allowance(requests=100, per_seconds=10),
    operations=frozenset({Capability.UPSERT, Capability.REMOVE}),
    membership=(
        "a contact per identifier value (the upsert's idProperty); `remove` finds the "
        "contact's record id with a batch read by that value (batch archive takes record "
        "ids, not emails) and archives it, which puts it in HubSpot's recycle bin"
    ),
    # `write: if_empty` fields are read first (batch read) and sent only where empty.
    set_if_empty=True,
    client="switchyard.destinations.hubspot.client:HubSpotClient",
    simulator="switchyard.destinations.hubspot.simulator:create_app",
    example_config=lambda base_url: HubSpotConfig(base_url=base_url),
    # Single- and multi-line text properties hold at most 65,536 characters.
    max_field_chars=65_536,
)
