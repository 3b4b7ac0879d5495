"""HubSpot CRM contacts over the v3 API, authenticated with a private app's access token
(`Authorization: Bearer <token>`, from the environment variable the config names).

Upserts: `POST /crm/v3/objects/contacts/batch/upsert`
`{"inputs": [{"idProperty": <identifier>, "id": <key>, "properties": {name: "text"}}]}`,
at most 100 inputs and `max_payload_bytes` per request. 200: every row is in. 207: `errors[]`,
each `{"status", "category", "message", "context": {"ids": [...]}}`, become per-row
rejections with HubSpot's reason. A 400 `VALIDATION_ERROR` "Property values were not
valid: [...]" fails the whole batch for one bad value, so the batch is halved until each bad
row stands alone and is rejected with its reason; PROPERTY_DOESNT_EXIST (the contract maps a
property the account lacks: every row would fail) and any other 400 are fatal.

Removes: batch archive takes record ids, not emails, so `POST .../batch/read`
`{"idProperty", "inputs": [{"id"}], "properties": [idProperty]}` finds them first (a 207
`OBJECT_NOT_FOUND` means already gone), then `POST .../batch/archive`
`{"inputs": [{"id": <record id>}]}` answers 204. Contacts go to HubSpot's recycle bin.

`write: if_empty` fields: the same batch read fetches their current values first and a
field is sent only where the contact has none; a value someone types in between the read
and the write is overwritten (HubSpot offers no conditional write).

Rate limit: after every answer `X-HubSpot-RateLimit-Remaining` with
`-Interval-Milliseconds` (and `-Secondly-Remaining`, `-Daily-Remaining`) feed the limiter; a
429 (`errorType: RATE_LIMIT`, `policyName`) raises RateLimitedError with Retry-After, or with
the window's interval when HubSpot sends none (an hour for the daily limit, which resets at
midnight in the account's time zone, which the answer does not name).

Preflight: `GET /crm/v3/properties/contacts/{identifier}`: the token works, the property
exists and, unless it is email, holds unique values (HubSpot upserts by no other kind).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from switchyard.catalog.models import Destination, WriteRule
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.delivery.retry_after import parse_retry_after
from switchyard.destinations import http
from switchyard.destinations.base import BatchOutcome
from switchyard.destinations.credentials import resolve_credential
from switchyard.destinations.http import CONNECTION_LIMITS
from switchyard.destinations.hubspot.spec import DEV_HUBSPOT_TOKEN, SPEC, HubSpotConfig
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    SwitchyardError,
)
from switchyard.pipeline.checkpoints import Batch, Operation

BATCH = "/crm/v3/objects/contacts/batch"
MAX_INPUTS = SPEC.max_batch_size
DEFAULT_INTERVAL_SECONDS = 10.0  # HubSpot's burst window, when an answer does not say
DAILY_RETRY_SECONDS = 3600.0
ROW_LEVEL = "Property values were not valid"
_ENVELOPE = len(b'{"inputs":[]}')

Row = tuple[str, bytes]  # (key, the input's JSON)
Rejection = tuple[str, str]


def resolve_token(config: HubSpotConfig, environment: str, env: Mapping[str, str]) -> str:
    return resolve_credential(
        config.token_env,
        DEV_HUBSPOT_TOKEN,
        "the HubSpot private app's access token",
        environment,
        env,
    )


def property_text(value: Any) -> str:
    """A warehouse value as HubSpot takes it: every property value is a string."""
    if value is None:
        return ""  # HubSpot clears a property set to the empty string
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(property_text(v) for v in value)  # multiple-choice properties
    return orjson.dumps(value).decode()


def request_slices(sizes: Sequence[int], max_inputs: int, max_bytes: int) -> list[slice]:
    """Consecutive runs of inputs that fit a request (an oversized one goes alone)."""
    out: list[slice] = []
    start, size = 0, _ENVELOPE
    for i, n in enumerate(sizes):
        extra = n + (1 if i > start else 0)  # the comma
        if i > start and (i - start >= max_inputs or size + extra > max_bytes):
            out.append(slice(start, i))
            start, size, extra = i, _ENVELOPE, n
        size += extra
    if start < len(sizes):
        out.append(slice(start, len(sizes)))
    return out


def _envelope(parts: Sequence[bytes]) -> bytes:
    return b'{"inputs":[' + b",".join(parts) + b"]}"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _interval(headers: httpx.Headers) -> float | None:
    millis = _int(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds"))
    return millis / 1000 if millis and millis > 0 else None


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def _reason(error: Mapping[str, Any]) -> str:
    """`CODE: message`, with the most specific code HubSpot gave (INVALID_EMAIL, ...)."""
    details = [d for d in error.get("errors") or () if isinstance(d, Mapping)]
    code = next((str(d["code"]) for d in details if d.get("code")), None)
    return f"{code or error.get('category') or 'ERROR'}: {error.get('message') or 'rejected'}"


def row_problems(answer: Any) -> list[Mapping[str, Any]] | None:
    """The per-value problems of a 400 that one bad row caused, or None for other 400s."""
    if not isinstance(answer, Mapping) or answer.get("category") != "VALIDATION_ERROR":
        return None
    message = str(answer.get("message") or "")
    if not message.startswith(ROW_LEVEL):
        return None
    try:
        problems = orjson.loads(message[message.index("[") :])
    except (ValueError, orjson.JSONDecodeError):
        return []
    return [p for p in problems if isinstance(p, Mapping)] if isinstance(problems, list) else []


class HubSpotClient:
    def __init__(
        self,
        destination: Destination,
        sync: str,
        limiter: RateLimiter,
        environment: str = "development",
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_payload_bytes: int = SPEC.max_payload_bytes,
    ) -> None:
        if not isinstance(destination.config, HubSpotConfig):
            raise DestinationConfigError(f"{destination.name} is not a HubSpot destination")
        self._config = destination.config
        self._name = destination.name
        self._sync = sync
        self._limiter = limiter
        self._max_bytes = max_payload_bytes
        contract = destination.contract
        self._id_property = contract.identifier.name
        self._if_empty = frozenset(
            m.name for m in contract.sent_fields if m.write is WriteRule.IF_EMPTY
        )
        token = resolve_token(self._config, environment, os.environ if env is None else env)
        self._http = httpx.AsyncClient(
            base_url=self._config.base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=self._config.timeout_seconds,
            transport=transport,
            limits=CONNECTION_LIMITS,
        )

    # -- the port ----------------------------------------------------------------------------

    async def preflight(self) -> None:
        name = self._id_property
        response = await self._request("GET", f"/crm/v3/properties/contacts/{quote(name)}")
        if response.status_code == 404:
            raise DestinationConfigError(
                f"{self._name}: HubSpot has no contact property {name!r} (contract.identifier.name)"
            )
        if response.status_code != 200:
            raise self._refused(response)
        definition = _json(response)
        if name != "email" and not (
            isinstance(definition, Mapping) and definition.get("hasUniqueValue")
        ):
            raise DestinationConfigError(
                f"{self._name}: HubSpot upserts contacts by email or by a property with unique "
                f"values, and {name!r} (contract.identifier.name) does not hold unique values"
            )

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        # HubSpot has no idempotency key: an upsert by idProperty and an archive of what is
        # gone already are safe to repeat, so a re-sent batch changes nothing.
        upserts = [op for op in batch.operations if op.op == "upsert"]
        removes = [op.key for op in batch.operations if op.op == "remove"]
        rejections = await self._send_upserts(upserts) if upserts else []
        if removes:
            await self._archive(removes)
        return BatchOutcome(accepted=len(batch.operations) - len(rejections), rejections=rejections)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- upserts -----------------------------------------------------------------------------

    async def _send_upserts(self, operations: Sequence[Operation]) -> list[Rejection]:
        parsed: list[tuple[str, dict[str, Any]]] = [
            (op.key, orjson.loads(op.fields or "{}")) for op in operations
        ]
        if self._if_empty and any(self._if_empty & fields.keys() for _, fields in parsed):
            current = await self._lookup([key for key, _ in parsed], sorted(self._if_empty))
            parsed = [(key, self._unless_set(fields, current.get(key))) for key, fields in parsed]
        rows: list[Row] = [
            (
                key,
                orjson.dumps(
                    {
                        "idProperty": self._id_property,
                        "id": key,
                        "properties": {n: property_text(v) for n, v in fields.items()},
                    }
                ),
            )
            for key, fields in parsed
        ]
        rejections: list[Rejection] = []
        for part in request_slices([len(body) for _, body in rows], MAX_INPUTS, self._max_bytes):
            rejections += await self._upsert(rows[part])
        return rejections

    def _unless_set(
        self, fields: dict[str, Any], current: tuple[str, Mapping[str, Any]] | None
    ) -> dict[str, Any]:
        """Drop the `if_empty` fields the contact has a value for, and null ones."""
        values = current[1] if current else {}
        return {
            name: value
            for name, value in fields.items()
            if name not in self._if_empty or (value is not None and values.get(name) in (None, ""))
        }

    async def _upsert(self, rows: Sequence[Row]) -> list[Rejection]:
        response = await self._request(
            "POST", f"{BATCH}/upsert", _envelope([body for _, body in rows])
        )
        status = response.status_code
        if status in (200, 207):
            return self._row_errors(response, rows)
        answer = _json(response)
        problems = row_problems(answer) if status == 400 else None
        if problems is None and not (status == 413 and len(rows) > 1):
            raise self._refused(response)
        missing = sorted(
            {
                str(p.get("name"))
                for p in problems or ()
                if p.get("error") == "PROPERTY_DOESNT_EXIST"
            }
        )
        if missing:
            raise DestinationRefusedError(
                f"{self._name}: HubSpot has no contact property {', '.join(missing)}; create "
                "it in HubSpot or change the contract's field names",
                status,
            )
        if len(rows) == 1:
            reasons = [f"{p.get('error')}: {p.get('message')}" for p in problems or ()]
            detail = "; ".join(reasons) or f"HTTP {status}: {response.text[:300]}"
            return [(rows[0][0], detail)]
        # One bad value fails the whole request: halve until the bad rows stand alone.
        middle = len(rows) // 2
        return await self._upsert(rows[:middle]) + await self._upsert(rows[middle:])

    def _row_errors(self, response: httpx.Response, rows: Sequence[Row]) -> list[Rejection]:
        answer = _json(response)
        if not isinstance(answer, Mapping):
            # A proxy's page, not HubSpot's answer: whether the rows landed is unknown.
            raise DestinationUnavailableError(
                f"{self._name}: HTTP {response.status_code} with a body that is not HubSpot's "
                f"JSON: {response.text[:200]}"
            )
        errors = [e for e in answer.get("errors") or () if isinstance(e, Mapping)]
        if not errors:
            return []
        keys = {self._same(key): key for key, _ in rows}
        rejected: dict[str, str] = {}
        unattributed: list[str] = []
        for error in errors:
            context = error.get("context") if isinstance(error.get("context"), Mapping) else {}
            named = [
                keys[self._same(v)]
                for values in (context or {}).values()
                if isinstance(values, list)
                for v in values
                if isinstance(v, str) and self._same(v) in keys
            ]
            for key in named:
                rejected.setdefault(key, _reason(error))
            if not named:
                unattributed.append(_reason(error))
        if unattributed:
            # An error naming no row we sent: only rows HubSpot confirmed count as delivered.
            confirmed = {
                self._same(str(result["properties"].get(self._id_property)))
                for result in answer.get("results") or ()
                if isinstance(result, Mapping) and isinstance(result.get("properties"), Mapping)
            }
            for key, _ in rows:
                if key not in rejected and self._same(key) not in confirmed:
                    rejected[key] = unattributed[0]
        return list(rejected.items())

    def _same(self, value: str) -> str:
        """HubSpot matches emails case-insensitively and answers them lowercased."""
        return value.strip().lower() if self._id_property == "email" else value

    # -- reads and removes -------------------------------------------------------------------

    async def _lookup(
        self, keys: Sequence[str], names: Sequence[str]
    ) -> dict[str, tuple[str, Mapping[str, Any]]]:
        """key → (record id, properties) for the contacts that exist, by batch read."""
        found: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for chunk in http.chunked(keys, MAX_INPUTS):
            body = orjson.dumps(
                {
                    "idProperty": self._id_property,
                    "inputs": [{"id": key} for key in chunk],
                    "properties": [self._id_property, *names],
                }
            )
            response = await self._request("POST", f"{BATCH}/read", body)
            answer = _json(response)
            if response.status_code not in (200, 207) or not isinstance(answer, Mapping):
                raise self._refused(response)
            others = [
                _reason(e)
                for e in answer.get("errors") or ()
                if isinstance(e, Mapping) and e.get("category") != "OBJECT_NOT_FOUND"
            ]
            if others:
                # Unread contacts would have their if_empty fields overwritten or not removed.
                raise DestinationUnavailableError(f"{self._name}: batch read failed: {others[0]}")
            wanted = {self._same(key): key for key in chunk}
            for result in answer.get("results") or ():
                properties = result.get("properties") if isinstance(result, Mapping) else None
                if not isinstance(properties, Mapping):
                    continue
                key = wanted.get(self._same(str(properties.get(self._id_property) or "")))
                if key is not None:
                    found[key] = (str(result.get("id")), properties)
        return found

    async def _archive(self, keys: Sequence[str]) -> None:
        record_ids = [record_id for record_id, _ in (await self._lookup(keys, [])).values()]
        for chunk in http.chunked(record_ids, MAX_INPUTS):
            body = orjson.dumps({"inputs": [{"id": record_id} for record_id in chunk]})
            response = await self._request("POST", f"{BATCH}/archive", body)
            if response.status_code not in (200, 204):
                raise self._refused(response)

    # -- one request, and what its status means ----------------------------------------------

    async def _request(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        """One paced request; 429, 5xx, 408, 401 and 403 raise, other answers are returned."""
        await self._limiter.acquire()
        response = await http.request(
            self._http, method, path, where=f"{self._name}: {method} {path}", content=body
        )
        self._observe(response.headers)
        if response.status_code < 400:
            return response
        error = self._failure(response)
        if error is not None:
            raise error
        return response

    def _failure(self, response: httpx.Response) -> SwitchyardError | None:
        status = response.status_code
        detail = self._describe(response)
        wait = None
        if status == 429:
            policy, wait = self._rate_limit(response)
            detail = f"{policy}, retrying after {wait:g}s: {detail}"
        retryable = http.retryable_error(response, self._limiter, self._name, detail, wait=wait)
        if retryable is not None or status not in (401, 403):
            return retryable
        return self._refused(response)

    def _observe(self, headers: httpx.Headers) -> None:
        limiter = self._limiter
        limiter.observe(_int(headers.get("X-HubSpot-RateLimit-Remaining")), _interval(headers))
        limiter.observe(_int(headers.get("X-HubSpot-RateLimit-Secondly-Remaining")), 1.0)
        limiter.observe(
            _int(headers.get("X-HubSpot-RateLimit-Daily-Remaining")), DAILY_RETRY_SECONDS
        )

    def _rate_limit(self, response: httpx.Response) -> tuple[str, float]:
        """(policy, seconds to wait) of a 429: Retry-After when HubSpot sends one, else
        the window's interval (a day's wait for the daily limit)."""
        answer = _json(response)
        policy = str(answer.get("policyName") or "") if isinstance(answer, Mapping) else ""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            interval = _interval(response.headers)
            if policy == "DAILY":
                retry_after = DAILY_RETRY_SECONDS
            elif interval is not None:
                # Whole seconds: a client waiting a hair less than the window is refused again.
                retry_after = float(max(1, math.ceil(interval)))
            else:
                retry_after = DEFAULT_INTERVAL_SECONDS
        return policy or "RATE_LIMIT", retry_after

    def _describe(self, response: httpx.Response) -> str:
        answer = _json(response)
        if isinstance(answer, Mapping) and answer.get("message"):
            return f"{answer.get('category') or 'error'}: {answer['message']}"
        return response.text[:300]

    def _refused(self, response: httpx.Response) -> DestinationRefusedError:
        return http.refused_error(
            response,
            self._name,
            self._describe(response),
            f"the private app token in ${self._config.token_env} and its scopes",
        )
