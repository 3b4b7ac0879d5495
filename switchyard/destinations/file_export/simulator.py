"""A tiny HTTP object store: what the file export writes to when pointed at `base_url`.

Files have no vendor API; this store stands in for one (an S3 or GCS bucket) so the file
export runs through the same control API as every other destination:

    PUT /objects/{path}        the object's bytes; optional X-Content-SHA256: <hex>
                               200 {"path", "size", "sha256"}, ETag: "<sha256>"
    GET /objects/{path}        200 the bytes | 404 NoSuchKey
    GET /objects?prefix=p      200 {"objects": [{"path", "size", "sha256"}]}, sorted by path

Every request needs `Authorization: Bearer <token>` (any non-empty token): 401
Unauthorized without it. Errors are `{"error": {"code", "message"}}`: 400
InvalidObjectName (an empty, `.` or `..` segment), 400 BadDigest (X-Content-SHA256 does not
match the body), 400 InvalidPart (a `part-*` object that is not a readable CSV or Parquet
file: the one check a plain store would not make, there to catch client bugs), 413
EntityTooLarge (over 5 GiB), 429 SlowDown (Retry-After), 503 ServiceUnavailable, 500
InternalError. Rate-limit headers on every answer when a limit is configured:
X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset (seconds until a token).

A PUT replaces the object whole; a PUT of the same bytes changes nothing.

`/_sim/records` reads every stored part back, in the order the parts first arrived: the
column after `op` is the key; `op = remove` deletes the key. Faults, latency and the rate
limit apply to every request through the shared Gate, counting a part's rows as its
records. Per-record rejection (`reject_keys`, `reject_rate`) cannot apply: a file is
written whole or not at all, so those settings are ignored here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from switchyard.destinations.file_export.formats import OP_COLUMN, decode_part
from switchyard.destinations.file_export.layout import PART
from switchyard.destinations.file_export.spec import MAX_PART_BYTES
from switchyard.simulators.control import FaultConfig, Gate, Refusal, control_routes, json_response

_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "AccessDenied",
    404: "NoSuchKey",
    408: "RequestTimeout",
    409: "Conflict",
    413: "EntityTooLarge",
    429: "SlowDown",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    sha256: str
    rows: list[dict[str, Any]] | None  # a part's rows, read back once on arrival


class ObjectStore:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.objects: dict[str, StoredObject] = {}

    # -- answers --------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        allowance = self.gate.allowance_headers()
        if allowance is None:
            return {}
        limit, remaining, reset = allowance
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }

    def answer(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        self.gate.answered(status)
        headers = {**self._headers(), **(headers or {})}
        if body is not None:
            return Response(body, status, headers, media_type="application/octet-stream")
        return json_response(status, payload, headers)

    def error(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        code = code or _CODES.get(status, "Error")
        return self.answer(status, {"error": {"code": code, "message": message}}, headers)

    def refused(self, refusal: Refusal) -> Response:
        headers = {}
        if refusal.retry_after is not None:
            headers["Retry-After"] = str(refusal.retry_after)
        messages = {
            "rate_limited": "Please reduce your request rate.",
            "outage": "The service is unavailable. Please retry.",
            "server_error": "We encountered an internal error. Please try again.",
        }
        message = messages.get(refusal.reason, f"Forced status {refusal.status}.")
        return self.error(refusal.status, message, headers=headers)

    async def admitted(
        self, request: Request, records: int = 0, body_bytes: int = 0
    ) -> Response | None:
        """The refusal to send back, if the gate or the credentials turn the request away."""
        refusal = await self.gate.admit(records=records, body_bytes=body_bytes)
        if refusal is not None:
            return self.refused(refusal)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self.error(401, "Missing or malformed bearer token.")
        return None

    # -- the API --------------------------------------------------------------------------

    async def put_object(self, request: Request) -> Response:
        path = request.path_params["path"]
        body = await request.body()
        name = path.rpartition("/")[2]
        rows: list[dict[str, Any]] | None = None
        problem = None
        if PART.match(name):
            try:
                rows = decode_part(name, body)
            except ValueError as error:
                problem = str(error)
        refused = await self.admitted(request, len(rows or ()), len(body))
        if refused is not None:
            return refused
        if not _valid_path(path):
            return self.error(400, f"Invalid object name {path!r}.", "InvalidObjectName")
        if len(body) > MAX_PART_BYTES:
            return self.error(413, f"Objects are at most {MAX_PART_BYTES} bytes.")
        digest = hashlib.sha256(body).hexdigest()
        claimed = request.headers.get("X-Content-SHA256")
        if claimed is not None and claimed.lower() != digest:
            return self.error(400, "X-Content-SHA256 does not match the body.", "BadDigest")
        if problem is not None:
            return self.error(400, problem, "InvalidPart")
        # Replacing keeps the object's place: a re-sent part is not "newer" than later ones.
        self.objects[path] = StoredObject(body, digest, rows)
        payload = {"path": path, "size": len(body), "sha256": digest}
        return self.answer(200, payload, {"ETag": f'"{digest}"'})

    async def get_object(self, request: Request) -> Response:
        refused = await self.admitted(request)
        if refused is not None:
            return refused
        path = request.path_params["path"]
        stored = self.objects.get(path)
        if stored is None:
            return self.error(404, f"No object at {path!r}.")
        return self.answer(200, None, {"ETag": f'"{stored.sha256}"'}, stored.data)

    async def list_objects(self, request: Request) -> Response:
        refused = await self.admitted(request)
        if refused is not None:
            return refused
        prefix = request.query_params.get("prefix", "")
        listed = [
            {"path": path, "size": len(stored.data), "sha256": stored.sha256}
            for path, stored in sorted(self.objects.items())
            if path.startswith(prefix)
        ]
        return self.answer(200, {"objects": listed})

    # -- control --------------------------------------------------------------------------

    def records(self) -> dict[str, Any]:
        state: dict[str, dict[str, Any]] = {}
        for stored in self.objects.values():
            for row in stored.rows or ():
                key_column = next(c for c in row if c != OP_COLUMN)
                key = str(row[key_column])
                if row.get(OP_COLUMN) == "remove":
                    state.pop(key, None)
                else:
                    state[key] = {c: v for c, v in row.items() if c != OP_COLUMN}
        return {"count": len(state), "records": state}

    def reset(self) -> None:
        self.objects.clear()


def _valid_path(path: str) -> bool:
    return bool(path) and all(segment not in ("", ".", "..") for segment in path.split("/"))


def create_app(
    config: FaultConfig | None = None, *, clock: Callable[[], float] = time.monotonic
) -> Starlette:
    store = ObjectStore(Gate(config, clock))
    routes: list[BaseRoute] = [
        Route("/objects", store.list_objects, methods=["GET"]),
        Route("/objects/{path:path}", store.put_object, methods=["PUT"]),
        Route("/objects/{path:path}", store.get_object, methods=["GET"]),
        *control_routes(store.gate, store.records, store.reset),
    ]
    app = Starlette(routes=routes)
    app.state.store = store
    return app
