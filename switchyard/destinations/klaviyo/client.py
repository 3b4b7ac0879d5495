"""Klaviyo's bulk profile import (upserts) and list membership (removes).

Every request carries `Authorization: Klaviyo-API-Key <key>`, `revision: <date>` and
`accept: application/vnd.api+json`; bodies are JSON:API (`application/vnd.api+json`).

Upserts: `POST /api/profile-bulk-import-jobs` with
`{"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": [{"type":
"profile", "attributes": {<identifier>, <standard attributes>, "location": {..},
"properties": {..}}}]}}, "relationships": {"lists": {"data": [{"type": "list", "id"}]}}}}`
(at most 10,000 profiles and 5 MB a job, 100 KB a profile; bigger batches become several
jobs). Klaviyo answers 202 with the job; it runs asynchronously, so the client polls
`GET /api/profile-bulk-import-jobs/{id}` (queued → processing → complete | cancelled) and,
when `failed_count` is not zero, reads `GET /api/profile-bulk-import-jobs/{id}/import-errors`
(pages of `import-error`: `code`, `title`, `detail`, `source.pointer` naming the profile's
index) into per-row rejections. A job that has not finished within `job_timeout_seconds`
fails the batch as retryable: re-sending upserts is idempotent.

Removes (mirror mode, which needs `list_id`): `GET /api/profiles?filter=any(<identifier>,
[...])` (100 a page) finds the profiles' ids, then `DELETE /api/lists/{list_id}/relationships/
profiles` with `{"data": [{"type": "profile", "id"}]}` (at most 1,000, answers 204) takes
them off the list. The profile, its properties and its consent stay.

Errors: 429 `throttled` with `Retry-After` (retryable; the limiter holds); 5xx (retryable);
401 `not_authenticated` / `authentication_failed` and 403 (fatal); other 4xx (fatal).
Every answer's `RateLimit-Remaining` / `RateLimit-Reset` (seconds) feed the limiter.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
import orjson

from switchyard.catalog.models import Destination, SyncMode
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations import http
from switchyard.destinations.base import BatchOutcome
from switchyard.destinations.credentials import resolve_credential
from switchyard.destinations.http import CONNECTION_LIMITS
from switchyard.destinations.klaviyo.spec import (
    DEV_API_KEY,
    IDENTIFIERS,
    MAX_JOB_BYTES,
    MAX_PROFILE_BYTES,
    MAX_PROFILES_PER_JOB,
    KlaviyoConfig,
)
from switchyard.errors import (
    DestinationConfigError,
    DestinationUnavailableError,
    RetryableError,
)
from switchyard.pipeline.checkpoints import Batch, Operation

JSONAPI = "application/vnd.api+json"
JOBS = "/api/profile-bulk-import-jobs"
# Profile attributes Klaviyo stores as such; any other field becomes a custom property.
STANDARD_ATTRIBUTES = frozenset(
    {"first_name", "last_name", "organization", "locale", "title", "image"}
)
LOCATION_FIELDS = frozenset(
    {"address1", "address2", "city", "country", "latitude", "longitude", "region", "zip"}
    | {"timezone", "ip"}
)
LOOKUP_PAGE = 100  # identifiers per `any(...)` profile lookup (page[size] at most 100)
MAX_LIST_REMOVALS = 1_000
_ROW_POINTER = re.compile(r"/profiles/data/(\d+)(?:/|$)")
_LEADING_INT = re.compile(r"^\s*(\d+)")
_JOB_HEAD = b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['


def resolve_api_key(config: KlaviyoConfig, environment: str, env: Mapping[str, str]) -> str:
    return resolve_credential(
        config.api_key_env, DEV_API_KEY, "the Klaviyo private API key", environment, env
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def profile_attributes(identifier: str, key: str, fields: str | None) -> dict[str, Any]:
    """A profile's `attributes` from the warehouse-rendered fields.

    Klaviyo's own attributes (identifiers, names, `location.<part>`) go where Klaviyo keeps
    them; anything else (or `properties.<name>`) is a custom property. Nulls are left out:
    the bulk import ignores them, it cannot clear a field.
    """
    attributes: dict[str, Any] = {identifier: key}
    location: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for name, value in orjson.loads(fields or "{}").items():
        if value is None:
            continue
        if name in IDENTIFIERS or name in STANDARD_ATTRIBUTES:
            attributes[name] = _text(value)
        elif name.startswith("location.") and name[9:] in LOCATION_FIELDS:
            part = name[9:]
            location[part] = value if part in ("latitude", "longitude") else _text(value)
        elif name.startswith("properties."):
            properties[name[11:]] = value
        else:
            properties[name] = value
    if location:
        attributes["location"] = location
    if properties:
        attributes["properties"] = properties
    return attributes


@dataclass(frozen=True)
class ImportJob:
    keys: list[str]  # the rows' keys, in the order of the job's profiles
    body: bytes


def pack_jobs(
    profiles: Sequence[tuple[str, bytes]],
    list_id: str | None,
    max_profiles: int = MAX_PROFILES_PER_JOB,
    max_bytes: int = MAX_JOB_BYTES,
) -> list[ImportJob]:
    """Rendered (key, profile) pairs packed into as few job bodies as the limits allow."""
    tail = b"]}}"
    if list_id is not None:
        link = orjson.dumps({"lists": {"data": [{"type": "list", "id": list_id}]}})
        tail += b',"relationships":' + link
    tail += b"}}"
    overhead = len(_JOB_HEAD) + len(tail)
    jobs: list[ImportJob] = []
    keys: list[str] = []
    parts: list[bytes] = []
    size = overhead

    def flush() -> None:
        jobs.append(ImportJob(list(keys), _JOB_HEAD + b",".join(parts) + tail))

    for key, part in profiles:
        grown = size + len(part) + (1 if parts else 0)
        if parts and (len(parts) >= max_profiles or grown > max_bytes):
            flush()
            keys.clear()
            parts.clear()
            grown = overhead + len(part)
        keys.append(key)
        parts.append(part)
        size = grown
    if parts:
        flush()
    return jobs


def _leading_int(value: str | None) -> int | None:
    match = _LEADING_INT.match(value) if value else None
    return int(match.group(1)) if match else None


def _error_detail(response: httpx.Response) -> str:
    """`code: detail` of Klaviyo's first JSON:API error, or the start of the body."""
    try:
        errors = orjson.loads(response.content).get("errors") or []
        first = errors[0]
        return f"{first.get('code')}: {first.get('detail') or first.get('title')}"
    except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
        return response.text[:300]


