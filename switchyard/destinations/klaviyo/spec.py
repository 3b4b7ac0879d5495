"""Klaviyo: profiles upserted through asynchronous bulk import jobs, optionally kept on a list.

Limits are Klaviyo's documented ones for `POST /api/profile-bulk-import-jobs`: 10,000
profiles and 5 MB per job, 100 KB per profile, rate limit tier M (burst 10/s, steady
150/m). The steady window is the allowance: delivery paces well under the burst window.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from switchyard.destinations.spec import (
    Allowance,
    Capability,
    Category,
    DestinationConfig,
    DestinationSpec,
)

# What the client sends in development when the key's variable is unset; the simulator
# accepts it, Klaviyo never would, and outside development the client refuses it.
DEV_API_KEY = "pk_dev-only-klaviyo-key"
DEFAULT_API_KEY_ENV = "KLAVIYO_PRIVATE_API_KEY"
# A list the simulator has from the start (Klaviyo list ids are six characters).
SIM_LIST_ID = "SwYrd1"
# Profile attributes Klaviyo matches profiles on.
IDENTIFIERS = frozenset({"email", "phone_number", "external_id"})

MAX_PROFILES_PER_JOB = 10_000
MAX_JOB_BYTES = 5 * 1024 * 1024
MAX_PROFILE_BYTES = 100 * 1024


class KlaviyoConfig(DestinationConfig):
    kind: Literal["klaviyo"] = "klaviyo"
    base_url: str = Field(default="https://a.klaviyo.com", pattern=r"^https?://")
    # Name of the environment variable holding the private API key: never the key itself.
    api_key_env: str = Field(default=DEFAULT_API_KEY_ENV, pattern=r"^[A-Z_][A-Z0-9_]*$")
    # The API revision every request names in its `revision` header.
    revision: str = Field(default="2025-10-15", pattern=r"^\d{4}-\d{2}-\d{2}(\.pre)?$")
    # Imported profiles are also added to this list; with it, `remove` takes them off again.
    list_id: str | None = Field(default=None, min_length=1)
    timeout_seconds: float = Field(default=30, gt=0)
    # Job polls start at `poll_interval_seconds` apart and back off to the maximum.
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    poll_max_interval_seconds: float = Field(default=15.0, gt=0)
    # A job not finished by then fails the batch as retryable (the re-sent upserts are
    # idempotent), so a stuck job cannot hold a chunk forever.
    job_timeout_seconds: float = Field(default=600, gt=0)

    @model_validator(mode="after")
    def _poll_bounds(self) -> KlaviyoConfig:
        if self.poll_max_interval_seconds < self.poll_interval_seconds:
            raise ValueError("poll_max_interval_seconds is below poll_interval_seconds")
        return self


SPEC = DestinationSpec(
    kind="klaviyo",
    title="Klaviyo (bulk profile import)",
    category=Category.MARKETING_AUTOMATION,
    config=KlaviyoConfig,
    identifiers=IDENTIFIERS,
    max_batch_size=MAX_PROFILES_PER_JOB,
    max_payload_bytes=MAX_JOB_BYTES,
    rate_limit=Allowance(requests=150, per_seconds=60),
    operations=frozenset({Capability.UPSERT, Capability.REMOVE}),
    membership=(
        "a Klaviyo profile per key (email, phone_number or external_id); with `list_id` set, "
        "membership of that list, and `remove` takes the profile off the list (the profile "
        "and its consent stay); without `list_id` there is nothing to remove (mirror needs it)"
    ),
    set_if_empty=False,
    client="switchyard.destinations.klaviyo.client:KlaviyoClient",
    simulator="switchyard.destinations.klaviyo.simulator:create_app",
    example_config=lambda base_url: KlaviyoConfig(
        base_url=base_url,
        list_id=SIM_LIST_ID,
        poll_interval_seconds=0.02,
        poll_max_interval_seconds=0.2,
        job_timeout_seconds=20,
    ),
)
