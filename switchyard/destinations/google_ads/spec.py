"""Google Ads Customer Match: hashed emails and phones added to (or removed from) a user list.

Limits, from the Google Ads API reference (OfflineUserDataJobService, v21):
- 100,000 user identifiers per `addOperations` request and 20 per operation
  (`OfflineUserDataJobError.TOO_MANY_USER_IDENTIFIERS`);
- creates and removes may not be mixed in one job (`CONFLICTING_OPERATION`);
- a job's consent (`adUserData`, `adPersonalization`) is needed for creates, not removes.

*Unverified*: Google publishes no request-size limit in bytes and no per-second request
rate for this service (quota errors carry their own `retryDelay`); the byte cap and the
default allowance below are conservative guesses, so override them in the contract's
`rate_limit` when the account's real quota is known.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from switchyard.destinations.spec import (
    Allowance,
    Capability,
    Category,
    DestinationConfig,
    DestinationSpec,
)

MAX_IDENTIFIERS_PER_REQUEST = 100_000
MAX_IDENTIFIERS_PER_OPERATION = 20
MAX_ROWS_PER_BATCH = 10_000
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # unverified

# What the local simulator knows (and what `example_config` points at).
SIM_CUSTOMER_ID = "1234567890"
SIM_USER_LIST_ID = "7000001"
SIM_OTHER_USER_LIST_ID = "7000002"

Consent = Literal["GRANTED", "DENIED", "UNSPECIFIED"]
_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


def _digits(value: Any) -> Any:
    # Google Ads shows customer IDs as 123-456-7890; the API wants the digits.
    return value.replace("-", "") if isinstance(value, str) else value


class GoogleAdsConfig(DestinationConfig):
    kind: Literal["google_ads"] = "google_ads"
    base_url: str = Field(default="https://googleads.googleapis.com", pattern=r"^https?://")
    api_version: str = Field(default="v21", pattern=r"^v\d+$")
    customer_id: str = Field(pattern=r"^\d{1,20}$")
    user_list_id: str = Field(pattern=r"^\d{1,20}$")
    # The manager account's ID when the list belongs to a client account reached through it.
    login_customer_id: str | None = Field(default=None, pattern=r"^\d{1,20}$")
    # Names of the environment variables holding the credentials: never the secrets.
    developer_token_env: str = Field(default="GOOGLE_ADS_DEVELOPER_TOKEN", pattern=_ENV_NAME)
    access_token_env: str = Field(default="GOOGLE_ADS_ACCESS_TOKEN", pattern=_ENV_NAME)
    # Consent sent on create jobs. None: GRANTED when the contract filters rows on a
    # consent_purpose (only consenting people reach the destination), else UNSPECIFIED.
    ad_user_data: Consent | None = None
    ad_personalization: Consent | None = None
    timeout_seconds: float = Field(default=60, gt=0)
    # How often, and for how long, a batch waits for its job to finish (see client.py).
    poll_interval_seconds: float = Field(default=5.0, gt=0)
    job_wait_seconds: float = Field(default=120.0, ge=0)
    # Back-off after a quota error that names no delay.
    default_retry_after_seconds: float = Field(default=30.0, gt=0)

    @field_validator("customer_id", "login_customer_id", mode="before")
    @classmethod
    def _strip_dashes(cls, value: Any) -> Any:
        return _digits(value)


def example_config(base_url: str) -> GoogleAdsConfig:
    return GoogleAdsConfig(
        base_url=base_url,
        customer_id=SIM_CUSTOMER_ID,
        user_list_id=SIM_USER_LIST_ID,
        poll_interval_seconds=0.01,
        job_wait_seconds=10,
    )


SPEC = DestinationSpec(
    kind="google_ads",
    title="Google Ads Customer Match",
    category=Category.PAID_MEDIA,
    config=GoogleAdsConfig,
    identifiers=frozenset({"email", "phone"}),
    # Rows per batch: one or two identifiers each, far under 100,000 identifiers a request.
    max_batch_size=MAX_ROWS_PER_BATCH,
    max_payload_bytes=MAX_PAYLOAD_BYTES,
    rate_limit=Allowance(requests=5, per_seconds=1.0),  # unverified
    operations=frozenset({Capability.UPSERT, Capability.REMOVE}),
    membership=(
        "a Customer Match user list: a row is a member while its hashed email / phone are "
        "in the list; `remove` takes them out"
    ),
    set_if_empty=False,
    client="switchyard.destinations.google_ads.client:GoogleAdsClient",
    simulator="switchyard.destinations.google_ads.simulator:create_app",
    example_config=example_config,
)
