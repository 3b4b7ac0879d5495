"""A local customer webhook receiver: the generic webhook destination's simulator.

The protocol (the contract with Switchyard's webhook client):

    POST /hooks/{hook}
      Content-Type: application/json
      X-Switchyard-Timestamp: <unix seconds>          (at most 300 s from now)
      X-Switchyard-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>
      Idempotency-Key: <opaque>
      {"batch_id", "sync", "contract_version",
       "operations": [{"op": "upsert", "key", "fields": {..}, "if_empty"?: [names]}
                      | {"op": "remove", "key"}]}
      (`if_empty` names fields to set only where the receiver holds no value yet)

    200 {"batch_id", "accepted", "rejected": [{"index", "key", "reason"}], "duplicate"}
    401 invalid_signature | stale_timestamp     400 malformed_body | batch_too_large |
    413 payload_too_large     429 rate_limited (Retry-After, X-RateLimit-*)     5xx faults

A repeated Idempotency-Key (per hook) gets the first answer back with `"duplicate": true`
and changes nothing; re-sends are counted, which is how tests see what a crash cost.

Control API for tests: GET|PUT /_sim/config, GET /_sim/stats, GET /_sim/records (every hook),
GET /_sim/hooks/{hook}/records (?keys_only=1), GET /_sim/hooks/{hook}/log, POST /_sim/reset,
GET /healthz.

Run it: python -m switchyard.destinations.webhook.simulator --host 127.0.0.1 --port 8787
"""

# No `from __future__ import annotations` here: run as __main__ under a wrapper (cProfile, a
# debugger), pydantic could not resolve SimulatorConfig's string annotations.
import argparse
import asyncio
import gc
import hashlib
import hmac
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.settings import DEV_WEBHOOK_SECRET, Settings
from switchyard.simulators.faults import TokenBucket, key_rejected, roll
from switchyard.simulators.server import serve

SECRET_ENV = "SWITCHYARD_WEBHOOK_SECRET"
LOG_LIMIT = 100_000
_ERROR_NAMES = {
    400: "bad_request",
    401: "invalid_signature",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "unprocessable_entity",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
_RANDOM_ERRORS = (500, 502, 503)
_COUNTERS = (
    "requests",
    "batches_applied",
    "records_received",
    "upserts",
    "removes",
    "rejected",
    "duplicate_batches",
    "duplicate_records",
    "idempotency_mismatches",
    "early_retries",
)

Record = dict[str, Any]
Headers = dict[str, str]


def _secret_from_env() -> SecretStr:
    return SecretStr(os.environ.get(SECRET_ENV) or DEV_WEBHOOK_SECRET)


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int = Field(ge=1)
    per_seconds: float = Field(gt=0)


class SimulatorConfig(BaseModel):
    """Live behaviour of the simulator; `PUT /_sim/config` patches it field by field."""

    model_config = ConfigDict(extra="forbid")

    secret: SecretStr = Field(default_factory=_secret_from_env)
    timestamp_tolerance_seconds: float = Field(default=300, gt=0)
    rate_limit: RateLimit | None = None
    latency_ms: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_seconds: float = Field(default=60.0, ge=0)
    reject_rate: float = Field(default=0.0, ge=0, le=1)
    reject_keys: list[str] = Field(default_factory=list)
    reject_reason: str = "rejected_by_rule"
    outage: bool = False
    # Statuses for the next requests, in order; a 2xx entry lets that request through.
    force_status: list[Annotated[int, Field(ge=200, le=599)]] = Field(default_factory=list)
    force_retry_after: int = Field(default=2, ge=1)
    max_batch_size: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    max_field_chars: int = Field(default=1000, ge=1)
    seed: int = 0


@dataclass(slots=True)
class HookStats:
    requests: int = 0
    batches_applied: int = 0
    records_received: int = 0
    upserts: int = 0
    removes: int = 0
    rejected: int = 0
    duplicate_batches: int = 0
    duplicate_records: int = 0
    idempotency_mismatches: int = 0
    # Requests that arrived while an announced Retry-After (from a 429) was still running.
    early_retries: int = 0
    max_batch_records: int = 0
    max_body_bytes: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS}
        out["max_batch_records"] = self.max_batch_records
        out["max_body_bytes"] = self.max_body_bytes
        out["status_counts"] = {str(code): n for code, n in sorted(self.status_counts.items())}
        return out


