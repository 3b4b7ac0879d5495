"""A local Meta Graph API for Custom Audiences: the paths, bodies and answers the client and
Meta's own Python SDK use, with faults from the shared Gate.

    GET    /{version}/{audience_id}                  the audience ({"id", "name"})
    POST   /{version}/{audience_id}/users            add rows
    DELETE /{version}/{audience_id}/users            remove rows
    POST   /{version}/{audience_id}/usersreplace     a replace session's batch

Parameters (`payload`, `session`, `access_token`) are read from the query string, a form
body or a JSON body, as Graph does; the SDK sends DELETE parameters in the query string. A
request without a token answers Graph's 400 code 104; with a token other than the one the
simulator was built with (when given one), 400 code 190.

Validation: `schema` is "EMAIL_SHA256" / "PHONE_SHA256" (data: a list of hashes) or a list
of multi-key names (data: a list of rows); other shapes answer 400 code 100, as does a
request of more than 10,000 rows. Within a valid request, a row is counted in
`num_invalid_entries` (with a sample in `invalid_entry_samples`, at most `max_samples`)
when its length differs from the schema's, a hashed value is not 64 lowercase hex
characters, it carries no value at all, or `gate.rejects(<its first hash>)`.

Membership is a set: each audience maps a row's first hash (the client's identifier) to
the hashes it was added with; adding again or removing an absent member changes nothing.
A replace session collects rows per `session_id` and, at `last_batch_flag`, makes them the
audience's only members. `/_sim/records` lists every audience's members keyed by hash.

Rate limits speak Meta's words: `X-Business-Use-Case-Usage` on every answer while a
`rate_limit` is set, and when the bucket is empty a 400 with error code 80003 and
`estimated_time_to_regain_access` in whole minutes. Meta sends no Retry-After; the
simulator adds one (seconds) to throttled answers so tests need not wait whole minutes,
and answers a forced 429 with it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.destinations.meta.spec import MAX_ROWS
from switchyard.simulators.control import FaultConfig, Gate, Refusal, control_routes, json_response

HASH = re.compile(r"^[0-9a-f]{64}$")
VERSION = re.compile(r"^v\d+\.\d+$")
SINGLE_KEY_SCHEMAS = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE"}
MULTI_KEYS = frozenset(
    {
        "EXTERN_ID", "EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI",
        "CT", "ST", "ZIP", "MADID", "COUNTRY", "APPUID",
    }
)  # fmt: skip
UNHASHED = frozenset({"EXTERN_ID", "MADID", "APPUID"})
BUSINESS_ID = "1000000000000001"


class GraphError(Exception):
    """A Graph API error answer: status and the `error` object's fields."""

    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


@dataclass
class Session:
    last_seq: int = 0
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Upload:
    schema: list[str]
    members: dict[str, dict[str, Any]]  # first hash -> record
    received: int
    invalid: int
    samples: dict[str, str]


