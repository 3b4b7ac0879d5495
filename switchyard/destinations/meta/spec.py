"""Meta Custom Audiences (customer list): hashed people added to and removed from an audience.

Limits, from Meta's Marketing API docs (developers.facebook.com/docs/marketing-api/
audiences/guides/custom-audiences, .../reference/custom-audience/users and
.../overview/rate-limiting):
- at most 10,000 rows per `/{audience_id}/users` request;
- Business Use Case (BUC) rate limit for custom audiences, per business and hour:
  5,000 + 40 x active custom audiences with standard access (190,000 + 40 x ... with
  advanced access). The spec declares the floor, 5,000 per hour; the client reads the
  real budget from `X-Business-Use-Case-Usage` on every answer.
- No request-size limit is documented for this edge; 8 MiB is a conservative cap that
  still fits a full 10,000-row request with four match keys (about 3 MB form-encoded).
"""

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

# What `token_env` falls back to in development; refused everywhere else.
DEV_META_ACCESS_TOKEN = "dev-only-meta-access-token"

MAX_ROWS = 10_000

# Contract field names that become Meta match keys (multi-key schema), in Meta's spelling.
MATCH_KEYS: dict[str, str] = {"email": "EMAIL", "phone": "PHONE", "fn": "FN", "ln": "LN"}


class MetaConfig(DestinationConfig):
    kind: Literal["meta"] = "meta"
    base_url: str = Field(default="https://graph.facebook.com", pattern=r"^https?://")
    # The Graph API version in every path; v26.0 is the one the pinned SDK speaks.
    api_version: str = Field(default="v26.0", pattern=r"^v\d+\.\d+$")
    audience_id: str = Field(pattern=r"^\d+$")
    # Name of the environment variable holding the access token: never the token itself.
    token_env: str = Field(default="META_ACCESS_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")
    # Region for phone numbers written without a country code; None: the contract's.
    default_phone_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    timeout_seconds: float = Field(default=60, gt=0)
    # Follow-up requests a batch may spend locating invalid rows Meta counted but did not
    # name in its samples (see client.py); 0 rejects such rows' whole group at once.
    attribution_requests: int = Field(default=8, ge=0, le=64)


SPEC = DestinationSpec(
    kind="meta",
    title="Meta Custom Audiences",
    category=Category.PAID_MEDIA,
    config=MetaConfig,
    identifiers=frozenset({"email", "phone"}),
    max_batch_size=MAX_ROWS,
    max_payload_bytes=8 * 1024 * 1024,
    rate_limit=Allowance(requests=5_000, per_seconds=3600),
    operations=frozenset({Capability.UPSERT, Capability.REMOVE}),
    membership=(
        "a member of the custom audience, matched on SHA-256 hashes of the identifier and "
        "any extra match keys (phone, fn, ln); upsert adds, remove takes the person out"
    ),
    set_if_empty=False,
    client="switchyard.destinations.meta.client:MetaAudienceClient",
    simulator="switchyard.destinations.meta.simulator:create_app",
    example_config=lambda base_url: MetaConfig(base_url=base_url, audience_id="23850000000000001"),
)
