"""A local Google Ads API (REST) for Customer Match: offline user data jobs on user lists.

Paths (`{v}` is any `v<digits>`, echoed in the error `@type`):

    POST /{v}/customers/{cid}/offlineUserDataJobs:create          -> {"resourceName"}
    POST /{v}/customers/{cid}/offlineUserDataJobs/{id}:addOperations -> {} | {"partialFailureError"}
    POST /{v}/customers/{cid}/offlineUserDataJobs/{id}:run        -> {"name"} (long-running op)
    GET  /{v}/customers/{cid}/operations/{op}                     -> {"name", "done", ...}
    POST /{v}/customers/{cid}/googleAds:search                    -> {"results": [...]}
         (GAQL on `offline_user_data_job` or `user_list`, by resource_name)

Every request needs `Authorization: Bearer <token>` (401 UNAUTHENTICATED) and a
`developer-token` (400 `requestError: DEVELOPER_TOKEN_PARAMETER_MISSING`); an unknown customer
answers 403 `authorizationError: USER_PERMISSION_DENIED`, an unknown user list 400
`offlineUserDataJobError: INVALID_USER_LIST_ID`, an unknown job 404 NOT_FOUND. Errors use
Google's REST shape: `{"error": {code, message, status, details: [GoogleAdsFailure]}}`.

Operations are checked one by one: an operation without identifiers, with more than 20, or
with a value that is not 64 lowercase hex is a per-operation error, and so is a row whose
first hash the Gate rejects; with `enablePartialFailure` those come back in
`partialFailureError` located at `operations[i]` and the rest are kept, without it the
whole request fails. Over 100,000 identifiers, creates and removes in one job, creates in
a job whose consent is DENIED, or a body over the byte cap fail the whole request.

A job is PENDING until `:run`, then RUNNING for `job_polls` status reads (search or the
operation), then SUCCESS, and only then is its membership applied: per user list, a set of
members keyed by the first hash of each operation; a create adds (or extends) a member,
a remove drops the members keyed by any of its hashes, so both are idempotent.
`create_app(fail_jobs="UNKNOWN")` makes every job end FAILED with that `failureReason`.

Quota refusals are 429 RESOURCE_EXHAUSTED with `quotaError` and `quotaErrorDetails.retryDelay`;
forced 429s (`force_status`) also carry `Retry-After: force_retry_after`.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from switchyard.destinations.google_ads.spec import (
    MAX_IDENTIFIERS_PER_OPERATION,
    MAX_IDENTIFIERS_PER_REQUEST,
    MAX_PAYLOAD_BYTES,
    SIM_CUSTOMER_ID,
    SIM_OTHER_USER_LIST_ID,
    SIM_USER_LIST_ID,
)
from switchyard.simulators.control import FaultConfig, Gate, Refusal, control_routes, json_response

Json = dict[str, Any]

HASH = re.compile(r"^[0-9a-f]{64}$")
VERSION = re.compile(r"^v\d+$")
DIGITS = re.compile(r"^\d+$")
IDENTIFIER_FIELDS = {"hashedEmail": "hashed_email", "hashedPhoneNumber": "hashed_phone_number"}
_RESOURCE_NAME = re.compile(r"resource_name\s*=\s*'([^']+)'")
_FROM = re.compile(r"\bFROM\s+(\w+)", re.IGNORECASE)

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    409: "The operation was aborted.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
    504: "The request timed out.",
}
# What a forced or random failure of each status says in GoogleAdsFailure terms.
_FORCED_CODES: dict[int, tuple[str, str]] = {
    400: ("requestError", "UNKNOWN"),
    401: ("authenticationError", "OAUTH_TOKEN_INVALID"),
    403: ("authorizationError", "DEVELOPER_TOKEN_NOT_APPROVED"),
    409: ("databaseError", "CONCURRENT_MODIFICATION"),
    500: ("internalError", "INTERNAL_ERROR"),
    503: ("internalError", "TRANSIENT_ERROR"),
}
MISSING = ("offlineUserDataJobError", "MISSING_USER_IDENTIFIER")
TOO_MANY = ("offlineUserDataJobError", "TOO_MANY_USER_IDENTIFIERS")
TOO_MANY_MESSAGE = (
    "Maximum number of user identifiers allowed per request is 100,000 and per operation is 20."
)
# The reason a Gate-rejected row is given: Google's wording for a row it cannot use.
REJECTED_CODE = MISSING
REJECTED_MESSAGE = "The user identifier is missing valid data."


class GoogleAdsError(Exception):
    """A whole-request failure, rendered in Google's REST error shape."""

    def __init__(
        self,
        status: int,
        errors: list[Json] | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or _MESSAGES.get(status, "error"))
        self.status = status
        self.errors = errors
        self.message = message or _MESSAGES.get(status, "error")
        self.headers = headers