class MetaSimulator:
    def __init__(self, gate: Gate, access_token: str | None, max_samples: int) -> None:
        self.gate = gate
        self.access_token = access_token
        self.max_samples = max_samples
        self.reset()

    def reset(self) -> None:
        self.audiences: dict[str, dict[str, dict[str, Any]]] = {}
        self.sessions: dict[tuple[str, str], Session] = {}
        self._ids = itertools.count(7_000_000_000_000_001)

    def records(self) -> dict[str, Any]:
        merged = {h: r for members in self.audiences.values() for h, r in members.items()}
        return {"count": len(merged), "records": merged}

    # -- requests -------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        try:
            response = await self._handle(request)
        except GraphError as error:
            response = self.error_response(error)
        self.gate.answered(response.status_code)
        return response

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        version = request.path_params["version"]
        audience_id = request.path_params["audience_id"]
        edge: str | None = request.path_params.get("edge")
        malformed: GraphError | None = None
        params: dict[str, Any] = {}
        payload = None
        try:
            params = _params(request, body)
            payload = _payload(params) if edge else None
        except GraphError as error:
            malformed = error
        rows = payload[1] if payload else []
        size = len(body) + len(request.url.query)
        refusal = await self.gate.admit(records=len(rows), body_bytes=size)
        if refusal is not None:
            return self._refused(refusal)
        if malformed is None:
            self._authenticate(request, params)
        if edge not in (None, "users", "usersreplace") or (
            edge == "usersreplace" and request.method != "POST"
        ):
            raise GraphError(400, 2500, f"Unknown path components: /{edge}")
        if not VERSION.match(version):
            raise GraphError(400, 2500, f"Unknown path components: /{version}")
        if not audience_id.isdigit():
            raise GraphError(
                400,
                100,
                f"Unsupported {request.method.lower()} request. Object with ID "
                f"'{audience_id}' does not exist, cannot be loaded due to missing "
                "permissions, or does not support this operation.",
                error_subcode=33,
            )
        if malformed is not None:
            raise malformed
        members = self.audiences.setdefault(audience_id, {})
        if edge is None:
            return self._answer(200, {"id": audience_id, "name": f"Audience {audience_id}"})
        if payload is None:
            raise GraphError(400, 100, "(#100) The parameter payload is required")
        if len(rows) > MAX_ROWS:
            raise GraphError(
                400, 100, f"(#100) Too many entries: {len(rows)} (at most {MAX_ROWS} per request)"
            )
        upload = self._upload(*payload)
        session_id = str(next(self._ids))
        if edge == "usersreplace":
            session_id = self._replace(audience_id, params, upload)
        elif request.method == "POST":
            members.update(upload.members)
        else:
            for key in upload.members:
                members.pop(key, None)
        return self._answer(
            200,
            {
                "audience_id": audience_id,
                "session_id": session_id,
                "num_received": upload.received,
                "num_invalid_entries": upload.invalid,
                "invalid_entry_samples": upload.samples,
            },
        )

    def _authenticate(self, request: Request, params: Mapping[str, Any]) -> None:
        token = params.get("access_token")
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if not token and scheme.lower() in ("bearer", "oauth"):
            token = credential.strip()
        if not token:
            raise GraphError(
                400,
                104,
                "An access token is required to request this resource.",
            )
        if self.access_token is not None and token != self.access_token:
            raise GraphError(
                400,
                190,
                "Invalid OAuth access token - Cannot parse access token",
            )

    def _upload(self, schema: list[str], data: list[list[Any]]) -> Upload:
        members: dict[str, dict[str, Any]] = {}
        invalid = 0
        samples: dict[str, str] = {}
        for row in data:
            problem = _row_problem(schema, row)
            key = next((str(v) for v in row if v), "") if problem is None else ""
            if problem is None and self.gate.rejects(key):
                problem = (key, "Rejected by the audience's matching rules")
            if problem is not None:
                invalid += 1
                if len(samples) < self.max_samples:
                    samples.setdefault(*problem)
                continue
            record: dict[str, Any] = {"schema": schema}
            record.update({name: value for name, value in zip(schema, row, strict=True) if value})
            members[key] = record
        return Upload(schema, members, len(data), invalid, samples)

    def _replace(self, audience_id: str, params: Mapping[str, Any], upload: Upload) -> str:
        raw = params.get("session")
        try:
            session: Any = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
            session_id = str(session["session_id"])
            seq = int(session["batch_seq"])
            last = bool(session.get("last_batch_flag", False))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise GraphError(
                400, 100, "(#100) session must hold session_id, batch_seq and last_batch_flag"
            ) from error
        state = self.sessions.setdefault((audience_id, session_id), Session())
        if seq < 1 or seq > state.last_seq + 1:
            raise GraphError(
                400, 100, f"(#100) batch_seq {seq} out of order (last was {state.last_seq})"
            )
        state.last_seq = max(state.last_seq, seq)
        state.rows.update(upload.members)
        if last:
            self.audiences[audience_id] = dict(state.rows)
            del self.sessions[(audience_id, session_id)]
        return session_id

    # -- answers --------------------------------------------------------------------------

    def _usage_headers(self, percent: int | None = None, regain_seconds: int = 0) -> dict[str, str]:
        allowance = self.gate.allowance_headers()
        if allowance is None:
            return {}
        capacity, remaining, _ = allowance
        if percent is None:
            percent = min(100, round(100 * (capacity - remaining) / capacity))
        usage = {
            BUSINESS_ID: [
                {
                    "type": "CUSTOM_AUDIENCE",
                    "call_count": percent,
                    "total_cputime": percent // 4,
                    "total_time": percent // 4,
                    "estimated_time_to_regain_access": math.ceil(regain_seconds / 60),
                }
            ]
        }
        return {"X-Business-Use-Case-Usage": orjson.dumps(usage).decode()}

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        merged = self._usage_headers()
        merged.update(headers or {})
        merged["x-fb-trace-id"] = f"Sim{self.gate.stats.requests:08d}"
        return json_response(status, body, merged)

    def error_response(self, error: GraphError, headers: dict[str, str] | None = None) -> Response:
        detail: dict[str, Any] = {"message": error.message, "type": "OAuthException"}
        detail.update(error.extra)
        detail["code"] = error.code
        detail["fbtrace_id"] = f"Sim{self.gate.stats.requests:08d}"
        merged = self._usage_headers()
        merged.update(headers or {})
        merged["x-fb-trace-id"] = detail["fbtrace_id"]
        return json_response(error.status, {"error": detail}, merged)

    def _refused(self, refusal: Refusal) -> Response:
        retry_after = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else {}
        if refusal.status == 429:
            forced = refusal.reason == "forced"
            if not forced:  # the bucket ran dry: every budget spent until a token returns
                retry_after.update(self._usage_headers(100, refusal.retry_after or 60))
            throttled = GraphError(
                429 if forced else 400,
                80003,
                "There have been too many calls for this ad-account. Wait a bit and try again.",
                is_transient=True,
            )
            return self.error_response(throttled, retry_after)
        if refusal.status >= 500:
            error = GraphError(
                refusal.status,
                2,
                "An unexpected error has occurred. Please retry your request later.",
                is_transient=True,
            )
            return self.error_response(error, retry_after)
        code, message = {
            401: (190, "Invalid OAuth access token - Cannot parse access token"),
            403: (200, "(#200) Permissions error"),
        }.get(refusal.status, (100, "(#100) Invalid parameter"))
        return self.error_response(GraphError(refusal.status, code, message))