class Hook:
    """Everything the simulator keeps for one `/hooks/{name}` endpoint."""

    __slots__ = ("bucket", "log", "penalty_until", "records", "replies", "stats")

    def __init__(self, bucket: TokenBucket | None) -> None:
        self.records: dict[str, Record] = {}
        # Idempotency-Key -> (batch_id, operation count, 200 body)
        self.replies: dict[str, tuple[str, int, dict[str, Any]]] = {}
        # (batch_id, idempotency_key, operations, status, received_at)
        self.log: deque[tuple[str | None, str | None, int | None, int, float]] = deque(
            maxlen=LOG_LIMIT
        )
        self.stats = HookStats()
        self.bucket = bucket
        # Monotonic time until which this hook's clients were told to wait (a 429's Retry-After).
        self.penalty_until = 0.0


def apply_operations(
    records: dict[str, Record],
    operations: list[Any],
    *,
    max_field_chars: int = 1000,
    reject: Callable[[str], str | None] | None = None,
) -> tuple[int, int, list[dict[str, Any]]]:
    """Apply a batch to `records` in place; returns (upserts, removes, rejected items).

    The hot loop: raw dicts straight from orjson, stored as they are (no copies, no models).
    """
    upserts = removes = 0
    rejected: list[dict[str, Any]] = []
    for index, op in enumerate(operations):
        if type(op) is not dict:
            rejected.append({"index": index, "key": None, "reason": "unknown_op"})
            continue
        kind = op.get("op")
        key: Any = op.get("key")
        fields: Any = None
        reason: str | None = None
        if kind != "upsert" and kind != "remove":
            reason = "unknown_op"
        elif type(key) is not str or not key:
            reason = "missing_key"
        elif kind == "upsert":
            fields = op.get("fields")
            if type(fields) is not dict:
                reason = "invalid_fields"
            else:
                for name, value in fields.items():
                    if type(value) is str and len(value) > max_field_chars:
                        reason = f"field_too_long:{name}"
                        break
        if reason is None and reject is not None:
            reason = reject(key)
        if reason is not None:
            rejected.append(
                {"index": index, "key": key if type(key) is str else None, "reason": reason}
            )
        elif kind == "upsert":
            record = records.get(key)
            if record is None:
                records[key] = fields
            else:
                keep = op.get("if_empty")
                if keep:
                    # Fields sent "set only if empty" never overwrite a value already there.
                    fields = {
                        name: value
                        for name, value in fields.items()
                        if name not in keep or record.get(name) in (None, "")
                    }
                record.update(fields)
            upserts += 1
        else:
            records.pop(key, None)
            removes += 1
    return upserts, removes, rejected


def _json(status: int, payload: Any, headers: Headers | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, "application/json")