def ads_error(code: tuple[str, str], message: str, path: list[Json] | None = None) -> Json:
    error: Json = {"errorCode": {code[0]: code[1]}, "message": message}
    if path:
        error["location"] = {"fieldPathElements": path}
    return error


def failure(version: str, errors: list[Json]) -> Json:
    return {
        "@type": f"type.googleapis.com/google.ads.googleads.{version}.errors.GoogleAdsFailure",
        "errors": errors,
        "requestId": uuid.uuid4().hex[:22],
    }


@dataclass(frozen=True)
class Problem:
    """Why one operation is turned down: Google's error code, message and where."""

    code: tuple[str, str]
    message: str
    tail: list[Json] = field(default_factory=list)


@dataclass
class Job:
    id: int
    customer_id: str
    user_list: str
    consent: Json | None
    status: str = "PENDING"
    kind: str | None = None  # "create" or "remove", set by the first operation
    operations: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    polls: int = 0
    failure_reason: str | None = None
    operation_id: str | None = None

    @property
    def resource_name(self) -> str:
        return f"customers/{self.customer_id}/offlineUserDataJobs/{self.id}"


class GoogleAdsSimulator:
    def __init__(
        self,
        gate: Gate,
        user_lists: Mapping[str, Iterable[str]],
        max_body_bytes: int,
        fail_jobs: str | None,
    ) -> None:
        self.gate = gate
        self.user_lists = {cid: frozenset(lists) for cid, lists in user_lists.items()}
        self.max_body_bytes = max_body_bytes
        self.fail_jobs = fail_jobs
        self.reset()

    def reset(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.operations: dict[str, Job] = {}
        # user list resource name -> first hash -> {(identifier field, hash)}
        self.members: dict[str, dict[str, set[tuple[str, str]]]] = {}
        self._ids = itertools.count(900_000_001)

    # -- state ---------------------------------------------------------------------------

    def records(self) -> Json:
        out: dict[str, Json] = {}
        for user_list, members in sorted(self.members.items()):
            for key, identifiers in members.items():
                record = out.setdefault(key, {"userLists": []})
                record["userLists"].append(user_list)
                for name, value in sorted(identifiers):
                    values = record.setdefault(name, [])
                    if value not in values:
                        values.append(value)
        return {"count": len(out), "records": out}

    def _complete(self, job: Job) -> None:
        if self.fail_jobs:
            job.status, job.failure_reason = "FAILED", self.fail_jobs
            return
        members = self.members.setdefault(job.user_list, {})
        for kind, identifiers in job.operations:
            if kind == "create":
                members.setdefault(identifiers[0][1], set()).update(identifiers)
            else:
                for _, value in identifiers:
                    members.pop(value, None)
        job.status = "SUCCESS"

    def read_status(self, job: Job) -> None:
        """A status read: RUNNING for `job_polls` reads after `:run`, then finished."""
        if job.status != "RUNNING":
            return
        if job.polls >= self.gate.config.job_polls:
            self._complete(job)
        else:
            job.polls += 1

    # -- request checks ------------------------------------------------------------------

    async def admit(
        self, request: Request, version: str, cid: str, body: bytes, records: int = 0
    ) -> None:
        """The Gate first (faults, quota), then what Google checks before reading the body."""
        refusal = await self.gate.admit(records=records, body_bytes=len(body))
        if refusal is not None:
            raise refused(refusal)
        if not VERSION.match(version):
            raise GoogleAdsError(404, message=f"API version {version} is not known.")
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise GoogleAdsError(401)
        if not request.headers.get("developer-token"):
            raise GoogleAdsError(
                400,
                [
                    ads_error(
                        ("requestError", "DEVELOPER_TOKEN_PARAMETER_MISSING"),
                        "The developer-token parameter is required for all requests.",
                    )
                ],
            )
        login = request.headers.get("login-customer-id")
        if not DIGITS.match(cid) or (login is not None and not DIGITS.match(login)):
            raise GoogleAdsError(
                400, [ads_error(("requestError", "INVALID_CUSTOMER_ID"), "Invalid customer ID.")]
            )
        if cid not in self.user_lists:
            raise GoogleAdsError(
                403,
                [
                    ads_error(
                        ("authorizationError", "USER_PERMISSION_DENIED"),
                        "User doesn't have permission to access customer. Note: If you're "
                        "accessing a client customer, the manager's customer ID must be set "
                        "in the 'login-customer-id' header.",
                    )
                ],
            )

    def job(self, cid: str, job_id: str) -> Job:
        job = self.jobs.get(int(job_id)) if DIGITS.match(job_id) else None
        if job is None or job.customer_id != cid:
            raise GoogleAdsError(404)
        return job

    # -- endpoints -----------------------------------------------------------------------

    async def create_job(self, request: Request, version: str, cid: str) -> Json:
        raw = await request.body()
        await self.admit(request, version, cid, raw)
        body = parse_json(raw)
        job = body.get("job")
        if type(job) is not dict or job.get("type") != "CUSTOMER_MATCH_USER_LIST":
            raise invalid("job.type must be CUSTOMER_MATCH_USER_LIST", "job")
        metadata = job.get("customerMatchUserListMetadata")
        user_list = metadata.get("userList") if type(metadata) is dict else None
        prefix = f"customers/{cid}/userLists/"
        if (
            type(user_list) is not str
            or not user_list.startswith(prefix)
            or user_list[len(prefix) :] not in self.user_lists[cid]
        ):
            raise GoogleAdsError(
                400,
                [
                    ads_error(
                        ("offlineUserDataJobError", "INVALID_USER_LIST_ID"),
                        "The user list ID provided for the job is invalid.",
                        [{"fieldName": "job"}, {"fieldName": "customer_match_user_list_metadata"}],
                    )
                ],
            )
        consent = metadata.get("consent") if type(metadata) is dict else None
        if consent is not None and type(consent) is not dict:
            raise invalid("consent must be an object", "consent")
        new = Job(next(self._ids), cid, user_list, consent)
        self.jobs[new.id] = new
        return {"resourceName": new.resource_name}

    async def add_operations(self, request: Request, version: str, cid: str, job_id: str) -> Json:
        raw = await request.body()
        try:
            body: Json | None = parse_json(raw)
        except GoogleAdsError:
            body = None
        operations = body.get("operations") if body is not None else None
        count = len(operations) if type(operations) is list else 0
        await self.admit(request, version, cid, raw, records=count)
        body = parse_json(raw) if body is None else body
        job = self.job(cid, job_id)
        if len(raw) > self.max_body_bytes:
            raise GoogleAdsError(
                400,
                [
                    ads_error(
                        ("sizeLimitError", "REQUEST_SIZE_LIMIT_EXCEEDED"),
                        "The number of entries in the request exceeds the system limit.",
                    )
                ],
            )
        if job.status != "PENDING":
            raise GoogleAdsError(
                400,
                [
                    ads_error(
                        ("offlineUserDataJobError", "JOB_ALREADY_STARTED"),
                        "Once the upload job is started, new operations cannot be added.",
                    )
                ],
            )
        if type(operations) is not list or not operations:
            raise invalid("operations is required", "operations")
        kind, accepted, errors = self.check_operations(job, operations)
        if errors and body.get("enablePartialFailure") is not True:
            raise GoogleAdsError(400, errors)
        job.kind = kind
        job.operations.extend(accepted)
        if not errors:
            return {}
        first = errors[0]
        return {
            "partialFailureError": {
                "code": 3,
                "message": f"{first['message']}, at {render_path(first.get('location'))}",
                "details": [failure(version, errors)],
            }
        }

    def check_operations(
        self, job: Job, operations: list[Any]
    ) -> tuple[str, list[tuple[str, list[tuple[str, str]]]], list[Json]]:
        """(the job's kind, the operations kept, per-operation errors) or a whole failure."""
        kinds: set[str] = set()
        total = 0
        parsed: list[tuple[str, Any]] = []
        for index, operation in enumerate(operations):
            kind = operation_kind(operation, index)
            kinds.add(kind)
            data = operation[kind]
            identifiers = data.get("userIdentifiers") if type(data) is dict else None
            if identifiers is not None and type(identifiers) is not list:
                raise invalid("userIdentifiers must be a list", f"operations[{index}]")
            total += len(identifiers or ())
            parsed.append((kind, identifiers or []))
        if total > MAX_IDENTIFIERS_PER_REQUEST:
            raise GoogleAdsError(
                400,
                [ads_error(TOO_MANY, TOO_MANY_MESSAGE)],
            )
        if job.kind is not None:
            kinds.add(job.kind)
        if len(kinds) > 1:
            raise GoogleAdsError(
                400,
                [
                    ads_error(
                        ("offlineUserDataJobError", "CONFLICTING_OPERATION"),
                        "Mixing creation and removal of offline data in the same job is not "
                        "allowed.",
                    )
                ],
            )
        kind = kinds.pop()
        consent = job.consent or {}
        if kind == "create" and "DENIED" in (
            consent.get("adUserData"),
            consent.get("adPersonalization"),
        ):
            raise GoogleAdsError(
                400,
                [
                    ads_error(
                        ("offlineUserDataJobError", "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"),
                        "The customer has not accepted the customer data terms in the "
                        "conversion settings page.",
                    )
                ],
            )
        accepted: list[tuple[str, list[tuple[str, str]]]] = []
        errors: list[Json] = []
        for index, (op_kind, identifiers) in enumerate(parsed):
            checked = self.check_identifiers(identifiers)
            if not isinstance(checked, Problem) and self.gate.rejects(checked[0][1]):
                checked = Problem(REJECTED_CODE, REJECTED_MESSAGE)
            if isinstance(checked, Problem):
                path: list[Json] = [
                    {"fieldName": "operations", "index": index},
                    {"fieldName": op_kind},
                ]
                errors.append(ads_error(checked.code, checked.message, path + checked.tail))
            else:
                accepted.append((op_kind, checked))
        return kind, accepted, errors

    @staticmethod
    def check_identifiers(identifiers: list[Any]) -> Problem | list[tuple[str, str]]:
        """An operation's (field, hash) pairs, or why Google would turn it down."""
        if not identifiers:
            return Problem(MISSING, "The user identifier is missing valid data.")
        if len(identifiers) > MAX_IDENTIFIERS_PER_OPERATION:
            return Problem(TOO_MANY, TOO_MANY_MESSAGE)
        values: list[tuple[str, str]] = []
        for position, identifier in enumerate(identifiers):
            if type(identifier) is not dict or len(identifier) != 1:
                raise invalid("a user identifier takes exactly one value", "user_identifiers")
            ((name, value),) = identifier.items()
            if name not in IDENTIFIER_FIELDS:
                raise invalid(f"{name} is not simulated", "user_identifiers")
            if type(value) is not str or not HASH.match(value):
                return Problem(
                    ("offlineUserDataJobError", "INVALID_SHA256_FORMAT"),
                    "The SHA256 encoded value is malformed.",
                    [
                        {"fieldName": "user_identifiers", "index": position},
                        {"fieldName": IDENTIFIER_FIELDS[name]},
                    ],
                )
            values.append((name, value))
        return values

    async def run_job(self, request: Request, version: str, cid: str, job_id: str) -> Json:
        await self.admit(request, version, cid, await request.body())
        job = self.job(cid, job_id)
        if job.status != "PENDING":
            raise GoogleAdsError(
                400,
                [
                    ads_error(
                        ("offlineUserDataJobError", "JOB_ALREADY_STARTED"),
                        "Once the upload job is started, new operations cannot be added.",
                    )
                ],
            )
        job.status = "RUNNING"
        job.operation_id = uuid.uuid4().hex[:16]
        self.operations[job.operation_id] = job
        return {"name": f"customers/{cid}/operations/{job.operation_id}"}

    async def get_operation(self, request: Request, version: str, cid: str, op: str) -> Json:
        await self.admit(request, version, cid, b"")
        job = self.operations.get(op)
        if job is None or job.customer_id != cid:
            raise GoogleAdsError(404)
        self.read_status(job)
        answer: Json = {"name": f"customers/{cid}/operations/{op}", "done": False}
        if job.status == "SUCCESS":
            answer.update(
                done=True, response={"@type": "type.googleapis.com/google.protobuf.Empty"}
            )
        elif job.status == "FAILED":
            answer.update(done=True, error={"code": 2, "message": job.failure_reason})
        return answer

    async def search(self, request: Request, version: str, cid: str) -> Json:
        raw = await request.body()
        await self.admit(request, version, cid, raw)
        body = parse_json(raw)
        query = body.get("query")
        source = _FROM.search(query) if type(query) is str else None
        name = _RESOURCE_NAME.search(query) if type(query) is str else None
        if source is None or name is None:
            raise GoogleAdsError(
                400,
                [
                    ads_error(
                        ("queryError", "QUERY_ERROR"),
                        "This simulator answers queries on offline_user_data_job or user_list "
                        "filtered by resource_name.",
                    )
                ],
            )
        resource = name.group(1)
        if source.group(1) == "user_list":
            list_id = resource.rsplit("/", 1)[-1]
            if resource != f"customers/{cid}/userLists/{list_id}" or (
                list_id not in self.user_lists[cid]
            ):
                return {"results": []}
            return {
                "results": [{"userList": {"resourceName": resource, "id": list_id}}],
                "fieldMask": "userList.resourceName,userList.id",
            }
        if source.group(1) != "offline_user_data_job":
            raise GoogleAdsError(
                400, [ads_error(("queryError", "QUERY_ERROR"), "Unsupported resource.")]
            )
        job_id = resource.rsplit("/", 1)[-1]
        job = self.jobs.get(int(job_id)) if DIGITS.match(job_id) else None
        if job is None or job.resource_name != resource:
            return {"results": []}
        self.read_status(job)
        row: Json = {
            "resourceName": job.resource_name,
            "id": str(job.id),
            "type": "CUSTOMER_MATCH_USER_LIST",
            "status": job.status,
            "customerMatchUserListMetadata": {"userList": job.user_list},
        }
        if job.failure_reason:
            row["failureReason"] = job.failure_reason
        return {
            "results": [{"offlineUserDataJob": row}],
            "fieldMask": "offlineUserDataJob.id,offlineUserDataJob.status,"
            "offlineUserDataJob.failureReason",
        }


def parse_json(raw: bytes) -> Json:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GoogleAdsError(400, message="Invalid JSON payload received.") from None
    if type(body) is not dict:
        raise GoogleAdsError(400, message="Invalid JSON payload received. Expected an object.")
    return body


def invalid(message: str, where: str) -> GoogleAdsError:
    return GoogleAdsError(400, message=f"Invalid JSON payload received. {where}: {message}")


def operation_kind(operation: Any, index: int) -> str:
    keys = [
        k for k in ("create", "remove", "removeAll") if type(operation) is dict and k in operation
    ]
    if type(operation) is not dict or len(keys) != 1 or len(operation) != 1:
        raise invalid("exactly one of create, remove, removeAll", f"operations[{index}]")
    if keys[0] == "removeAll":
        raise invalid("removeAll is not simulated", f"operations[{index}]")
    return keys[0]


def render_path(location: Json | None) -> str:
    parts = []
    for element in (location or {}).get("fieldPathElements", ()):
        index = element.get("index")
        parts.append(element["fieldName"] + (f"[{index}]" if index is not None else ""))
    return ".".join(parts)


def refused(refusal: Refusal) -> GoogleAdsError:
    status = refusal.status
    headers: dict[str, str] = {}
    if status == 429:
        delay = refusal.retry_after or 1
        if refusal.reason == "forced":
            headers["Retry-After"] = str(delay)
        return GoogleAdsError(
            429,
            [
                {
                    "errorCode": {"quotaError": "RESOURCE_EXHAUSTED"},
                    "message": f"Too many requests. Retry in {delay} seconds.",
                    "details": {
                        "quotaErrorDetails": {
                            "rateScope": "DEVELOPER",
                            "rateName": "Number of operations for basic access",
                            "retryDelay": f"{delay}s",
                        }
                    },
                }
            ],
            headers=headers,
        )
    code = _FORCED_CODES.get(status, ("internalError", "INTERNAL_ERROR"))
    return GoogleAdsError(status, [ads_error(code, _MESSAGES.get(status, "error"))])


def render(error: GoogleAdsError, version: str) -> Response:
    status = error.status
    payload: Json = {
        "code": status,
        "message": error.message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if error.errors:
        payload["details"] = [failure(version if VERSION.match(version) else "v21", error.errors)]
    return json_response(status, {"error": payload}, error.headers)


Handler = Callable[..., Any]


def create_app(
    *,
    config: FaultConfig | None = None,
    user_lists: Mapping[str, Iterable[str]] | None = None,
    max_body_bytes: int = MAX_PAYLOAD_BYTES,
    fail_jobs: str | None = None,
) -> Starlette:
    """The simulator as an ASGI app; `user_lists` maps customer IDs to their list IDs."""
    gate = Gate(config)
    sim = GoogleAdsSimulator(
        gate,
        user_lists or {SIM_CUSTOMER_ID: (SIM_USER_LIST_ID, SIM_OTHER_USER_LIST_ID)},
        max_body_bytes,
        fail_jobs,
    )

    def endpoint(handler: Handler) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            params = dict(request.path_params)
            version = params["version"]
            try:
                answer = await handler(request, **params)
            except GoogleAdsError as error:
                gate.answered(error.status)
                return render(error, version)
            gate.answered(200)
            return json_response(200, answer)

        return serve

    base = "/{version}/customers/{cid}"
    routes: list[BaseRoute] = [
        Route(f"{base}/offlineUserDataJobs:create", endpoint(sim.create_job), methods=["POST"]),
        Route(
            base + "/offlineUserDataJobs/{job_id}:addOperations",
            endpoint(sim.add_operations),
            methods=["POST"],
        ),
        Route(base + "/offlineUserDataJobs/{job_id}:run", endpoint(sim.run_job), methods=["POST"]),
        Route(base + "/operations/{op}", endpoint(sim.get_operation), methods=["GET"]),
        Route(f"{base}/googleAds:search", endpoint(sim.search), methods=["POST"]),
        *control_routes(gate, sim.records, sim.reset),
    ]
    app = Starlette(routes=routes)
    app.state.simulator = sim
    return app