class KlaviyoClient:
    def __init__(
        self,
        destination: Destination,
        sync: str,
        limiter: RateLimiter,
        environment: str = "development",
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(destination.config, KlaviyoConfig):
            raise DestinationConfigError(f"{destination.name} is not a Klaviyo destination")
        config = destination.config
        contract = destination.contract
        if contract.sync_mode is SyncMode.MIRROR and config.list_id is None:
            raise DestinationConfigError(
                f"{destination.name}: sync_mode mirror removes rows that leave, and Klaviyo "
                "can only take a profile off a list; set config.list_id"
            )
        self._config = config
        self._name = destination.name
        self._identifier = contract.identifier.name
        self._limiter = limiter
        key = resolve_api_key(config, environment, os.environ if env is None else env)
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            timeout=config.timeout_seconds,
            transport=transport,
            headers={
                "Authorization": f"Klaviyo-API-Key {key}",
                "revision": config.revision,
                "accept": JSONAPI,
            },
            limits=CONNECTION_LIMITS,
        )

    # -- the port ---------------------------------------------------------------------------

    async def preflight(self) -> None:
        list_id = self._config.list_id
        if list_id is None:
            response = await self._call("GET", JOBS, params={"page[size]": "1"})
        else:
            response = await self._call("GET", f"/api/lists/{list_id}")
            if response.status_code == 404:
                raise DestinationConfigError(
                    f"{self._name}: Klaviyo has no list {list_id!r} (config.list_id)"
                )
        if response.status_code != 200:
            self._raise_for(response)

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        upserts = [op for op in batch.operations if op.op == "upsert"]
        removes = [op.key for op in batch.operations if op.op == "remove"]
        rejections = await self._import(upserts) if upserts else []
        if removes:
            await self._remove(removes)
        return BatchOutcome(len(batch.operations) - len(rejections), rejections)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- upserts: bulk import jobs ----------------------------------------------------------

    async def _import(self, operations: list[Operation]) -> list[tuple[str, str]]:
        rejections: list[tuple[str, str]] = []
        profiles: list[tuple[str, bytes]] = []
        for op in operations:
            attributes = profile_attributes(self._identifier, op.key, op.fields)
            part = orjson.dumps({"type": "profile", "attributes": attributes})
            if len(part) > MAX_PROFILE_BYTES:
                rejections.append(
                    (op.key, f"profile is {len(part)} bytes; Klaviyo imports at most 100 KB each")
                )
            else:
                profiles.append((op.key, part))
        jobs = pack_jobs(profiles, self._config.list_id)
        # Every job is submitted before any is awaited: Klaviyo works on them side by side.
        started = [(job, await self._create_job(job)) for job in jobs]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.job_timeout_seconds
        for job, job_id in started:
            failed = await self._wait_for(job_id, deadline)
            if failed:
                rejections.extend(await self._failed_rows(job, job_id, failed, deadline))
        return rejections

    async def _create_job(self, job: ImportJob) -> str:
        response = await self._call(
            "POST", JOBS, content=job.body, headers={"content-type": JSONAPI}
        )
        if response.status_code != 202:
            self._raise_for(response)
        try:
            job_id = orjson.loads(response.content)["data"]["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            # Not Klaviyo's answer (a proxy's page): whether the job exists is unknown.
            raise DestinationUnavailableError(
                f"{self._name}: HTTP 202 without a job id: {response.text[:200]}"
            ) from error
        return str(job_id)

    async def _wait_for(self, job_id: str, deadline: float) -> int:
        """Poll the job until it is complete; its failed_count."""
        interval = self._config.poll_interval_seconds
        while True:
            await self._sleep_until_next_poll(interval, deadline, job_id)
            interval = min(interval * 1.5, self._config.poll_max_interval_seconds)
            document = await self._get_patiently(f"{JOBS}/{job_id}", None, deadline)
            try:
                attributes = document["data"]["attributes"]
                status = attributes["status"]
            except (KeyError, TypeError) as error:
                raise DestinationUnavailableError(
                    f"{self._name}: job {job_id}: an answer without a status: {document!r:.200}"
                ) from error
            if status == "complete":
                return int(attributes.get("failed_count") or 0)
            if status == "cancelled":
                raise DestinationUnavailableError(f"{self._name}: Klaviyo cancelled job {job_id}")

    async def _sleep_until_next_poll(self, interval: float, deadline: float, job_id: str) -> None:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise DestinationUnavailableError(
                f"{self._name}: import job {job_id} did not finish within "
                f"{self._config.job_timeout_seconds:g} s; the batch will be sent again"
            )
        await asyncio.sleep(min(interval, left))

    async def _failed_rows(
        self, job: ImportJob, job_id: str, failed: int, deadline: float
    ) -> list[tuple[str, str]]:
        """The job's import errors, tied back to the rows they name."""
        rows: dict[int, str] = {}
        unplaced: list[str] = []
        for error in await self._import_errors(job_id, deadline):
            attributes = error.get("attributes") or {}
            reason = (
                f"{attributes.get('code')}: {attributes.get('detail') or attributes.get('title')}"
            )
            index = self._row_of(attributes, job.keys)
            if index is None:
                unplaced.append(reason)
            else:
                rows.setdefault(index, reason)
        if unplaced or len(rows) < failed:
            # Failures Klaviyo counted but did not tie to a profile could be any row not
            # already named: reject them all, so they are sent again on the next run.
            reason = (
                f"Klaviyo counted {failed} failed profiles in job {job_id} and named "
                f"{len(rows)}: {unplaced[0] if unplaced else 'no detail given'}"
            )
            for index in range(len(job.keys)):
                rows.setdefault(index, reason)
        return [(job.keys[index], reason) for index, reason in sorted(rows.items())]

    def _row_of(self, attributes: Mapping[str, Any], keys: Sequence[str]) -> int | None:
        source = attributes.get("source") or {}
        match = _ROW_POINTER.search(str(source.get("pointer") or ""))
        if match and int(match.group(1)) < len(keys):
            return int(match.group(1))
        payload = attributes.get("original_payload") or {}
        value = payload.get(self._identifier) if isinstance(payload, dict) else None
        if isinstance(value, str):
            wanted = value.strip().lower() if self._identifier == "email" else value
            for index, key in enumerate(keys):
                if key == wanted:
                    return index
        return None

    async def _import_errors(self, job_id: str, deadline: float) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"page[size]": "100"}
            if cursor:
                params["page[cursor]"] = cursor
            page = await self._get_patiently(f"{JOBS}/{job_id}/import-errors", params, deadline)
            errors.extend(page.get("data") or [])
            following = (page.get("links") or {}).get("next")
            cursor = httpx.URL(following).params.get("page[cursor]") if following else None
            if not cursor:
                return errors

    async def _get_patiently(
        self, path: str, params: Mapping[str, str] | None, deadline: float
    ) -> dict[str, Any]:
        """GET a job's state, riding out throttling and server errors until the deadline.

        The job is already running: failing the batch here would only start another.
        """
        loop = asyncio.get_running_loop()
        pause = self._config.poll_interval_seconds
        while True:
            try:
                response = await self._call("GET", path, params=params)
                if response.status_code == 404:
                    raise DestinationUnavailableError(f"{self._name}: {path} is not found (404)")
                if response.status_code != 200:
                    self._raise_for(response)
                document: dict[str, Any] = http.json_body(response, f"{self._name}: {path}")
                return document
            except RetryableError:
                if loop.time() + pause >= deadline:
                    raise
            # A 429 has already put its Retry-After on the limiter; this only spaces retries.
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._config.poll_max_interval_seconds)

    # -- removes: list membership -----------------------------------------------------------

    async def _remove(self, keys: list[str]) -> None:
        list_id = self._config.list_id
        if list_id is None:
            raise DestinationConfigError(
                f"{self._name}: removing from Klaviyo means leaving a list; set config.list_id"
            )
        profile_ids: list[str] = []
        for chunk in http.chunked(keys, LOOKUP_PAGE):
            profile_ids.extend(await self._profile_ids(chunk))
        path = f"/api/lists/{list_id}/relationships/profiles"
        for chunk in http.chunked(profile_ids, MAX_LIST_REMOVALS):
            body = orjson.dumps({"data": [{"type": "profile", "id": pid} for pid in chunk]})
            response = await self._call(
                "DELETE", path, content=body, headers={"content-type": JSONAPI}
            )
            if response.status_code != 204:
                self._raise_for(response)

    async def _profile_ids(self, keys: Sequence[str]) -> list[str]:
        """Ids of the profiles with these identifiers; keys Klaviyo does not know are gone."""
        values = ",".join(orjson.dumps(key).decode() for key in keys)
        params = {
            "filter": f"any({self._identifier},[{values}])",
            "page[size]": str(LOOKUP_PAGE),
            "fields[profile]": self._identifier,
        }
        response = await self._call("GET", "/api/profiles", params=params)
        if response.status_code != 200:
            self._raise_for(response)
        try:
            return [str(item["id"]) for item in orjson.loads(response.content)["data"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            raise DestinationUnavailableError(
                f"{self._name}: profile lookup answered {response.text[:200]}"
            ) from error

    # -- HTTP -------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        await self._limiter.acquire()
        response = await http.request(
            self._http,
            method,
            path,
            where=f"{self._name}: {method} {path}",
            params=params,
            content=content,
            headers=headers,
        )
        self._limiter.observe(
            _leading_int(response.headers.get("RateLimit-Remaining")),
            _leading_int(response.headers.get("RateLimit-Reset")),
        )
        return response

    def _raise_for(self, response: httpx.Response) -> NoReturn:
        # Without Retry-After, a 429 waits for the window Klaviyo says resets.
        reset = _leading_int(response.headers.get("RateLimit-Reset"))
        raise http.status_error(
            response,
            self._limiter,
            f"{self._name}: {response.request.method} {response.request.url.path}",
            _error_detail(response),
            f"the key in ${self._config.api_key_env} and its scopes (profiles, lists)",
            wait=float(reset) if reset is not None else None,
        )
