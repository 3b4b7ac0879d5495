"""Meta Custom Audiences over the Graph API: hashed people in, hashed people out.

Requests (form-encoded bodies, the access token among the form fields, never in the URL):
- `POST   {base_url}/{api_version}/{audience_id}/users` adds rows to the audience;
- `DELETE {base_url}/{api_version}/{audience_id}/users` removes them (same body; Meta's SDK
  puts these parameters in the query string instead, which caps a request at what a URL
  can carry, so this client keeps them in the body);
- `POST   {base_url}/{api_version}/{audience_id}/usersreplace` with a `session` field
  (`session_id`, `batch_seq`, `last_batch_flag`, `estimated_num_total`) replaces the
  audience's members with a session's rows once the last batch arrives (`replace`; full
  resync runs do not use it yet).
`payload` is JSON: `{"schema": "EMAIL_SHA256", "data": [<hash>, ...]}` for one match key, or
`{"schema": ["EMAIL", "PHONE", "FN", "LN"], "data": [[<hash>, <hash or "">, ...], ...]}` when
the contract maps extra match keys. At most 10,000 rows per request. `preflight` reads
`GET .../{audience_id}?fields=id`.

Every value is normalised by `switchyard.identity.normalise` and SHA-256 hashed here:
emails trimmed and lowercased, phones as digits with the country code and no "+" (Meta's
form; Google's differs), names lowercase letters only. A row whose identifier does not
normalise is not sent; it comes back as a rejection with the reason.

Answer 200: `{"audience_id", "session_id", "num_received", "num_invalid_entries",
"invalid_entry_samples": {<value as sent>: <reason>}}`. Rows named by a sample become
rejections with Meta's reason. Meta may count invalid rows without naming them all: the
client then re-sends the unnamed rows in halves (adding or removing the same people again
changes nothing), each answer naming or ruling out more of them, for at most
`attribution_requests` extra requests; rows still in a group Meta counted but never named
are rejected together with a reason that says so, and are sent again next run.

Errors: `{"error": {"message", "type", "code", "error_subcode", "is_transient",
"fbtrace_id"}}`. Codes 4, 17, 32, 613 and the business-use-case family 80000-80099 (80003:
custom audiences) are rate limits -> RateLimitedError, waiting `Retry-After` when present,
else `estimated_time_to_regain_access` (minutes) from `X-Business-Use-Case-Usage`; codes 1
and 2, `is_transient` and 5xx are retryable; 190 (and 102/104) means the token was refused:
fatal, like any other 4xx. After every answer the usage header feeds the rate limiter: at
100 % of any budget every sender waits for the regain time.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlencode

import httpx
import orjson

from switchyard.catalog.models import Destination
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations import http
from switchyard.destinations.base import BatchOutcome
from switchyard.destinations.credentials import resolve_credential
from switchyard.destinations.http import CONNECTION_LIMITS
from switchyard.destinations.meta.spec import (
    DEV_META_ACCESS_TOKEN,
    MATCH_KEYS,
    MAX_ROWS,
    SPEC,
    MetaConfig,
)
from switchyard.errors import DestinationConfigError, DestinationUnavailableError
from switchyard.identity.normalise import (
    hash_email,
    hash_name_for_meta,
    hash_phone_for_meta,
)
from switchyard.pipeline.checkpoints import Batch, Operation

log = logging.getLogger(__name__)

USAGE_HEADER = "X-Business-Use-Case-Usage"
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80000, 80100)})
TRANSIENT_CODES = frozenset({1, 2})
TOKEN_CODES = frozenset({102, 104, 190})
SINGLE_KEY_SCHEMAS = {"EMAIL": "EMAIL_SHA256", "PHONE": "PHONE_SHA256"}


@dataclass(frozen=True)
class Row:
    key: str  # the operation's key, to report rejections by
    values: tuple[str, ...]  # hashes in schema order, "" where the person has none


@dataclass(frozen=True)
class Answer:
    num_received: int
    num_invalid: int
    samples: dict[str, str]


@dataclass(frozen=True)
class ReplaceSession:
    """One request's place in a `usersreplace` session; batch_seq counts from 1."""

    session_id: int
    batch_seq: int
    last_batch_flag: bool
    estimated_num_total: int | None = None

    def as_param(self) -> str:
        session: dict[str, Any] = {
            "session_id": self.session_id,
            "batch_seq": self.batch_seq,
            "last_batch_flag": self.last_batch_flag,
        }
        if self.estimated_num_total is not None:
            session["estimated_num_total"] = self.estimated_num_total
        return orjson.dumps(session).decode()


