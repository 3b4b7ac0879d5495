"""The Salesforce destination: upserts and removes on one sObject, keyed by an external id.

It speaks Salesforce's REST API under `<instance_url>/services/data/<api_version>`, with
`Authorization: Bearer <token>`:

- upserts below `bulk_threshold` per batch: sObject Collections,
  `PATCH /composite/sobjects/{sobject}/{externalIdField}` with
  `{"allOrNone": false, "records": [{"attributes": {"type"}, "<field>": key, ...}]}`,
  200 records a request, answered 200 `[{"id", "success", "created", "errors"}]` in order
  (see `collections`);
- upserts from `bulk_threshold` on: one Bulk API 2.0 ingest job (`POST /jobs/ingest`, `PUT
  .../batches` CSV, `PATCH` UploadComplete, poll, `failedResults`; see `bulk`);
- removes: ids looked up with SOQL (`GET /query`), then
  `DELETE /composite/sobjects?ids=...&allOrNone=false` (see `collections`);
- preflight: `GET /limits`, which checks the token and reads the day's allocation.

Rows Salesforce turns down come back as rejections with its status code and message.
Limits, retries and rate limiting are in `api`: 403 `REQUEST_LIMIT_EXCEEDED` and 429 are
rate limiting; `Sforce-Limit-Info` holds every sender once the allocation is spent.
There is no idempotency key: re-sent batches are safe because upserts match on the external
id and a remove of a record that is gone is a success.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import httpx

from switchyard.catalog.models import Destination
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations.base import BatchOutcome
from switchyard.destinations.salesforce import bulk, collections
from switchyard.destinations.salesforce.api import SalesforceApi, resolve_token
from switchyard.destinations.salesforce.spec import SalesforceConfig
from switchyard.errors import DestinationConfigError
from switchyard.pipeline.checkpoints import Batch


class SalesforceClient:
    def __init__(
        self,
        destination: Destination,
        sync: str,
        limiter: RateLimiter,
        environment: str = "development",
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(destination.config, SalesforceConfig):
            raise DestinationConfigError(f"{destination.name} is not a Salesforce destination")
        config = destination.config
        token = resolve_token(config, environment, os.environ if env is None else env)
        self._config = config
        self._api = SalesforceApi(config, destination.name, limiter, token, transport)

    async def preflight(self) -> None:
        """Reachable, the token accepted; the day's usage primes the limiter."""
        limits = self._api.json(await self._api.request("GET", "/limits"))
        daily = limits.get("DailyApiRequests") if isinstance(limits, dict) else None
        if isinstance(daily, dict):
            remaining, allocation = daily.get("Remaining"), daily.get("Max")
            if isinstance(remaining, int) and isinstance(allocation, int):
                self._api.observe_usage(allocation - remaining, allocation)

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        upserts = [op for op in batch.operations if op.op == "upsert"]
        removes = [op.key for op in batch.operations if op.op == "remove"]
        rejections: list[tuple[str, str]] = []
        if upserts:
            if len(upserts) >= self._config.bulk_threshold:
                rejections += await bulk.upsert(self._api, upserts)
            else:
                rejections += await collections.upsert(self._api, upserts)
        if removes:
            rejections += await collections.remove(self._api, removes)
        return BatchOutcome(accepted=len(batch.operations) - len(rejections), rejections=rejections)

    async def aclose(self) -> None:
        await self._api.aclose()