def _params(request: Request, body: bytes) -> dict[str, Any]:
    """Graph reads parameters from the query string and from a form or JSON body."""
    params: dict[str, Any] = dict(request.query_params)
    if not body:
        return params
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise GraphError(400, 100, "(#100) The request body is not valid JSON") from error
        if not isinstance(decoded, dict):
            raise GraphError(400, 100, "(#100) The request body must be a JSON object")
        params.update(decoded)
    else:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _payload(params: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]] | None:
    """(schema as key names, rows) from the `payload` parameter; 400 unless well shaped."""
    raw = params.get("payload")
    if raw is None:
        return None
    try:
        payload = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError as error:
        raise GraphError(400, 100, "(#100) param payload must be JSON") from error
    if not isinstance(payload, dict):
        raise GraphError(400, 100, "(#100) param payload must be an object")
    schema, data = payload.get("schema"), payload.get("data")
    if not isinstance(data, list):
        raise GraphError(400, 100, "(#100) param payload[data] must be an array")
    if isinstance(schema, str) and schema in SINGLE_KEY_SCHEMAS:
        if not all(isinstance(v, str) for v in data):
            raise GraphError(400, 100, f"(#100) {schema} data must be an array of strings")
        return [SINGLE_KEY_SCHEMAS[schema]], [[v] for v in data]
    if (
        isinstance(schema, list)
        and schema
        and all(isinstance(k, str) and k in MULTI_KEYS for k in schema)
        and len(set(schema)) == len(schema)
    ):
        if not all(isinstance(row, list) for row in data):
            raise GraphError(400, 100, "(#100) multi-key data must be an array of arrays")
        return list(schema), data
    raise GraphError(400, 100, f"(#100) Invalid schema: {orjson.dumps(schema).decode()}")


def _row_problem(schema: list[str], row: list[Any]) -> tuple[str, str] | None:
    """(sample value, reason) when the row is invalid, else None."""
    sample = next((str(v) for v in row if v), "") or orjson.dumps(row).decode()
    if len(row) != len(schema):
        return sample, f"Row has {len(row)} values for a schema of {len(schema)} keys"
    if not any(row):
        return sample, "Row carries no value"
    for name, value in zip(schema, row, strict=True):
        if value and name not in UNHASHED and not (isinstance(value, str) and HASH.match(value)):
            return str(value), f"{name} is not a SHA-256 hash (64 lowercase hex characters)"
    return None


def create_app(
    fault: FaultConfig | None = None,
    access_token: str | None = None,
    max_samples: int = 100,
) -> Starlette:
    """The simulator; `access_token` None accepts any token, `max_samples` caps how many
    invalid entries an answer names (Meta does not document its own cap)."""
    gate = Gate(fault)
    sim = MetaSimulator(gate, access_token, max_samples)
    routes = [
        *control_routes(gate, sim.records, sim.reset),
        Route("/{version}/{audience_id}", sim.handle, methods=["GET"]),
        Route("/{version}/{audience_id}/{edge}", sim.handle, methods=["POST", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.simulator = sim
    return app
