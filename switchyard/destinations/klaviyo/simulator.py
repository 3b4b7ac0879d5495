"""A local Klaviyo: bulk profile import jobs, profiles, list membership, and Klaviyo's errors.

Every path needs `Authorization: Klaviyo-API-Key <key>` (401 `not_authenticated` without
it, `authentication_failed` with a wrong key) and `revision: YYYY-MM-DD` (400 without it).
Bodies are JSON:API (`application/vnd.api+json`):

    POST   /api/profile-bulk-import-jobs                     202 the job, status "queued"
    GET    /api/profile-bulk-import-jobs                     200 the jobs, newest first
    GET    /api/profile-bulk-import-jobs/{id}                200 the job: "processing" for
                                                             `job_polls` polls, then "complete"
    GET    /api/profile-bulk-import-jobs/{id}/import-errors  200 the rows that failed
    GET    /api/profiles?filter=any(email,["a@x.io",...])    200 matching profiles
    GET    /api/lists/{id}                                   200 the list
    DELETE /api/lists/{id}/relationships/profiles            204 (at most 1,000 profiles)

A job holds at most 10,000 profiles in at most 5 MB (400 `invalid` / 413 beyond), each at
most 100 KB. A malformed document is refused whole (400 `invalid`, `source.pointer` naming
the spot); a bad profile inside a good document fails only that row, reported as an
`import-error` whose pointer is `/data/attributes/profiles/data/<index>/...`. The import is
an upsert: a profile is matched on email, then phone_number, then external_id; nulls are
ignored (the bulk import cannot clear a field); properties merge; re-sending changes
nothing. Lists paged with `page[size]` (at most 100) and `page[cursor]`.

Rate limiting, faults and per-row refusals come from the shared `Gate`: 429 `throttled`
with `Retry-After`, and `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset`
(seconds) on every answer while a limit is set. `/_sim/records` holds the profiles keyed
by email, else phone_number, else external_id, each with the lists it is on.

Run it alone: python -m switchyard.simulators.hub --only klaviyo --port 8788
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.destinations.klaviyo.spec import (
    DEFAULT_API_KEY_ENV,
    DEV_API_KEY,
    MAX_JOB_BYTES,
    MAX_PROFILE_BYTES,
    MAX_PROFILES_PER_JOB,
    SIM_LIST_ID,
)
from switchyard.simulators.control import FaultConfig, Gate, Refusal, control_routes

JSONAPI = "application/vnd.api+json"
IDENTIFIER_FIELDS = ("email", "phone_number", "external_id")
STRING_ATTRIBUTES = frozenset(
    {
        *IDENTIFIER_FIELDS,
        "_kx",
        "first_name",
        "last_name",
        "organization",
        "locale",
        "title",
        "image",
    }
)
LOCATION_FIELDS = frozenset(
    {
        "address1",
        "address2",
        "city",
        "country",
        "latitude",
        "longitude",
        "region",
        "zip",
        "timezone",
        "ip",
    }
)
MAX_LIST_REMOVALS = 1_000
MAX_PAGE_SIZE = 100
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.pre)?$")
_FILTER = re.compile(r"^(equals|any)\((\w+),(.*)\)$", re.DOTALL)
_ERROR_CODES = {
    400: ("invalid", "Invalid input."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    409: ("conflict", "Conflict."),
    413: ("payload_too_large", "Payload too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
    429: ("throttled", "Request was throttled."),
    500: ("error", "A server error occurred."),
    502: ("bad_gateway", "Bad gateway."),
    503: ("service_unavailable", "Service unavailable."),
    504: ("gateway_timeout", "Gateway timeout."),
}

Record = dict[str, Any]
Headers = dict[str, str]


class Refused(Exception):
    """A whole request turned down, in Klaviyo's words."""

    def __init__(
        self,
        status: int,
        detail: str,
        pointer: str | None = None,
        parameter: str | None = None,
        code: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code  # (code, title) when not the status's usual pair
        self.source: dict[str, str] = {}
        if pointer is not None:
            self.source["pointer"] = pointer
        if parameter is not None:
            self.source["parameter"] = parameter


def error_body(
    status: int,
    detail: str,
    source: Mapping[str, str] | None = None,
    code: tuple[str, str] | None = None,
) -> dict[str, Any]:
    name, title = code or _ERROR_CODES.get(status, ("error", "An error occurred."))
    error: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "status": status,
        "code": name,
        "title": title,
        "detail": detail,
    }
    if source:
        error["source"] = dict(source)
    return {"errors": [error]}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass
