"""Braze's REST API for user profiles: attributes through /users/track, plus delete and merge.

Every request carries `Authorization: Bearer <REST API key>` and a JSON body.

    POST /users/track   {"attributes": [{"external_id": k, <attribute>: value, ...}, ...]}
        at most 75 objects (attributes, events and purchases together), 4 MB per body;
        201 {"message": "success", "attributes_processed": n} and, for objects it turned
        down, "errors": [{"type": <reason>, "input_array": "attributes", "index": i}]
    POST /users/delete  {"external_ids": [...]} (or user_aliases, email_addresses,
        phone_numbers), at most 50; 2xx {"deleted": n, "message": "success"}
    POST /users/merge   {"merge_updates": [{"identifier_to_merge": {...},
        "identifier_to_keep": {...}}]}, at most 50; 202 {"message": "success"} (Braze
        merges later, asynchronously)

Whole-request failures: 400 (malformed, over 75 objects), 401/403 (key unknown or
without the permission), 413 (over 4 MB), 429 (rate limited), 5xx. Every response
carries X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (the UNIX time the
window resets); they feed the limiter, so a spent window holds every sender instead of
being discovered through a 429.

An upsert sets the row's fields on the profile (a partial update, so attributes written
by others stay). A remove unsets the synced attributes (null) with
`_update_existing_only: true`, so it never creates a profile and never deletes one.
Attribute updates are idempotent: a batch retried after a partial send rewrites the same
values.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import orjson

from switchyard.catalog.models import Destination, RateLimit
from switchyard.delivery.ratelimit import (
    DELIVERY_BURST_SECONDS,
    DELIVERY_HEADROOM,
    RateLimiter,
)
from switchyard.destinations import http
from switchyard.destinations.base import BatchOutcome
from switchyard.destinations.braze.spec import SPEC, BrazeConfig
from switchyard.destinations.credentials import resolve_credential
from switchyard.destinations.http import CONNECTION_LIMITS
from switchyard.errors import DestinationConfigError, DestinationUnavailableError, SwitchyardError
from switchyard.pipeline.checkpoints import Batch

log = logging.getLogger(__name__)

DEV_API_KEY = "dev-only-braze-api-key"
TRACK_MAX_OBJECTS = SPEC.max_batch_size
DELETE_MAX_IDS = 50
MERGE_MAX_UPDATES = 50
# /users/delete, /users/merge (and alias/identify) share 20,000 requests a minute.
USERS_ADMIN_LIMIT = RateLimit(requests=20_000, per_seconds=60)
# Braze's windows are at most a minute for the endpoints used here; a reset further out
# than this is clock skew between us and Braze, not a reason to stop sending for longer.
MAX_RESET_WAIT = 60.0
# Keys that identify a user or steer the update in an attributes object: never attributes.
_RESERVED_KEYS = frozenset(
    {"external_id", "braze_id", "user_alias", "_update_existing_only", "push_token_import"}
)
_DELETE_LISTS = {
    "external_id": "external_ids",
    "user_alias": "user_aliases",
    "email": "email_addresses",
    "phone": "phone_numbers",
}


def resolve_api_key(config: BrazeConfig, environment: str, env: Mapping[str, str]) -> str:
    return resolve_credential(
        config.api_key_env, DEV_API_KEY, "the Braze REST API key", environment, env
    )


def _number(headers: httpx.Headers, name: str) -> float | None:
    try:
        value = float(headers[name])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def rate_limit_window(headers: httpx.Headers, now: float) -> tuple[int | None, float | None]:
    """(remaining, seconds until the window resets) from Braze's X-RateLimit-* headers."""
    remaining = _number(headers, "X-RateLimit-Remaining")
    reset = _number(headers, "X-RateLimit-Reset")
    resets_in: float | None = None
    if reset is not None:
        # Braze sends a UNIX time; a small number can only be a delay in seconds.
        resets_in = reset - now if reset > 1_000_000_000 else reset
        resets_in = min(MAX_RESET_WAIT, max(0.0, resets_in))
    return (None if remaining is None else int(remaining)), resets_in


