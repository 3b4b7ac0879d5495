"""The front door every destination simulator shares: faults, the rate limit and the stats.

Each vendor simulator speaks its API's own paths and bodies, and asks its `Gate` first
whether a request gets through: latency, an outage window, forced statuses, random server
errors and the rate limit are decided here, the same way for every simulator, so the
contract test suite can drive all of them with one control API:

    GET /healthz                    GET|PUT /_sim/config (a FaultConfig patch)
    GET /_sim/stats                 GET /_sim/records (the destination's state, read back)
    POST /_sim/reset

The vendor turns a `Refusal` into its own status, headers and error body (HubSpot's
`errorType: RATE_LIMIT`, Salesforce's 403 `REQUEST_LIMIT_EXCEEDED`, ...).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from switchyard.simulators.faults import TokenBucket, key_rejected, roll


class Allowance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int = Field(ge=1)
    per_seconds: float = Field(gt=0)


class FaultConfig(BaseModel):
    """How a simulator misbehaves; `PUT /_sim/config` patches it field by field."""

    model_config = ConfigDict(extra="forbid")

    rate_limit: Allowance | None = None
    latency_ms: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    outage: bool = False
    # Statuses for the next requests, in order; a 2xx entry lets that request through.
    force_status: list[Annotated[int, Field(ge=200, le=599)]] = Field(default_factory=list)
    force_retry_after: int = Field(default=2, ge=1)
    # Per-record rejection: a deterministic fraction of keys, or these keys.
    reject_rate: float = Field(default=0.0, ge=0, le=1)
    reject_keys: list[str] = Field(default_factory=list)
    # Async jobs (bulk imports): polls before a job reports it has finished.
    job_polls: int = Field(default=1, ge=0)
    seed: int = 0


@dataclass(frozen=True)
class Refusal:
    """Why the gate turned a request away; the vendor renders it in its own words."""

    status: int
    reason: str  # "rate_limited", "outage", "server_error", "forced"
    retry_after: int | None = None
    limit: int | None = None
    remaining: int | None = None


@dataclass
class Stats:
    requests: int = 0
    records_received: int = 0
    rejected: int = 0
    # Requests that arrived while an announced Retry-After was still running.
    early_retries: int = 0
    max_batch_records: int = 0
    max_body_bytes: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "records_received": self.records_received,
            "rejected": self.rejected,
            "early_retries": self.early_retries,
            "max_batch_records": self.max_batch_records,
            "max_body_bytes": self.max_body_bytes,
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
        }


class Gate:
    def __init__(
        self, config: FaultConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._initial = config or FaultConfig()
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self.stats = Stats()
        self.penalty_until = 0.0
        self._install(self._initial.model_copy(deep=True), None)

    def update(self, patch: dict[str, Any]) -> FaultConfig:
        data = self.config.model_dump()
        data["force_status"] = list(self._forced)
        data.update(patch)
        self._install(FaultConfig.model_validate(data), set(patch))
        return self.config

    def view(self) -> dict[str, Any]:
        out = self.config.model_dump(mode="json")
        out["force_status"] = list(self._forced)
        return out

    def _install(self, config: FaultConfig, changed: set[str] | None) -> None:
        self.config = config
        self._reject_keys = frozenset(config.reject_keys)
        if changed is None or "force_status" in changed:
            self._forced = deque(config.force_status)
        if changed is None or "seed" in changed:
            self.rng = random.Random(config.seed)
        if changed is None or "rate_limit" in changed:
            limit = config.rate_limit
            self.bucket = (
                TokenBucket(limit.requests, limit.per_seconds, self._clock()) if limit else None
            )

    async def admit(self, records: int = 0, body_bytes: int = 0) -> Refusal | None:
        """Count the request and decide whether it gets through (None) or is refused."""
        stats = self.stats
        now = self._clock()
        stats.requests += 1
        stats.records_received += records
        stats.max_batch_records = max(stats.max_batch_records, records)
        stats.max_body_bytes = max(stats.max_body_bytes, body_bytes)
        if now < self.penalty_until:
            stats.early_retries += 1
        config = self.config
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        if config.outage:
            return Refusal(503, "outage", retry_after=1)
        if self._forced:
            status = self._forced.popleft()
            if status == 429:
                return self._penalise(Refusal(429, "forced", config.force_retry_after))
            if status >= 300:
                return Refusal(status, "forced")
        if roll(self.rng, config.error_rate):
            return Refusal(500, "server_error")
        bucket = self.bucket
        if bucket is not None and not bucket.take(now):
            wait = max(1, bucket.seconds_until_token())
            return self._penalise(Refusal(429, "rate_limited", wait, bucket.capacity, 0))
        return None

    def _penalise(self, refusal: Refusal) -> Refusal:
        if refusal.retry_after is not None:
            self.penalty_until = max(self.penalty_until, self._clock() + refusal.retry_after)
        return refusal

    def allowance_headers(self) -> tuple[int, int, int] | None:
        """(limit, remaining, seconds until a token) for vendors' rate-limit headers."""
        bucket = self.bucket
        if bucket is None:
            return None
        return bucket.capacity, bucket.remaining, bucket.seconds_until_token()

    def rejects(self, key: str) -> bool:
        """Whether the destination turns this record down (counted in stats)."""
        config = self.config
        hit = key in self._reject_keys or key_rejected(key, config.reject_rate, config.seed)
        if hit:
            self.stats.rejected += 1
        return hit

    def answered(self, status: int) -> None:
        self.stats.status_counts[status] = self.stats.status_counts.get(status, 0) + 1


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def control_routes(
    gate: Gate,
    records: Callable[[], Any],
    reset: Callable[[], None],
) -> list[BaseRoute]:
    """The control API every simulator serves beside its vendor paths."""

    async def healthz(request: Request) -> Response:
        return json_response(200, {"ok": True})

    async def get_config(request: Request) -> Response:
        return json_response(200, gate.view())

    async def put_config(request: Request) -> Response:
        try:
            patch = orjson.loads(await request.body())
            if type(patch) is not dict:
                raise ValueError("expected a JSON object")
            gate.update(patch)
        except (orjson.JSONDecodeError, ValueError) as error:
            detail: Any = str(error)
            if isinstance(error, ValidationError):
                detail = orjson.loads(error.json(include_url=False, include_input=False))
            return json_response(422, {"error": "invalid_config", "detail": detail})
        return json_response(200, gate.view())

    async def get_stats(request: Request) -> Response:
        return json_response(200, gate.stats.as_dict())

    async def get_records(request: Request) -> Response:
        return json_response(200, records())

    async def post_reset(request: Request) -> Response:
        gate.reset()
        reset()
        return json_response(200, {"ok": True})

    endpoints: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
        ("/healthz", healthz, "GET"),
        ("/_sim/config", get_config, "GET"),
        ("/_sim/config", put_config, "PUT"),
        ("/_sim/stats", get_stats, "GET"),
        ("/_sim/records", get_records, "GET"),
        ("/_sim/reset", post_reset, "POST"),
    ]
    return [Route(path, handler, methods=[method]) for path, handler, method in endpoints]