class Job:
    id: str
    created_at: datetime
    total: int
    list_ids: list[str]
    errors: list[dict[str, Any]]
    polls_before_done: int
    polls: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.polls > self.polls_before_done

    def attributes(self) -> dict[str, Any]:
        failed = len(self.errors)
        if self.done:
            status, completed, failed_count = "complete", self.total - failed, failed
        elif self.polls == 0:
            status, completed, failed_count = "queued", 0, 0
        else:
            share = self.polls / (self.polls_before_done + 1)
            status, completed, failed_count = "processing", int(self.total * share), 0
        return {
            "status": status,
            "created_at": _iso(self.created_at),
            "total_count": self.total,
            "completed_count": min(completed, self.total - failed),
            "failed_count": failed_count,
            "completed_at": _iso(self.completed_at),
            "expires_at": _iso(self.created_at + timedelta(days=7)),
            "started_at": _iso(self.started_at),
        }


@dataclass
class KlaviyoState:
    """Profiles (by id), the identifier indexes, list membership and the import jobs."""

    list_names: dict[str, str]
    profiles: dict[str, Record] = field(default_factory=dict)
    created: dict[str, datetime] = field(default_factory=dict)
    index: dict[str, dict[str, str]] = field(
        default_factory=lambda: {name: {} for name in IDENTIFIER_FIELDS}
    )
    members: dict[str, set[str]] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.members = {list_id: set() for list_id in self.list_names}

    def find(self, attributes: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """(profile id, conflict): matched on email, then phone_number, then external_id."""
        found: str | None = None
        for name in IDENTIFIER_FIELDS:
            value = attributes.get(name)
            if value is None:
                continue
            other = self.index[name].get(_index_key(name, value))
            if other is None:
                continue
            if found is None:
                found = other
            elif other != found:
                return found, name
        return found, None

    def upsert(self, attributes: Mapping[str, Any], list_ids: list[str]) -> str | None:
        """Apply one profile; returns the identifier that clashes with another profile."""
        pid, clash = self.find(attributes)
        if clash is not None:
            return clash
        if pid is None:
            pid = f"01SIMPROF{next(self.ids):017d}"
            self.profiles[pid] = {"id": pid}
            self.created[pid] = datetime.now(UTC)
        profile = self.profiles[pid]
        for name, value in attributes.items():
            if value is None:
                continue  # the bulk import does not clear fields
            if name in IDENTIFIER_FIELDS:
                old = profile.get(name)
                if old is not None and old != value:
                    self.index[name].pop(_index_key(name, old), None)
                self.index[name][_index_key(name, value)] = pid
            if name in ("properties", "location"):
                merged = dict(profile.get(name) or {})
                merged.update({k: v for k, v in value.items() if v is not None})
                profile[name] = merged
            else:
                profile[name] = value
        for list_id in list_ids:
            self.members[list_id].add(pid)
        return None

    def record_key(self, profile: Mapping[str, Any]) -> str:
        for name in IDENTIFIER_FIELDS:
            value = profile.get(name)
            if value is not None:
                return str(value)
        return str(profile.get("id"))

    def records(self) -> dict[str, Any]:
        lists_of: dict[str, list[str]] = {}
        for list_id in sorted(self.members):
            for pid in self.members[list_id]:
                lists_of.setdefault(pid, []).append(list_id)
        records = {
            self.record_key(profile): {**profile, "lists": lists_of.get(pid, [])}
            for pid, profile in self.profiles.items()
        }
        return {"count": len(records), "records": records}


def _index_key(name: str, value: Any) -> str:
    # Klaviyo treats email addresses case-insensitively.
    text = str(value)
    return text.lower() if name == "email" else text


# -- validating the import document ---------------------------------------------------------


def _profiles_of(doc: Any) -> list[Any] | None:
    """The document's profile list when it has the shape of one (to count them early)."""
    try:
        profiles = doc["data"]["attributes"]["profiles"]["data"]
    except (KeyError, TypeError):
        return None
    return profiles if type(profiles) is list else None


def _require_object(value: Any, pointer: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise Refused(400, f"'{pointer.rsplit('/', 1)[-1]}' must be an object.", pointer)
    return value


def validate_import(doc: Any, lists: Collection[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(profile attributes, list ids) of a well-formed import document; raises Refused."""
    if type(doc) is not dict:
        raise Refused(400, "The document must be a JSON object.", "/")
    data = _require_object(doc.get("data"), "/data")
    if data.get("type") != "profile-bulk-import-job":
        raise Refused(400, "'type' must be 'profile-bulk-import-job'.", "/data/type")
    attributes = _require_object(data.get("attributes"), "/data/attributes")
    profiles = _require_object(attributes.get("profiles"), "/data/attributes/profiles")
    items = profiles.get("data")
    pointer = "/data/attributes/profiles/data"
    if type(items) is not list or not items:
        raise Refused(400, "'data' must be a non-empty array of profiles.", pointer)
    if len(items) > MAX_PROFILES_PER_JOB:
        raise Refused(
            400,
            f"A job accepts at most {MAX_PROFILES_PER_JOB} profiles; received {len(items)}.",
            pointer,
        )
    out = [_validate_profile(item, f"{pointer}/{index}") for index, item in enumerate(items)]
    return out, _validate_lists(data.get("relationships"), lists)


def _validate_profile(item: Any, pointer: str) -> dict[str, Any]:
    item = _require_object(item, pointer)
    if item.get("type") != "profile":
        raise Refused(400, "'type' must be 'profile'.", f"{pointer}/type")
    if len(orjson.dumps(item)) > MAX_PROFILE_BYTES:
        raise Refused(400, "A profile may be at most 100 KB.", pointer)
    attributes = _require_object(item.get("attributes"), f"{pointer}/attributes")
    for name, value in attributes.items():
        where = f"{pointer}/attributes/{name}"
        if name in STRING_ATTRIBUTES:
            if value is not None and type(value) is not str:
                raise Refused(400, f"'{name}' must be a string.", where)
        elif name == "properties":
            if value is not None and type(value) is not dict:
                raise Refused(400, "'properties' must be an object.", where)
        elif name == "location":
            if value is not None:
                unknown = set(_require_object(value, where)) - LOCATION_FIELDS
                if unknown:
                    first = sorted(unknown)[0]
                    raise Refused(400, f"'{first}' is not a valid location field.", where)
        else:
            raise Refused(400, f"'{name}' is not a valid field for the resource 'profile'.", where)
    return attributes


def _validate_lists(relationships: Any, lists: Collection[str]) -> list[str]:
    if relationships is None:
        return []
    relationships = _require_object(relationships, "/data/relationships")
    linked = relationships.get("lists")
    if linked is None:
        return []
    items = _require_object(linked, "/data/relationships/lists").get("data")
    if type(items) is not list:
        raise Refused(400, "'data' must be an array.", "/data/relationships/lists/data")
    ids: list[str] = []
    for index, item in enumerate(items):
        where = f"/data/relationships/lists/data/{index}"
        item = _require_object(item, where)
        if item.get("type") != "list" or type(item.get("id")) is not str:
            raise Refused(400, "A list is {'type': 'list', 'id': <list id>}.", where)
        if item["id"] not in lists:
            raise Refused(404, f"A list with id {item['id']} does not exist.", f"{where}/id")
        ids.append(item["id"])
    return ids


def row_error(attributes: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, detail) when Klaviyo would fail this profile inside an accepted job."""
    if not any(attributes.get(name) for name in IDENTIFIER_FIELDS):
        return "", "A profile needs one of email, phone_number or external_id."
    email = attributes.get("email")
    if email is not None and not _EMAIL.match(email):
        return "email", f"Invalid email address: '{email}'."
    phone = attributes.get("phone_number")
    if phone is not None and not _E164.match(phone):
        return "phone_number", (
            f"Invalid phone number format: '{phone}' (example of a valid format: +12345678901)."
        )
    return None


# -- the simulator ----------------------------------------------------------------------------


class KlaviyoSimulator:
    def __init__(self, gate: Gate, api_keys: Collection[str], lists: Mapping[str, str]) -> None:
        self.gate = gate
        self.api_keys = frozenset(api_keys)
        self._lists = dict(lists)
        self.reset()

    def reset(self) -> None:
        self.state = KlaviyoState(list_names=dict(self._lists))

    def records(self) -> dict[str, Any]:
        return self.state.records()

    # -- plumbing ---------------------------------------------------------------------------

    def _answer(self, status: int, payload: Any, headers: Headers) -> Response:
        self.gate.answered(status)
        if payload is None:
            return Response(status_code=status, headers=headers)
        return Response(orjson.dumps(payload), status, headers, media_type=JSONAPI)

    def _rate_headers(self) -> Headers:
        allowance = self.gate.allowance_headers()
        if allowance is None:
            return {}
        limit, remaining, reset = allowance
        return {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
        }

    def _refusal(self, refusal: Refusal, headers: Headers) -> Response:
        if refusal.retry_after is not None:
            headers["Retry-After"] = str(refusal.retry_after)
        if refusal.status == 429:
            wait = refusal.retry_after or 1
            unit = "second" if wait == 1 else "seconds"
            detail = f"Request was throttled. Expected available in {wait} {unit}."
        elif refusal.reason == "outage":
            detail = "Klaviyo is temporarily unavailable. Please try again later."
        else:
            detail = f"The request could not be completed (HTTP {refusal.status})."
        return self._answer(refusal.status, error_body(refusal.status, detail), headers)

    def _check_credentials(self, request: Request) -> None:
        authorization = request.headers.get("authorization", "")
        scheme, _, key = authorization.partition(" ")
        if scheme != "Klaviyo-API-Key" or not key.strip():
            raise Refused(
                401, "Missing or invalid authorization scheme. Please use Klaviyo-API-Key."
            )
        if key.strip() not in self.api_keys:
            raise Refused(
                401,
                "Incorrect authentication credentials.",
                code=("authentication_failed", "Incorrect authentication credentials."),
            )
        revision = request.headers.get("revision")
        if revision is None:
            raise Refused(400, "The 'revision' header is required.", parameter="revision")
        if not _REVISION.match(revision):
            raise Refused(400, f"Invalid revision '{revision}'.", parameter="revision")

    async def _handle(
        self, request: Request, records: int = 0, body: bytes = b""
    ) -> tuple[Headers, Response | None]:
        """The gate and the credentials: a response when the request stops here."""
        refusal = await self.gate.admit(records=records, body_bytes=len(body))
        headers = self._rate_headers()
        if refusal is not None:
            return headers, self._refusal(refusal, headers)
        try:
            self._check_credentials(request)
        except Refused as refused:
            return headers, self._refused(refused, headers)
        return headers, None

    def _refused(self, refused: Refused, headers: Headers) -> Response:
        body = error_body(refused.status, refused.detail, refused.source, refused.code)
        return self._answer(refused.status, body, headers)

    @staticmethod
    def _base(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"

    # -- import jobs ------------------------------------------------------------------------

    async def create_job(self, request: Request) -> Response:
        body = await request.body()
        doc: Any = None
        if len(body) <= MAX_JOB_BYTES:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
        profiles = _profiles_of(doc)
        headers, stop = await self._handle(request, len(profiles or ()), body)
        if stop is not None:
            return stop
        try:
            if "json" not in request.headers.get("content-type", ""):
                raise Refused(415, f"Use the content type {JSONAPI}.")
            if len(body) > MAX_JOB_BYTES:
                raise Refused(413, "The request body may be at most 5 MB.")
            if doc is None:
                raise Refused(400, "The request body is not valid JSON.", "/")
            items, list_ids = validate_import(doc, self.state.members)
        except Refused as refused:
            return self._refused(refused, headers)
        job = self._run_import(items, list_ids)
        return self._answer(202, {"data": self._job_resource(job, self._base(request))}, headers)

    def _run_import(self, items: list[dict[str, Any]], list_ids: list[str]) -> Job:
        """Apply the profiles now; the job reports its progress as it is polled."""
        state = self.state
        job_id = f"SIM-{uuid.uuid4().hex[:20]}"
        errors: list[dict[str, Any]] = []
        for index, attributes in enumerate(items):
            pointer = f"/data/attributes/profiles/data/{index}"
            problem = row_error(attributes)
            key = state.record_key(attributes)
            if problem is None and self.gate.rejects(key):
                problem = "", f"The profile '{key}' was refused by this account's import rules."
            if problem is None:
                clash = state.upsert(attributes, list_ids)
                if clash is not None:
                    problem = clash, f"The {clash} '{attributes[clash]}' is another profile's."
            if problem is not None:
                name, detail = problem
                errors.append(
                    {
                        "type": "import-error",
                        "id": f"{job_id}-{index}",
                        "attributes": {
                            "code": "invalid",
                            "title": "Invalid input.",
                            "detail": detail,
                            "source": {
                                "pointer": f"{pointer}/attributes/{name}" if name else pointer
                            },
                            "original_payload": dict(attributes),
                        },
                    }
                )
        job = Job(
            id=job_id,
            created_at=datetime.now(UTC),
            total=len(items),
            list_ids=list_ids,
            errors=errors,
            polls_before_done=self.gate.config.job_polls,
        )
        state.jobs[job.id] = job
        return job

    def _job_resource(self, job: Job, base: str) -> dict[str, Any]:
        url = f"{base}/api/profile-bulk-import-jobs/{job.id}"
        return {
            "type": "profile-bulk-import-job",
            "id": job.id,
            "attributes": job.attributes(),
            "relationships": {
                "lists": {
                    "data": [{"type": "list", "id": list_id} for list_id in job.list_ids],
                    "links": {"self": f"{url}/relationships/lists", "related": f"{url}/lists"},
                },
                "profiles": {
                    "links": {"self": f"{url}/relationships/profiles", "related": f"{url}/profiles"}
                },
                "import-errors": {"links": {"related": f"{url}/import-errors"}},
            },
            "links": {"self": url},
        }

    async def get_job(self, request: Request) -> Response:
        headers, stop = await self._handle(request)
        if stop is not None:
            return stop
        job = self.state.jobs.get(request.path_params["id"])
        if job is None:
            return self._refused(Refused(404, "Job not found."), headers)
        was_done = job.done
        job.polls += 1
        now = datetime.now(UTC)
        job.started_at = job.started_at or now
        if job.done and not was_done:
            job.completed_at = now
        document = {"data": self._job_resource(job, self._base(request))}
        document["links"] = {"self": str(request.url)}
        return self._answer(200, document, headers)

    async def list_jobs(self, request: Request) -> Response:
        headers, stop = await self._handle(request)
        if stop is not None:
            return stop
        base = self._base(request)
        jobs = [self._job_resource(job, base) for job in reversed(self.state.jobs.values())]
        return self._page(request, jobs, headers)

    async def import_errors(self, request: Request) -> Response:
        headers, stop = await self._handle(request)
        if stop is not None:
            return stop
        job = self.state.jobs.get(request.path_params["id"])
        if job is None:
            return self._refused(Refused(404, "Job not found."), headers)
        return self._page(request, job.errors, headers)

    def _page(self, request: Request, items: list[dict[str, Any]], headers: Headers) -> Response:
        try:
            size, offset = _page_params(request)
        except Refused as refused:
            return self._refused(refused, headers)
        chunk = items[offset : offset + size]
        following = offset + size
        next_url = None
        if following < len(items):
            cursor = base64.urlsafe_b64encode(f"o:{following}".encode()).decode()
            next_url = str(request.url.include_query_params(**{"page[cursor]": cursor}))
        links = {"self": str(request.url), "next": next_url, "prev": None}
        return self._answer(200, {"data": chunk, "links": links}, headers)

    # -- profiles and lists -----------------------------------------------------------------

    async def get_profiles(self, request: Request) -> Response:
        headers, stop = await self._handle(request)
        if stop is not None:
            return stop
        state = self.state
        try:
            matched = _filter_profiles(request.query_params.get("filter"), state)
        except Refused as refused:
            return self._refused(refused, headers)
        base = self._base(request)
        resources = [self._profile_resource(pid, base) for pid in matched]
        return self._page(request, resources, headers)

    def _profile_resource(self, pid: str, base: str) -> dict[str, Any]:
        profile = self.state.profiles[pid]
        created = _iso(self.state.created[pid])
        attributes = {name: profile.get(name) for name in sorted(STRING_ATTRIBUTES - {"_kx"})}
        attributes.update(
            location=profile.get("location") or {},
            properties=profile.get("properties") or {},
            created=created,
            updated=created,
        )
        return {
            "type": "profile",
            "id": pid,
            "attributes": attributes,
            "links": {"self": f"{base}/api/profiles/{pid}"},
        }

    async def get_list(self, request: Request) -> Response:
        headers, stop = await self._handle(request)
        if stop is not None:
            return stop
        list_id = request.path_params["id"]
        name = self.state.list_names.get(list_id)
        if name is None:
            return self._refused(Refused(404, f"A list with id {list_id} does not exist."), headers)
        resource = {
            "type": "list",
            "id": list_id,
            "attributes": {"name": name, "opt_in_process": "single_opt_in"},
            "links": {"self": f"{self._base(request)}/api/lists/{list_id}"},
        }
        return self._answer(200, {"data": resource}, headers)

    async def remove_from_list(self, request: Request) -> Response:
        body = await request.body()
        try:
            doc: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        items = doc.get("data") if type(doc) is dict else None
        count = len(items) if type(items) is list else 0
        headers, stop = await self._handle(request, count, body)
        if stop is not None:
            return stop
        list_id = request.path_params["id"]
        try:
            members = self.state.members.get(list_id)
            if members is None:
                raise Refused(404, f"A list with id {list_id} does not exist.")
            ids = _profile_identifiers(items)
        except Refused as refused:
            return self._refused(refused, headers)
        members.difference_update(ids)
        return self._answer(204, None, headers)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = "No route matches this path." if status == 404 else "Method not allowed."
        return self._answer(status, error_body(status, detail), {})


def _page_params(request: Request) -> tuple[int, int]:
    raw_size = request.query_params.get("page[size]", "20")
    if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
        raise Refused(400, "page[size] must be between 1 and 100.", parameter="page[size]")
    cursor = request.query_params.get("page[cursor]")
    offset = 0
    if cursor:
        try:
            prefix, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
            if prefix != "o" or not value.isdigit():
                raise ValueError(cursor)
            offset = int(value)
        except ValueError:
            raise Refused(400, "Invalid page cursor.", parameter="page[cursor]") from None
    return int(raw_size), offset


def _filter_profiles(expression: str | None, state: KlaviyoState) -> list[str]:
    """Profile ids matching `equals(field,"v")` or `any(field,["v",...])` (all without one)."""
    if not expression:
        return list(state.profiles)
    match = _FILTER.match(expression.strip())
    fields = {*IDENTIFIER_FIELDS, "id"}
    if match is None or match.group(2) not in fields:
        raise Refused(400, f"Invalid filter: '{expression}'.", parameter="filter")
    operator, name, raw = match.groups()
    try:
        value = orjson.loads(raw.replace("'", '"') if raw.startswith(("'", "['")) else raw)
    except orjson.JSONDecodeError:
        raise Refused(400, f"Invalid filter value: '{raw}'.", parameter="filter") from None
    values = value if operator == "any" else [value]
    if type(values) is not list or not all(type(v) is str for v in values):
        raise Refused(400, f"Invalid filter value: '{raw}'.", parameter="filter")
    if len(values) > MAX_PAGE_SIZE:
        raise Refused(400, "'any' takes at most 100 values.", parameter="filter")
    found: list[str] = []
    for one in values:
        pid = one if name == "id" else state.index[name].get(_index_key(name, one))
        if pid is not None and pid in state.profiles and pid not in found:
            found.append(pid)
    return found


def _profile_identifiers(items: Any) -> list[str]:
    if type(items) is not list or not items:
        raise Refused(400, "'data' must be a non-empty array of profiles.", "/data")
    if len(items) > MAX_LIST_REMOVALS:
        raise Refused(400, f"At most {MAX_LIST_REMOVALS} profiles per request.", "/data")
    ids: list[str] = []
    for index, item in enumerate(items):
        if (
            type(item) is not dict
            or item.get("type") != "profile"
            or type(item.get("id")) is not str
        ):
            raise Refused(
                400, "A profile is {'type': 'profile', 'id': <profile id>}.", f"/data/{index}"
            )
        ids.append(item["id"])
    return ids


def _default_api_keys() -> set[str]:
    keys = {DEV_API_KEY}
    configured = os.environ.get(DEFAULT_API_KEY_ENV)
    if configured:
        keys.add(configured)
    return keys


def create_app(
    config: FaultConfig | None = None,
    *,
    api_keys: Collection[str] | None = None,
    lists: Mapping[str, str] | None = None,
) -> Starlette:
    """The simulator as an ASGI app (state at `app.state.simulator`).

    `api_keys` are the private keys it accepts (by default the development key and
    $KLAVIYO_PRIVATE_API_KEY); `lists` maps list id to name (by default one list,
    `SIM_LIST_ID`).
    """
    gate = Gate(config)
    sim = KlaviyoSimulator(
        gate,
        _default_api_keys() if api_keys is None else api_keys,
        {SIM_LIST_ID: "Switchyard audience"} if lists is None else lists,
    )
    jobs = "/api/profile-bulk-import-jobs"
    routes = [
        Route(jobs, sim.create_job, methods=["POST"]),
        Route(jobs, sim.list_jobs, methods=["GET"]),
        Route(jobs + "/{id}", sim.get_job, methods=["GET"]),
        Route(jobs + "/{id}/import-errors", sim.import_errors, methods=["GET"]),
        Route("/api/profiles", sim.get_profiles, methods=["GET"]),
        Route("/api/lists/{id}", sim.get_list, methods=["GET"]),
        Route("/api/lists/{id}/relationships/profiles", sim.remove_from_list, methods=["DELETE"]),
        *control_routes(gate, sim.records, sim.reset),
    ]
    app = Starlette(routes=routes, exception_handlers={404: sim.not_found, 405: sim.not_found})
    app.state.simulator = sim
    return app