class BrazeClient:
    def __init__(
        self,
        destination: Destination,
        sync: str,
        limiter: RateLimiter,
        environment: str = "development",
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        admin_limiter: RateLimiter | None = None,
        max_payload_bytes: int = SPEC.max_payload_bytes,
    ) -> None:
        config = destination.config
        if not isinstance(config, BrazeConfig):
            raise DestinationConfigError(f"{destination.name} is not a Braze destination")
        contract = destination.contract
        # Which identifiers Braze matches on is checked against the spec with the catalog.
        identifier = contract.identifier.name
        if identifier == "user_alias" and config.alias_label is None:
            raise DestinationConfigError(
                f"{destination.name}: identifier user_alias needs config.alias_label "
                "(a Braze alias is a name within a label)"
            )
        reserved = [m.name for m in contract.sent_fields if m.name in _RESERVED_KEYS]
        if reserved:
            raise DestinationConfigError(
                f"{destination.name}: {', '.join(reserved)} are reserved by Braze's "
                "attributes object (identity and update flags), not attributes to write"
            )
        self._config = config
        self._name = destination.name
        self._identifier = identifier
        self._limiter = limiter
        # The delete/merge family has its own allowance at Braze, so its own pacing here:
        # its headers must not hold the senders of /users/track, nor the reverse.
        self._admin_limiter = admin_limiter or RateLimiter(
            USERS_ADMIN_LIMIT, headroom=DELIVERY_HEADROOM, burst_seconds=DELIVERY_BURST_SECONDS
        )
        self._max_payload_bytes = max_payload_bytes
        # What a remove unsets: the synced fields a null may overwrite (send_nulls: false
        # says the opposite, so those stay as they are).
        self._unset = {m.name: None for m in contract.sent_fields if m.send_nulls}
        api_key = resolve_api_key(config, environment, os.environ if env is None else env)
        self._http = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            timeout=config.timeout_seconds,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            limits=CONNECTION_LIMITS,
        )

    # -- the destination port ------------------------------------------------------------

    async def preflight(self) -> None:
        """An empty /users/track: Braze checks the key (401) before the body (400)."""
        await self._limiter.acquire()
        response = await self._post("/users/track", b'{"attributes":[]}')
        self._observe(response, self._limiter)
        if response.is_success or response.status_code == 400:
            return
        raise self._error(response, self._limiter)

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        rejections: list[tuple[str, str]] = []
        objects: list[tuple[str, bytes]] = []
        for operation in batch.operations:
            encoded = self._attributes_object(operation.op, operation.key, operation.fields)
            if encoded is not None:
                objects.append((operation.key, encoded))
        for request in self._requests(objects, rejections):
            rejections.extend(await self._track(request))
        return BatchOutcome(accepted=len(batch.operations) - len(rejections), rejections=rejections)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- privacy deletion and identity merges ----------------------------------------------

    async def delete_users(self, keys: Sequence[str]) -> int:
        """Delete the profiles of `keys` (irreversible); returns how many Braze queued."""
        deleted = 0
        for chunk in http.chunked(keys, DELETE_MAX_IDS):
            items = [self._delete_item(key) for key in chunk]
            body = orjson.dumps({_DELETE_LISTS[self._identifier]: items})
            answer = await self._admin("/users/delete", body)
            deleted += int(answer.get("deleted") or 0)
        return deleted

    async def merge_users(self, pairs: Sequence[tuple[str, str]]) -> int:
        """Fold each (key_to_merge, key_to_keep) pair; Braze applies them asynchronously.

        The kept profile keeps its own attributes and gains those only the merged one had;
        the merged profile is then deleted. Returns how many merges were submitted.
        """
        for chunk in http.chunked(pairs, MERGE_MAX_UPDATES):
            updates = [
                {
                    "identifier_to_merge": self._merge_identifier(merge),
                    "identifier_to_keep": self._merge_identifier(keep),
                }
                for merge, keep in chunk
            ]
            await self._admin("/users/merge", orjson.dumps({"merge_updates": updates}))
        return len(pairs)

    # -- bodies --------------------------------------------------------------------------

    def _identify(self, key: str) -> dict[str, Any]:
        if self._identifier == "user_alias":
            # Braze updates alias-only profiles without creating them unless told otherwise.
            alias = {"alias_name": key, "alias_label": self._config.alias_label}
            return {"user_alias": alias, "_update_existing_only": False}
        return {self._identifier: key}

    def _attributes_object(self, op: str, key: str, fields: str | None) -> bytes | None:
        if op == "upsert":
            values = orjson.loads(fields) if fields else {}
            return orjson.dumps({**self._identify(key), **values})
        if not self._unset:
            return None  # nothing of ours to unset: leaving the audience changes nothing there
        return orjson.dumps({**self._identify(key), **self._unset, "_update_existing_only": True})

    def _delete_item(self, key: str) -> Any:
        if self._identifier == "external_id":
            return key
        if self._identifier == "user_alias":
            return {"alias_name": key, "alias_label": self._config.alias_label}
        return {self._identifier: key, "prioritization": list(self._config.prioritization)}

    def _merge_identifier(self, key: str) -> dict[str, Any]:
        if self._identifier in ("email", "phone"):
            return {self._identifier: key, "prioritization": list(self._config.prioritization)}
        return {k: v for k, v in self._identify(key).items() if k != "_update_existing_only"}

    def _requests(
        self, objects: list[tuple[str, bytes]], rejections: list[tuple[str, str]]
    ) -> Iterator[list[tuple[str, bytes]]]:
        """Group objects into requests within Braze's object count and body size."""
        overhead = len(b'{"attributes":[]}')
        request: list[tuple[str, bytes]] = []
        size = overhead
        for key, encoded in objects:
            if overhead + len(encoded) > self._max_payload_bytes:
                rejections.append(
                    (
                        key,
                        f"attributes object of {len(encoded)} bytes exceeds Braze's request "
                        f"limit of {self._max_payload_bytes} bytes",
                    )
                )
                continue
            if request and (
                len(request) == TRACK_MAX_OBJECTS
                or size + 1 + len(encoded) > self._max_payload_bytes
            ):
                yield request
                request, size = [], overhead
            size += len(encoded) + (1 if request else 0)
            request.append((key, encoded))
        if request:
            yield request

    # -- requests ------------------------------------------------------------------------

    async def _track(self, request: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
        body = b'{"attributes":[' + b",".join(encoded for _, encoded in request) + b"]}"
        await self._limiter.acquire()
        response = await self._post("/users/track", body)
        answer = self._answer(response, self._limiter)
        reasons: dict[int, list[str]] = {}
        for error in answer.get("errors") or ():
            index = error.get("index") if isinstance(error, dict) else None
            if (
                isinstance(error, dict)
                and error.get("input_array") == "attributes"
                and type(index) is int
                and 0 <= index < len(request)
            ):
                reasons.setdefault(index, []).append(str(error.get("type") or "rejected"))
            else:
                log.warning(
                    "%s: Braze reported an error for no attributes object: %r", self._name, error
                )
        return [(request[i][0], "; ".join(reasons[i])) for i in sorted(reasons)]

    async def _admin(self, path: str, body: bytes) -> dict[str, Any]:
        await self._admin_limiter.acquire()
        return self._answer(await self._post(path, body), self._admin_limiter)

    async def _post(self, path: str, body: bytes) -> httpx.Response:
        return await http.request(
            self._http, "POST", path, where=f"{self._name}: {path}", content=body
        )

    # -- answers -------------------------------------------------------------------------

    def _observe(self, response: httpx.Response, limiter: RateLimiter) -> None:
        limiter.observe(*rate_limit_window(response.headers, time.time()))

    def _answer(self, response: httpx.Response, limiter: RateLimiter) -> dict[str, Any]:
        """The parsed body of a 2xx answer; otherwise the error its status means."""
        self._observe(response, limiter)
        if not response.is_success:
            raise self._error(response, limiter)
        answer = http.json_body(response, self._name)
        if not isinstance(answer, dict):
            raise DestinationUnavailableError(
                f"{self._name}: HTTP {response.status_code} with an unexpected body: "
                f"{response.text[:200]}"
            )
        return answer

    def _error(self, response: httpx.Response, limiter: RateLimiter) -> SwitchyardError:
        # Without Retry-After, a 429 waits for the window Braze says resets.
        _, resets_in = rate_limit_window(response.headers, time.time())
        return http.status_error(
            response,
            limiter,
            f"{self._name}: {response.request.url.path}",
            response.text[:300],
            f"the key in ${self._config.api_key_env} and its users.* permissions",
            wait=max(1.0, resets_in) if resets_in is not None else None,
        )
