"""The generic webhook: JSON batches of operations, signed with HMAC-SHA256.

Request: `POST <url>` with `X-Switchyard-Timestamp`, `X-Switchyard-Signature: v1=<hex>`
(HMAC of "<timestamp>." + body) and a deterministic `Idempotency-Key` per batch, so a
batch re-sent after a crash is recognisable downstream. Body:
`{"batch_id", "sync", "contract_version", "operations": [{"op", "key", "fields"?, "if_empty"?}]}`
(`if_empty`: the contract's `write: if_empty` fields, which the receiver sets only when empty).
Response 200: `{"accepted": n, "rejected": [{"index", "key", "reason"}]}`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping, Sequence

import httpx
import orjson

from switchyard.catalog.models import Destination, WriteRule
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.delivery.retry_after import parse_retry_after
from switchyard.destinations.base import BatchOutcome
from switchyard.destinations.webhook.spec import WebhookConfig
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    RateLimitedError,
)
from switchyard.pipeline.checkpoints import Batch
from switchyard.settings import DEV_WEBHOOK_SECRET

SIGNATURE_HEADER = "X-Switchyard-Signature"
TIMESTAMP_HEADER = "X-Switchyard-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def resolve_secret(config: WebhookConfig, environment: str, env: Mapping[str, str]) -> bytes:
    secret = env.get(config.secret_env)
    if secret and (secret != DEV_WEBHOOK_SECRET or environment == "development"):
        return secret.encode()
    if secret:
        raise DestinationConfigError(
            f"{config.secret_env} holds the development placeholder secret; "
            f"set a real one outside development (environment is {environment!r})"
        )
    if environment == "development":
        return DEV_WEBHOOK_SECRET.encode()
    raise DestinationConfigError(
        f"environment variable {config.secret_env} (the webhook's HMAC secret) is not set"
    )


def render_body(
    batch: Batch,
    batch_id: str,
    sync: str,
    contract_version: int,
    if_empty: Sequence[str] = (),
) -> bytes:
    """Assemble the body from the warehouse-rendered field JSON without re-encoding it."""
    parts = []
    tail = b',"if_empty":' + orjson.dumps(list(if_empty)) + b"}" if if_empty else b"}"
    for operation in batch.operations:
        key = orjson.dumps(operation.key)
        if operation.op == "upsert":
            fields = (operation.fields or "{}").encode()
            parts.append(b'{"op":"upsert","key":' + key + b',"fields":' + fields + tail)
        else:
            parts.append(b'{"op":"remove","key":' + key + b"}")
    head = orjson.dumps({"batch_id": batch_id, "sync": sync, "contract_version": contract_version})
    return head[:-1] + b',"operations":[' + b",".join(parts) + b"]}"


class WebhookClient:
    def __init__(
        self,
        destination: Destination,
        sync: str,
        limiter: RateLimiter,
        environment: str = "development",
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(destination.config, WebhookConfig):
            raise DestinationConfigError(f"{destination.name} is not a webhook destination")
        self._config = destination.config
        self._name = destination.name
        self._sync = sync
        self._contract_version = destination.contract.version
        self._if_empty = tuple(
            m.name for m in destination.contract.sent_fields if m.write is WriteRule.IF_EMPTY
        )
        self._limiter = limiter
        self._secret = resolve_secret(self._config, environment, os.environ if env is None else env)
        self._http = httpx.AsyncClient(
            timeout=self._config.timeout_seconds,
            transport=transport,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )

    async def preflight(self) -> None:
        try:
            await self._http.request("OPTIONS", self._config.url, timeout=5)
        except httpx.HTTPError as error:
            raise DestinationUnavailableError(
                f"destination {self._name!r} is unreachable at {self._config.url}: "
                f"{type(error).__name__}: {error}"
            ) from error

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        body = render_body(
            batch, idempotency_key, self._sync, self._contract_version, self._if_empty
        )
        await self._limiter.acquire()
        # Signed only once the limiter lets it go: a wait behind a long Retry-After must
        # not leave a timestamp the destination rejects as stale.
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            "Idempotency-Key": idempotency_key,
        }
        try:
            response = await self._http.post(self._config.url, content=body, headers=headers)
        except httpx.TimeoutException as error:
            raise DestinationUnavailableError(f"{self._name}: request timed out") from error
        except httpx.TransportError as error:
            raise DestinationUnavailableError(
                f"{self._name}: {type(error).__name__}: {error}"
            ) from error
        return self._outcome(response, batch)

    def _outcome(self, response: httpx.Response, batch: Batch) -> BatchOutcome:
        status = response.status_code
        if status == 200:
            try:
                answer = orjson.loads(response.content)
            except orjson.JSONDecodeError as error:
                # A proxy's error page, not the receiver's answer: the batch may not have landed.
                raise DestinationUnavailableError(
                    f"{self._name}: HTTP 200 with a body that is not JSON: {response.text[:200]}"
                ) from error
            rejections = [
                (
                    str(item.get("key") or batch.operations[int(item["index"])].key),
                    str(item.get("reason") or "rejected"),
                )
                for item in answer.get("rejected") or ()
            ]
            return BatchOutcome(
                accepted=len(batch.operations) - len(rejections), rejections=rejections
            )
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        detail = response.text[:300]
        if status == 429:
            if retry_after is not None:
                self._limiter.hold_for(retry_after)
            raise RateLimitedError(f"{self._name}: rate limited (429)", retry_after)
        if status >= 500 or status == 408:
            raise DestinationUnavailableError(f"{self._name}: HTTP {status}: {detail}", retry_after)
        if status in (401, 403):
            raise DestinationRefusedError(
                f"{self._name}: HTTP {status}, credentials refused ({detail}); check the "
                f"secret in ${self._config.secret_env}",
                status,
            )
        raise DestinationRefusedError(f"{self._name}: HTTP {status}: {detail}", status)

    async def aclose(self) -> None:
        await self._http.aclose()