def _malformed(detail: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": "malformed_body", "detail": detail}


class WebhookSimulator:
    """State and request handling; `create_app` wires it into a Starlette app."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._initial = config
        self._clock = clock
        self._wall_clock = wall_clock
        self.reset()

    # -- configuration -------------------------------------------------------------------

    def reset(self) -> None:
        self.hooks: dict[str, Hook] = {}
        self._set_config(self._initial.model_copy(deep=True), changed=None)

    def update_config(self, patch: dict[str, Any]) -> SimulatorConfig:
        data = self.config.model_dump()
        data["force_status"] = list(self._forced)
        data.update(patch)
        self._set_config(SimulatorConfig.model_validate(data), changed=set(patch))
        return self.config

    def config_view(self) -> dict[str, Any]:
        view = self.config.model_dump(mode="json")
        view["force_status"] = list(self._forced)
        return view

    def _set_config(self, config: SimulatorConfig, changed: set[str] | None) -> None:
        """Install `config`; `changed=None` means everything is new (startup, reset)."""
        self.config = config
        self._mac = hmac.new(config.secret.get_secret_value().encode(), digestmod=hashlib.sha256)
        self._reject_keys = frozenset(config.reject_keys)
        if changed is None or "force_status" in changed:
            self._forced = deque(config.force_status)
        if changed is None or "seed" in changed:
            self._rng = random.Random(config.seed)
        if changed is None or "rate_limit" in changed:
            for hook in self.hooks.values():
                hook.bucket = self._new_bucket()

    def _new_bucket(self) -> TokenBucket | None:
        limit = self.config.rate_limit
        if limit is None:
            return None
        return TokenBucket(limit.requests, limit.per_seconds, self._clock())

    def _hook(self, name: str) -> Hook:
        hook = self.hooks.get(name)
        if hook is None:
            hook = self.hooks[name] = Hook(self._new_bucket())
        return hook

    # -- POST /hooks/{hook} ------------------------------------------------------------------

    async def post_hook(self, request: Request) -> Response:
        arrived = self._clock()
        received_at = self._wall_clock()
        hook = self._hook(request.path_params["hook"])
        hook.stats.requests += 1
        if arrived < hook.penalty_until:
            hook.stats.early_retries += 1
        config = self.config
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        idempotency_key = request.headers.get("idempotency-key")

        def finish(
            status: int,
            payload: Any,
            headers: Headers | None = None,
            batch_id: str | None = None,
            operations: int | None = None,
        ) -> Response:
            counts = hook.stats.status_counts
            counts[status] = counts.get(status, 0) + 1
            hook.log.append((batch_id, idempotency_key, operations, status, received_at))
            return _json(status, payload, headers)

        fault = self._injected_fault(hook)
        if fault is not None:
            return finish(*fault)
        headers = self._take_token(hook)
        if headers is not None and "Retry-After" in headers:
            return finish(429, {"error": "rate_limited"}, headers)
        if roll(self._rng, config.timeout_rate):
            response = finish(504, {"error": "gateway_timeout"}, headers)
            await _hold(request, config.timeout_seconds)
            return response
        if roll(self._rng, config.error_rate):
            status = self._rng.choice(_RANDOM_ERRORS)
            return finish(status, {"error": _ERROR_NAMES[status]}, headers)

        limit = config.max_body_bytes
        length = request.headers.get("content-length")
        too_long = (
            length is not None and length.isascii() and length.isdigit() and int(length) > limit
        )
        body = None if too_long else await _read_body(request, limit)
        if body is None:
            return finish(413, {"error": "payload_too_large", "limit_bytes": limit}, headers)
        auth_error = self._check_signature(request, body)
        if auth_error is not None:
            return finish(401, {"error": auth_error}, headers)
        status, payload, batch_id, operations = self._receive_batch(
            hook, request, body, idempotency_key
        )
        return finish(status, payload, headers, batch_id, operations)

    def _injected_fault(self, hook: Hook) -> tuple[int, dict[str, Any], Headers | None] | None:
        if self.config.outage:
            return 503, {"error": "service_unavailable"}, {"Retry-After": "1"}
        if not self._forced:
            return None
        status = self._forced.popleft()
        if status < 300:
            return None
        body = {"error": _ERROR_NAMES.get(status, "simulated_error")}
        if status != 429:
            return status, body, None
        retry_after = self.config.force_retry_after
        hook.penalty_until = max(hook.penalty_until, self._clock() + retry_after)
        return status, body, {"Retry-After": str(retry_after)}

    def _take_token(self, hook: Hook) -> Headers | None:
        """X-RateLimit-* headers for this request (plus Retry-After when it is over the limit)."""
        bucket = hook.bucket
        if bucket is None:
            return None
        now = self._clock()
        allowed = bucket.take(now)
        reset = bucket.seconds_until_token()
        headers = {
            "X-RateLimit-Limit": str(bucket.capacity),
            "X-RateLimit-Remaining": str(bucket.remaining),
            "X-RateLimit-Reset": str(reset),
        }
        if not allowed:
            retry_after = max(1, reset)
            headers["Retry-After"] = str(retry_after)
            hook.penalty_until = max(hook.penalty_until, now + retry_after)
        return headers

    def _check_signature(self, request: Request, body: bytes) -> str | None:
        timestamp = request.headers.get("x-switchyard-timestamp")
        signature = request.headers.get("x-switchyard-signature")
        if not timestamp or not signature or not (timestamp.isascii() and timestamp.isdigit()):
            return "invalid_signature"
        mac = self._mac.copy()
        mac.update(timestamp.encode() + b".")
        mac.update(body)
        expected = mac.hexdigest().encode()
        # Several comma-separated v1= values are accepted, as during a secret rotation.
        if not any(
            hmac.compare_digest(expected, part.strip()[3:].encode("latin-1"))
            for part in signature.split(",")
            if part.strip().startswith("v1=")
        ):
            return "invalid_signature"
        if abs(self._wall_clock() - int(timestamp)) > self.config.timestamp_tolerance_seconds:
            return "stale_timestamp"
        return None

    def _receive_batch(
        self, hook: Hook, request: Request, body: bytes, idempotency_key: str | None
    ) -> tuple[int, dict[str, Any], str | None, int | None]:
        """Validate, de-duplicate and apply an authenticated batch."""
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/json"):
            return (*_malformed("Content-Type must be application/json"), None, None)
        if not idempotency_key:
            return 400, {"error": "missing_idempotency_key"}, None, None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return (*_malformed(f"invalid JSON: {exc}"), None, None)
        problem = _envelope_problem(doc)
        if problem is not None:
            return (*_malformed(problem), None, None)
        batch_id: str = doc["batch_id"]
        operations: list[Any] = doc["operations"]
        count = len(operations)
        config = self.config
        hook.stats.max_batch_records = max(hook.stats.max_batch_records, count)
        hook.stats.max_body_bytes = max(hook.stats.max_body_bytes, len(body))
        if count > config.max_batch_size:
            limit = config.max_batch_size
            return 400, {"error": "batch_too_large", "limit": limit}, batch_id, count
        stats = hook.stats
        prior = hook.replies.get(idempotency_key)
        if prior is not None:
            stats.duplicate_batches += 1
            stats.duplicate_records += count
            if prior[0] != batch_id or prior[1] != count:
                stats.idempotency_mismatches += 1
            return 200, {**prior[2], "duplicate": True}, batch_id, count

        reject = self._reject if self._reject_keys or config.reject_rate > 0 else None
        upserts, removes, rejected = apply_operations(
            hook.records, operations, max_field_chars=config.max_field_chars, reject=reject
        )
        reply = {
            "batch_id": batch_id,
            "accepted": upserts + removes,
            "rejected": rejected,
            "duplicate": False,
        }
        hook.replies[idempotency_key] = (batch_id, count, reply)
        stats.batches_applied += 1
        stats.records_received += count
        stats.upserts += upserts
        stats.removes += removes
        stats.rejected += len(rejected)
        return 200, reply, batch_id, count

    def _reject(self, key: str) -> str | None:
        config = self.config
        if key in self._reject_keys or key_rejected(key, config.reject_rate, config.seed):
            return config.reject_reason
        return None

    # -- control API ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        per_hook = {}
        for name, hook in self.hooks.items():
            per_hook[name] = {**hook.stats.as_dict(), "records": len(hook.records)}
        totals: dict[str, Any] = {name: 0 for name in _COUNTERS}
        status_counts: dict[str, int] = {}
        for one in per_hook.values():
            for name in _COUNTERS:
                totals[name] += one[name]
            for code, n in one["status_counts"].items():
                status_counts[code] = status_counts.get(code, 0) + n
        totals["status_counts"] = dict(sorted(status_counts.items()))
        for name in ("max_batch_records", "max_body_bytes"):
            totals[name] = max((one[name] for one in per_hook.values()), default=0)
        totals["per_hook"] = per_hook
        return totals

    def records(self, hook: str, keys_only: bool) -> dict[str, Any]:
        found = self.hooks.get(hook)
        records = found.records if found is not None else {}
        if keys_only:
            return {"count": len(records), "keys": list(records)}
        return {"count": len(records), "records": records}

    def all_records(self) -> dict[str, Any]:
        """Every hook's records, keyed `hook/key` (the control API all simulators share)."""
        records = {
            f"{name}/{key}": record
            for name, hook in self.hooks.items()
            for key, record in hook.records.items()
        }
        return {"count": len(records), "records": records}

    def log(self, hook: str) -> list[dict[str, Any]]:
        found = self.hooks.get(hook)
        entries = found.log if found is not None else ()
        return [
            {
                "batch_id": batch_id,
                "idempotency_key": key,
                "operations": operations,
                "status": status,
                "received_at": received_at,
            }
            for batch_id, key, operations, status, received_at in entries
        ]


def _envelope_problem(doc: Any) -> str | None:
    if type(doc) is not dict:
        return "body must be a JSON object"
    if type(doc.get("batch_id")) is not str:
        return "batch_id must be a string"
    if type(doc.get("sync")) is not str:
        return "sync must be a string"
    if type(doc.get("contract_version")) is not int:
        return "contract_version must be an integer"
    if type(doc.get("operations")) is not list:
        return "operations must be a list"
    return None


async def _hold(request: Request, seconds: float) -> None:
    """Sit on a request for `seconds`, or until the client gives up and hangs up."""
    try:
        async with asyncio.timeout(seconds):
            async for _ in request.stream():
                pass
            while (await request.receive())["type"] != "http.disconnect":
                pass
    except (TimeoutError, ClientDisconnect):
        pass


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it grows past `limit` (chunked uploads too)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    config: SimulatorConfig | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    freeze_gc: bool = True,
) -> Starlette:
    """The simulator as an ASGI app; its state is at `app.state.simulator`.

    `clock` (monotonic seconds) drives rate limiting and can be faked in tests. `freeze_gc`
    moves everything alive after startup out of the collector's sight, which keeps full
    collections cheap while the simulator holds a million records; lifespan-less test
    transports never run it.
    """
    sim = WebhookSimulator(config or SimulatorConfig(), clock=clock)

    async def healthz(request: Request) -> Response:
        return _json(200, {"ok": True})

    async def get_config(request: Request) -> Response:
        return _json(200, sim.config_view())

    async def put_config(request: Request) -> Response:
        try:
            patch = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _json(400, {"error": "malformed_body", "detail": str(exc)})
        if type(patch) is not dict:
            return _json(400, {"error": "malformed_body", "detail": "expected a JSON object"})
        try:
            sim.update_config(patch)
        except ValidationError as exc:
            detail = orjson.loads(exc.json(include_url=False, include_input=False))
            return _json(422, {"error": "invalid_config", "detail": detail})
        return _json(200, sim.config_view())

    async def get_stats(request: Request) -> Response:
        return _json(200, sim.stats())

    async def get_records(request: Request) -> Response:
        keys_only = request.query_params.get("keys_only", "").lower() in {"1", "true", "yes"}
        return _json(200, sim.records(request.path_params["hook"], keys_only))

    async def get_all_records(request: Request) -> Response:
        return _json(200, sim.all_records())

    async def get_log(request: Request) -> Response:
        return _json(200, sim.log(request.path_params["hook"]))

    async def post_reset(request: Request) -> Response:
        sim.reset()
        return _json(200, {"ok": True})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _json(status, {"error": _ERROR_NAMES.get(status, "http_error")})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if freeze_gc:
                gc.unfreeze()

    routes = [
        Route("/hooks/{hook}", sim.post_hook, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/_sim/config", get_config, methods=["GET"]),
        Route("/_sim/config", put_config, methods=["PUT"]),
        Route("/_sim/stats", get_stats, methods=["GET"]),
        Route("/_sim/records", get_all_records, methods=["GET"]),
        Route("/_sim/hooks/{hook}/records", get_records, methods=["GET"]),
        Route("/_sim/hooks/{hook}/log", get_log, methods=["GET"]),
        Route("/_sim/reset", post_reset, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={404: http_error, 405: http_error}
    )
    app.state.simulator = sim
    return app


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m switchyard.destinations.webhook.simulator",
        description="Local webhook receiver simulator (secret from $" + SECRET_ENV + ").",
    )
    parser.add_argument("--host", default=settings.simulator_host)
    parser.add_argument("--port", type=int, default=settings.simulator_port)
    parser.add_argument(
        "--config",
        help='initial SimulatorConfig as JSON, e.g. \'{"rate_limit": {"requests": 100, '
        '"per_seconds": 10}}\'',
    )
    args = parser.parse_args(argv)
    config = SimulatorConfig.model_validate_json(args.config) if args.config else SimulatorConfig()
    serve(create_app(config), args.host, args.port)


if __name__ == "__main__":
    main()
