"""Salesforce sObjects (Contact, Lead, a custom object): upserts by an external-id field.

Small batches go through sObject Collections (200 records a request, answered per record);
batches of `bulk_threshold` upserts or more go through a Bulk API 2.0 ingest job, which
costs a handful of requests whatever its size.
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

# What a missing token falls back to in development (the simulator takes any bearer token).
DEV_SALESFORCE_TOKEN = "dev-only-salesforce-access-token"
_API_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"


class SalesforceConfig(DestinationConfig):
    kind: Literal["salesforce"] = "salesforce"
    # The org's base URL, e.g. https://<domain>.my.salesforce.com; every path hangs off it.
    instance_url: str = Field(pattern=r"^https?://[^/?#]+(/[^?#]*)?$")
    api_version: str = Field(default="v60.0", pattern=r"^v\d{2,3}\.\d$")
    sobject: str = Field(default="Contact", pattern=_API_NAME)
    # The field upserts match on: an External ID field (Switchyard_Id__c) or an idLookup
    # field such as Email. The contract's identifier value is written to it.
    external_id_field: str = Field(pattern=_API_NAME)
    # Name of the environment variable holding the OAuth access token (session id).
    token_env: str = Field(default="SALESFORCE_ACCESS_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")
    timeout_seconds: float = Field(default=30, gt=0)
    # Upserts in one batch at or above which a Bulk API 2.0 job is used.
    bulk_threshold: int = Field(default=2000, ge=1)
    # Largest request body: a job's CSV upload (documented ceiling: 100 MB before base64)
    # or a collections request; bigger ones are split.
    max_upload_bytes: int = Field(default=100_000_000, ge=1024, le=100_000_000)
    # Job polling: the first wait, the longest wait (doubling between), and the give-up time
    # after which the batch is retried as a new job (re-sends are harmless upserts).
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    poll_max_interval_seconds: float = Field(default=30.0, gt=0)
    job_timeout_seconds: float = Field(default=900.0, gt=0)
    # How long every sender waits when the org's API allocation is spent: Salesforce's
    # window is a rolling 24 hours and neither its 403 nor `Sforce-Limit-Info` says when
    # calls free up again. A `Retry-After` from the server, when there is one, wins.
    limit_hold_seconds: float = Field(default=300.0, gt=0)


def _example(base_url: str) -> SalesforceConfig:
    return SalesforceConfig(
        instance_url=base_url,
        sobject="Contact",
        external_id_field="Email",
        poll_interval_seconds=0.05,
        poll_max_interval_seconds=0.2,
        job_timeout_seconds=30,
        limit_hold_seconds=1,
    )


SPEC = DestinationSpec(
    kind="salesforce",
    title="Salesforce (sObject upserts by external id)",
    category=Category.CRM,
    config=SalesforceConfig,
    # Any External ID / idLookup field of the sObject; the config names it.
    identifiers=frozenset(),
    # A batch is split into sObject Collections requests of 200, or sent whole as one Bulk
    # API 2.0 job (no record cap per job) from `bulk_threshold` upserts: the contract's own
    # ceiling of 10,000 is what bounds it.
    max_batch_size=10_000,
    # A Bulk API 2.0 upload: 150 MB once base64-encoded, so 100 MB of raw CSV.
    max_payload_bytes=100_000_000,
    # Enterprise Edition's base allocation: 100,000 API requests per rolling 24 hours
    # (plus per-licence extras); every request counts, Bulk API 2.0 calls included.
    rate_limit=Allowance(requests=100_000, per_seconds=86_400),
    operations=frozenset({Capability.UPSERT, Capability.REMOVE}),
    membership=(
        "a record of the configured sObject per external-id value; `remove` looks the "
        "record ids up with a SOQL query on that field (sObject Collections deletes take "
        "ids, not external ids) and deletes them, which puts them in the recycle bin; a key "
        "the query no longer finds is already removed"
    ),
    set_if_empty=False,
    client="switchyard.destinations.salesforce.client:SalesforceClient",
    simulator="switchyard.destinations.salesforce.simulator:create_app",
    example_config=_example,
    # Long Text Area fields hold at most 131,072 characters.
    max_field_chars=131_072,
)