def resolve_token(config: MetaConfig, environment: str, env: Mapping[str, str]) -> str:
    return resolve_credential(
        config.token_env, DEV_META_ACCESS_TOKEN, "the Meta access token", environment, env
    )


def parse_usage(value: str | None) -> tuple[float, float] | None:
    """(highest percentage of any budget used, seconds until access returns) from
    `X-Business-Use-Case-Usage`, or None when absent or unreadable.

    The header maps business ids to lists of use cases; custom-audience entries are the
    ones that throttle this edge, so they are read when present, any entry otherwise.
    """
    if not value:
        return None
    try:
        usage = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(usage, dict):
        return None
    entries = [e for v in usage.values() if isinstance(v, list) for e in v if isinstance(e, dict)]
    audiences = [e for e in entries if e.get("type") == "CUSTOM_AUDIENCE"]
    chosen = audiences or entries
    if not chosen:
        return None
    percent = max(
        _number(e.get(name))
        for e in chosen
        for name in ("call_count", "total_cputime", "total_time")
    )
    regain_minutes = max(_number(e.get("estimated_time_to_regain_access")) for e in chosen)
    return percent, regain_minutes * 60


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class MetaAudienceClient:
    def __init__(
        self,
        destination: Destination,
        sync: str,
        limiter: RateLimiter,
        environment: str = "development",
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(destination.config, MetaConfig):
            raise DestinationConfigError(f"{destination.name} is not a Meta destination")
        config = destination.config
        contract = destination.contract
        self._config = config
        self._name = destination.name
        self._limiter = limiter
        self._token = resolve_token(config, environment, os.environ if env is None else env)
        self._region = config.default_phone_region or contract.default_phone_region
        identifier = contract.identifier.name  # email or phone: the catalog checks the spec
        extra = [m.name for m in contract.sent_fields]
        unknown = [name for name in extra if name not in MATCH_KEYS]
        if unknown:
            raise DestinationConfigError(
                f"{self._name}: fields {', '.join(unknown)} are not Meta match keys "
                f"(use {', '.join(MATCH_KEYS)})"
            )
        self._columns = (identifier, *extra)
        self._audience_url = f"{config.base_url}/{config.api_version}/{config.audience_id}"
        self._max_bytes = SPEC.max_payload_bytes
        self._http = httpx.AsyncClient(
            timeout=config.timeout_seconds,
            transport=transport,
            limits=CONNECTION_LIMITS,
        )

    # -- the port --------------------------------------------------------------------------

    async def preflight(self) -> None:
        """Read the audience: proves the token works and the audience is ours."""
        await self._limiter.acquire()
        response = await self._request(
            "GET", self._audience_url, params={"fields": "id", "access_token": self._token}
        )
        if response.status_code != 200:
            self._raise_for(response)
        self._observe(response)

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        """Add the batch's upserts to the audience and remove its removes.

        Meta has no idempotency key; adding a member twice or removing an absent one
        changes nothing, which is what makes a re-sent batch safe.
        """
        rejections: list[tuple[str, str]] = []
        for op, method, columns in (
            ("upsert", "POST", self._columns),
            ("remove", "DELETE", self._columns[:1]),
        ):
            operations = [o for o in batch.operations if o.op == op]
            if not operations:
                continue
            rows, refused = self._rows(operations, columns)
            rejections.extend(refused)
            for chunk, body in self._requests(rows, columns):
                rejections.extend(await self._deliver(method, chunk, columns, body))
        return BatchOutcome(accepted=len(batch.operations) - len(rejections), rejections=rejections)

    async def replace(
        self, operations: Sequence[Operation], session: ReplaceSession
    ) -> BatchOutcome:
        """One batch of a `usersreplace` session: at the last batch, Meta swaps the
        audience's members for the session's rows. One request, so at most 10,000 rows."""
        if any(o.op != "upsert" for o in operations):
            raise ValueError("a replace session carries only the members to keep (upserts)")
        if len(operations) > MAX_ROWS:
            raise ValueError(f"a replace batch holds at most {MAX_ROWS} rows")
        rows, rejections = self._rows(operations, self._columns)
        extra = {"session": session.as_param()}
        body = self._body(rows, self._columns, extra)
        if len(body) > self._max_bytes:
            raise ValueError(f"replace batch body is {len(body)} bytes, over {self._max_bytes}")
        url = self._audience_url + "/usersreplace"
        answer = await self._call("POST", url, body, len(rows))
        # No probing for unnamed rows here: re-sending a batch_seq is not a question.
        rejections.extend(await self._locate("POST", url, rows, self._columns, answer, 0))
        return BatchOutcome(accepted=len(operations) - len(rejections), rejections=rejections)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- rows -----------------------------------------------------------------------------

    @property
    def schema(self) -> list[str]:
        return [MATCH_KEYS[c] for c in self._columns]

    def _rows(
        self, operations: Sequence[Operation], columns: Sequence[str]
    ) -> tuple[list[Row], list[tuple[str, str]]]:
        rows: list[Row] = []
        refused: list[tuple[str, str]] = []
        identifier = columns[0]
        for operation in operations:
            own = self._hash(identifier, operation.key)
            if own is None:
                refused.append((operation.key, f"not a valid {identifier}: cannot be matched"))
                continue
            fields: dict[str, Any] = {}
            if len(columns) > 1 and operation.fields:
                fields = orjson.loads(operation.fields)
            extra = [self._hash(c, fields.get(c)) or "" for c in columns[1:]]
            rows.append(Row(operation.key, (own, *extra)))
        return rows, refused

    def _hash(self, column: str, value: object) -> str | None:
        if not isinstance(value, str):
            return None
        if column == "email":
            return hash_email(value)
        if column == "phone":
            return hash_phone_for_meta(value, self._region)
        return hash_name_for_meta(value)

    def _payload(self, rows: Sequence[Row], columns: Sequence[str]) -> bytes:
        keys = [MATCH_KEYS[c] for c in columns]
        if len(keys) == 1:
            return orjson.dumps(
                {"schema": SINGLE_KEY_SCHEMAS[keys[0]], "data": [r.values[0] for r in rows]}
            )
        return orjson.dumps({"schema": keys, "data": [list(r.values) for r in rows]})

    def _body(
        self, rows: Sequence[Row], columns: Sequence[str], extra: Mapping[str, str] | None = None
    ) -> bytes:
        form = {"payload": self._payload(rows, columns).decode(), **(extra or {})}
        form["access_token"] = self._token
        return urlencode(form).encode()

    def _requests(
        self, rows: list[Row], columns: Sequence[str]
    ) -> Iterator[tuple[list[Row], bytes]]:
        """Requests of at most 10,000 rows and `max_payload_bytes` each."""
        for start in range(0, len(rows), MAX_ROWS):
            yield from self._fit(rows[start : start + MAX_ROWS], columns)

    def _fit(self, rows: list[Row], columns: Sequence[str]) -> Iterator[tuple[list[Row], bytes]]:
        body = self._body(rows, columns)
        if len(body) <= self._max_bytes or len(rows) == 1:
            yield rows, body
            return
        middle = len(rows) // 2
        yield from self._fit(rows[:middle], columns)
        yield from self._fit(rows[middle:], columns)

    # -- delivery and attribution ----------------------------------------------------------

    async def _deliver(
        self, method: str, rows: list[Row], columns: Sequence[str], body: bytes
    ) -> list[tuple[str, str]]:
        url = self._audience_url + "/users"
        answer = await self._call(method, url, body, len(rows))
        return await self._locate(
            method, url, rows, columns, answer, self._config.attribution_requests
        )

    async def _locate(
        self,
        method: str,
        url: str,
        rows: list[Row],
        columns: Sequence[str],
        answer: Answer,
        budget: int,
    ) -> list[tuple[str, str]]:
        """The rows Meta found invalid, with reasons, located as the module docstring says."""
        rejected = self._named(answer, rows)
        # Groups of row positions holding `count` invalid rows Meta has not named yet.
        pending = [
            ([i for i in range(len(rows)) if i not in rejected], answer.num_invalid - len(rejected))
        ]
        while pending:
            group, count = pending.pop()
            if count <= 0:
                continue
            if count >= len(group) or budget <= 0:
                rejected.update(self._unnamed(group, count))
                continue
            budget -= 1
            half, rest = group[: len(group) // 2], group[len(group) // 2 :]
            probe = [rows[i] for i in half]
            sub = await self._call(method, url, self._body(probe, columns), len(probe))
            named = {half[i]: reason for i, reason in self._named(sub, probe).items()}
            rejected.update(named)
            pending.append(([i for i in half if i not in named], sub.num_invalid - len(named)))
            pending.append((rest, count - sub.num_invalid))
        return [(rows[p].key, reason) for p, reason in sorted(rejected.items())]

    @staticmethod
    def _named(answer: Answer, rows: Sequence[Row]) -> dict[int, str]:
        """Row positions the answer's samples name (by any hash the row carries)."""
        where: dict[str, list[int]] = {}
        for position, row in enumerate(rows):
            for value in row.values:
                if value:
                    where.setdefault(value, []).append(position)
        named: dict[int, str] = {}
        for value, reason in answer.samples.items():
            for position in where.get(value, ()):
                named.setdefault(position, f"Meta: {reason or 'invalid entry'}")
        return named

    def _unnamed(self, group: Sequence[int], count: int) -> dict[int, str]:
        if count >= len(group):
            reason = "Meta: invalid entry (counted in num_invalid_entries, not sampled)"
        else:
            reason = (
                f"Meta counted {count} invalid entries among these {len(group)} rows without "
                "naming them; rejected together so they are sent again next run"
            )
            log.warning("%s: %s", self._name, reason)
        return dict.fromkeys(group, reason)

    # -- HTTP -----------------------------------------------------------------------------

    async def _call(self, method: str, url: str, body: bytes, rows: int) -> Answer:
        await self._limiter.acquire()
        response = await self._request(
            method,
            url,
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if response.status_code != 200:
            self._raise_for(response)
        self._observe(response)
        try:
            answer = orjson.loads(response.content)
            result = Answer(
                num_received=int(answer["num_received"]),
                num_invalid=int(answer.get("num_invalid_entries") or 0),
                samples=dict(answer.get("invalid_entry_samples") or {}),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise DestinationUnavailableError(
                f"{self._name}: HTTP 200 without Meta's upload summary: {response.text[:200]}"
            ) from error
        if result.num_received != rows:
            # Half a request landed (or a proxy answered): send it again, it is idempotent.
            raise DestinationUnavailableError(
                f"{self._name}: Meta received {result.num_received} of {rows} rows"
            )
        return result

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await http.request(self._http, method, url, where=self._name, **kwargs)

    def _observe(self, response: httpx.Response) -> None:
        usage = parse_usage(response.headers.get(USAGE_HEADER))
        if usage is not None:
            percent, regain = usage
            self._limiter.observe(0 if percent >= 100 else math.ceil(100 - percent), regain)

    def _raise_for(self, response: httpx.Response) -> NoReturn:
        """Raise the error the answer means. A throttle holds the limiter for its own wait
        (Retry-After when given, which is finer than the usage header's whole minutes);
        any other answer's usage header is observed as usual."""
        status = response.status_code
        error: dict[str, Any] = {}
        try:
            body = orjson.loads(response.content)
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                error = body["error"]
        except orjson.JSONDecodeError:
            pass
        code = error.get("code")
        detail = (
            f"code {code}, subcode {error.get('error_subcode')}: "
            f"{error.get('message') or response.text[:200]} "
            f"(fbtrace_id {error.get('fbtrace_id')})"
        )
        throttled = status == 429 or code in RATE_LIMIT_CODES
        if not throttled:
            self._observe(response)
        # Without Retry-After, a throttle waits for the time the usage header names.
        usage = parse_usage(response.headers.get(USAGE_HEADER))
        raise http.status_error(
            response,
            self._limiter,
            self._name,
            detail,
            f"${self._config.token_env}",
            throttled=throttled,
            wait=usage[1] if usage and usage[1] > 0 else None,
            transient=code in TRANSIENT_CODES or bool(error.get("is_transient")),
            credentials=code in TOKEN_CODES or status == 401,
        )
