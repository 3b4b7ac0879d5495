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
from switchyard.destinations import http
from switchyard.destinations.base import BatchOutcome
from switchyard.destinations.credentials import resolve_credential
from switchyard.destinations.http import CONNECTION_LIMITS
from switchyard.destinations.webhook.spec import WebhookConfig
from switchyard.errors import DestinationConfigError, DestinationUnavailableError
from switchyard.pipeline.checkpoints import Batch
from switchyard.settings import DEV_WEBHOOK_SECRET
from switchyard.warehouse.base import Dialect

SIGNATURE_HEADER = "X-Switchyard-Signature"
TIMESTAMP_HEADER = "X-Switchyard-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def resolve_secret(config: WebhookConfig, environment: str, env: Mapping[str, str]) -> bytes:
    secret = resolve_credential(
        config.secret_env, DEV_WEBHOOK_SECRET, "the webhook's HMAC secret", environment, env
    )
    return secret.encode()


def render_body(
    batch: Batch,
    batch_id: str,
    sync: str,
    contract_version: int,
    if_empty: Sequence[str] = (),
) -> bytes:
    """Assemble the body from the warehouse-rendered JSON without re-encoding it."""
    head = orjson.dumps({"batch_id": batch_id, "sync": sync, "contract_version": contract_version})
    if batch.rendered is not None:
        return head[:-1] + b',"operations":[' + batch.rendered.encode() + b"]}"
    parts = []
    tail = _if_empty_tail(if_empty).encode()
    for operation in batch.operations:
        key = orjson.dumps(operation.key)
        if operation.op == "upsert":
            fields = (operation.fields or "{}").encode()
            parts.append(b'{"op":"upsert","key":' + key + b',"fields":' + fields + tail)
        else:
            parts.append(b'{"op":"remove","key":' + key + b"}")
    return head[:-1] + b',"operations":[' + b",".join(parts) + b"]}"


def _if_empty_tail(if_empty: Sequence[str]) -> str:
    return ',"if_empty":' + orjson.dumps(list(if_empty)).decode() + "}" if if_empty else "}"


def item_sql(dialect: Dialect, if_empty: Sequence[str] = ()) -> str:
    """One operation of the body, rendered by the warehouse: the same text `render_body`
    builds in Python, so a batch reads as one string instead of a tuple per row."""
    key = dialect.json_text("key")
    tail = _if_empty_tail(if_empty).replace("'", "''")
    return (
        f"""CASE WHEN op = 'upsert' THEN '{{"op":"upsert","key":' || {key} || ',"fields":' """
        f"""|| coalesce(fields, '{{}}') || '{tail}' """
        f"""ELSE '{{"op":"remove","key":' || {key} || '}}' END"""
    )


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
            limits=CONNECTION_LIMITS,
        )

    def item_sql(self, dialect: Dialect) -> str:
        return item_sql(dialect, self._if_empty)

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
        response = await http.request(
            self._http, "POST", self._config.url, where=self._name, content=body, headers=headers
        )
        return self._outcome(response, batch)

    def _outcome(self, response: httpx.Response, batch: Batch) -> BatchOutcome:
        status = response.status_code
        if status != 200:
            raise http.status_error(
                response,
                self._limiter,
                self._name,
                response.text[:300],
                f"the secret in ${self._config.secret_env}",
            )
        answer = http.json_body(response, self._name)
        rejections = [
            (
                str(item.get("key") or batch.key_at(int(item["index"]))),
                str(item.get("reason") or "rejected"),
            )
            for item in answer.get("rejected") or ()
        ]
        return BatchOutcome(accepted=batch.size - len(rejections), rejections=rejections)

    async def aclose(self) -> None:
        await self._http.aclose()
