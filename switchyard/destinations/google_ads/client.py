"""Google Ads Customer Match over the Google Ads API's REST interface.

Google's official Python client (google-ads) speaks gRPC only, so it cannot be pointed at a
REST simulator; this client speaks REST itself, and the same code talks to Google and to
the local simulator (`base_url`). There is therefore no official-SDK test for this one.

One batch becomes one OfflineUserDataJob per kind of operation (Google refuses creates and
removes in one job, `CONFLICTING_OPERATION`):

    POST /{v}/customers/{cid}/offlineUserDataJobs:create
      {"job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata":
               {"userList": "customers/{cid}/userLists/{id}",
                "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}}}}
      -> {"resourceName": "customers/{cid}/offlineUserDataJobs/{job}"}
    POST /{v}/{job}:addOperations          (as many as the 100,000-identifier cap needs)
      {"enablePartialFailure": true, "operations": [{"create" | "remove":
               {"userIdentifiers": [{"hashedEmail": h}, {"hashedPhoneNumber": h}]}}]}
      -> {} or {"partialFailureError": {"code", "message", "details": [{"@type":
               "...GoogleAdsFailure", "errors": [{"errorCode", "message", "location":
               {"fieldPathElements": [{"fieldName": "operations", "index": i}, ...]}}]}]}}
    POST /{v}/{job}:run                    -> {"name": "customers/{cid}/operations/..."}
    POST /{v}/customers/{cid}/googleAds:search   (GAQL: the job's status and failure_reason)

Headers: `Authorization: Bearer <access token>`, `developer-token`, and `login-customer-id`
when the list's account is reached through a manager account. Each row's first identifier
is its key, normalised and hashed here (`switchyard.identity.normalise`: emails trimmed and
lowercased, phones E.164 *with* "+", SHA-256 lowercase hex); mapped `email` / `phone`
fields add a second identifier. Other fields mean nothing to Customer Match and are not sent.

Per-row errors (partial failure) come back as rejections with Google's error code and
message, by operation index. Whole-request answers: 429 RESOURCE_EXHAUSTED ->
RateLimitedError (Retry-After, else the error's `quotaErrorDetails.retryDelay`, else
`default_retry_after_seconds`; the limiter is held that long); 5xx, 408, 409 ABORTED and
connection failures -> DestinationUnavailableError; 401/403 and other 4xx ->
DestinationRefusedError. Google sends no rate-limit headers, so there is nothing to feed
`limiter.observe`.

Jobs finish asynchronously, and Google says that can take hours. The batch waits up to
`job_wait_seconds` for SUCCESS; a job that ends FAILED with an UNKNOWN / unspecified reason
is retryable (DestinationUnavailableError: the batch goes again as a new job), any other
reason is fatal. A job still running at the deadline counts as delivered: Google holds its
rows and has already reported the bad ones; waiting longer would only stall the chunk.
Re-sending a batch (after a crash, a retry) creates a new job; membership has set
semantics, so the effect is the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from switchyard.catalog.models import Contract, Destination
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations import http
from switchyard.destinations.base import BatchOutcome
from switchyard.destinations.credentials import resolve_credential
from switchyard.destinations.google_ads.spec import (
    MAX_IDENTIFIERS_PER_REQUEST,
    MAX_PAYLOAD_BYTES,
    GoogleAdsConfig,
)
from switchyard.destinations.http import CONNECTION_LIMITS
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    SwitchyardError,
)
from switchyard.identity.normalise import hash_email, hash_phone_for_google
from switchyard.pipeline.checkpoints import Batch

log = logging.getLogger(__name__)

DEV_DEVELOPER_TOKEN = "dev-only-google-ads-developer-token"
DEV_ACCESS_TOKEN = "dev-only-google-ads-access-token"
# Identifier field name in a contract -> Google's UserIdentifier field.
IDENTIFIER_FIELDS = {"email": "hashedEmail", "phone": "hashedPhoneNumber"}
# Job failure reasons that say nothing about the data: the same rows may well go through.
TRANSIENT_FAILURES = frozenset({None, "", "UNSPECIFIED", "UNKNOWN"})
_MAX_POLL_INTERVAL = 60.0
_ENVELOPE = b'{"enablePartialFailure":true,"operations":[]}'
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")

Json = dict[str, Any]


def job_consent(config: GoogleAdsConfig, contract: Contract) -> Json | None:
    """The consent a create job states; GRANTED by default only behind a consent filter."""
    default = "GRANTED" if contract.consent_purpose else None
    consent = {
        name: value
        for name, value in (
            ("adUserData", config.ad_user_data or default),
            ("adPersonalization", config.ad_personalization or default),
        )
        if value is not None
    }
    return consent or None


def parse_duration(value: Any) -> float | None:
    """A protobuf Duration in JSON ("30s", "1.5s") as seconds."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    return float(match[1]) if match else None


@dataclass(frozen=True)
class Member:
    """One row as an operation: its key (for rejections) and its encoded operation."""

    key: str
    identifiers: int
    encoded: bytes


class Hasher:
    """Turns a row into Google's hashed user identifiers, the key's own first."""

    def __init__(self, contract: Contract) -> None:
        self.key_kind = contract.identifier.name  # email or phone: the catalog checks the spec
        self.region = contract.default_phone_region
        sent = [m.name for m in contract.sent_fields]
        self.extra = [name for name in sent if name in IDENTIFIER_FIELDS]
        ignored = [name for name in sent if name not in IDENTIFIER_FIELDS]
        if ignored:
            log.warning(
                "Customer Match takes only email and phone; fields %s are not sent",
                ", ".join(ignored),
            )

    def hashed(self, kind: str, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        if kind == "email":
            return hash_email(value)
        return hash_phone_for_google(value, self.region)

    def identifiers(self, key: str, fields: str | None) -> list[Json] | None:
        """The row's identifiers, or None when its key cannot be normalised."""
        first = self.hashed(self.key_kind, key)
        if first is None:
            return None
        out: list[Json] = [{IDENTIFIER_FIELDS[self.key_kind]: first}]
        if fields and self.extra:
            values = orjson.loads(fields)
            for name in self.extra:
                hashed = self.hashed(name, values.get(name))
                if hashed is not None and hashed != first:
                    out.append({IDENTIFIER_FIELDS[name]: hashed})
        return out


def requests_for(members: Sequence[Member], max_bytes: int) -> Iterator[Sequence[Member]]:
    """Slices of `members` within the identifiers cap and the body-size cap."""
    start, identifiers, size = 0, 0, len(_ENVELOPE)
    for index, member in enumerate(members):
        grows = len(member.encoded) + 1
        if index > start and (
            identifiers + member.identifiers > MAX_IDENTIFIERS_PER_REQUEST
            or size + grows > max_bytes
        ):
            yield members[start:index]
            start, identifiers, size = index, 0, len(_ENVELOPE)
        identifiers += member.identifiers
        size += grows
    if start < len(members):
        yield members[start:]


def render_operations(members: Sequence[Member]) -> bytes:
    return (
        b'{"enablePartialFailure":true,"operations":['
        + b",".join(m.encoded for m in members)
        + b"]}"
    )


def row_errors(answer: Json) -> list[tuple[int | None, str]]:
    """(operation index, "errorCode.VALUE: message") for each error in a partial failure."""
    status = answer.get("partialFailureError")
    if not isinstance(status, dict):
        return []
    out: list[tuple[int | None, str]] = []
    for detail in status.get("details") or ():
        for error in (detail or {}).get("errors") or ():
            index = None
            for element in (error.get("location") or {}).get("fieldPathElements") or ():
                if element.get("fieldName") == "operations" and "index" in element:
                    index = int(element["index"])
                    break
            codes = ", ".join(f"{k}.{v}" for k, v in (error.get("errorCode") or {}).items())
            out.append((index, f"{codes or 'error'}: {error.get('message') or 'rejected'}"))
    if not out:
        out.append((None, str(status.get("message") or "partial failure without details")))
    return out


class GoogleAdsClient:
    def __init__(
        self,
        destination: Destination,
        sync: str,
        limiter: RateLimiter,
        environment: str = "development",
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        if not isinstance(destination.config, GoogleAdsConfig):
            raise DestinationConfigError(f"{destination.name} is not a Google Ads destination")
        config = self._config = destination.config
        self._name = destination.name
        self._limiter = limiter
        self._hasher = Hasher(destination.contract)
        self._consent = job_consent(config, destination.contract)
        self._max_bytes = max_payload_bytes
        source = os.environ if env is None else env
        developer_token = resolve_credential(
            config.developer_token_env,
            DEV_DEVELOPER_TOKEN,
            "the Google Ads developer token",
            environment,
            source,
        )
        access_token = resolve_credential(
            config.access_token_env,
            DEV_ACCESS_TOKEN,
            "an OAuth access token for Google Ads",
            environment,
            source,
        )
        headers = {
            "Authorization": f"Bearer {access_token}",
            "developer-token": developer_token,
            "Content-Type": "application/json",
        }
        if config.login_customer_id:
            headers["login-customer-id"] = config.login_customer_id
        self._root = f"{config.base_url.rstrip('/')}/{config.api_version}"
        self._customer = f"customers/{config.customer_id}"
        self._user_list = f"{self._customer}/userLists/{config.user_list_id}"
        self._http = httpx.AsyncClient(
            timeout=config.timeout_seconds,
            transport=transport,
            headers=headers,
            limits=CONNECTION_LIMITS,
        )

    # -- the port ------------------------------------------------------------------------

    async def preflight(self) -> None:
        """Credentials work and the user list exists in the customer account."""
        answer = await self._search(
            "SELECT user_list.id FROM user_list "
            f"WHERE user_list.resource_name = '{self._user_list}'"
        )
        if not answer.get("results"):
            raise DestinationRefusedError(
                f"{self._name}: user list {self._user_list} was not found (check "
                "customer_id, user_list_id and login_customer_id)"
            )

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        rejections: list[tuple[str, str]] = []
        jobs: dict[str, list[Member]] = {"create": [], "remove": []}
        for operation in batch.operations:
            kind = "create" if operation.op == "upsert" else "remove"
            fields = operation.fields if kind == "create" else None
            identifiers = self._hasher.identifiers(operation.key, fields)
            if identifiers is None:
                rejections.append(
                    (operation.key, f"not a valid {self._hasher.key_kind} to hash for Google")
                )
                continue
            encoded = orjson.dumps({kind: {"userIdentifiers": identifiers}})
            jobs[kind].append(Member(operation.key, len(identifiers), encoded))
        for kind, members in jobs.items():
            if members:
                rejections.extend(await self._run_job(kind, members))
        return BatchOutcome(accepted=len(batch.operations) - len(rejections), rejections=rejections)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- one job -------------------------------------------------------------------------

    async def _run_job(self, kind: str, members: list[Member]) -> list[tuple[str, str]]:
        metadata: Json = {"userList": self._user_list}
        if kind == "create" and self._consent:
            metadata["consent"] = self._consent
        created = await self._call(
            f"{self._customer}/offlineUserDataJobs:create",
            {
                "job": {
                    "type": "CUSTOMER_MATCH_USER_LIST",
                    "customerMatchUserListMetadata": metadata,
                }
            },
        )
        job = created.get("resourceName")
        if not isinstance(job, str) or not job.startswith(f"{self._customer}/"):
            raise DestinationUnavailableError(f"{self._name}: job creation answered {created!r}")
        rejections: list[tuple[str, str]] = []
        for part in requests_for(members, self._max_bytes):
            answer = await self._call(f"{job}:addOperations", render_operations(part))
            reasons: dict[str, list[str]] = {}
            for index, reason in row_errors(answer):
                if index is None or not 0 <= index < len(part):
                    raise DestinationRefusedError(
                        f"{self._name}: addOperations failed outside any operation: {reason}"
                    )
                reasons.setdefault(part[index].key, []).append(reason)
            rejections.extend((key, "; ".join(found)) for key, found in reasons.items())
        if len(rejections) < len(members):
            await self._call(f"{job}:run", {})
            await self._wait(job)
        return rejections

    async def _wait(self, job: str) -> None:
        wait = self._config.job_wait_seconds
        if wait <= 0:
            return
        deadline = time.monotonic() + wait
        interval = self._config.poll_interval_seconds
        while True:
            status, reason = await self._job_status(job)
            if status == "SUCCESS":
                return
            if status == "FAILED":
                message = f"{self._name}: job {job} FAILED ({reason or 'no reason given'})"
                if reason in TRANSIENT_FAILURES:
                    raise DestinationUnavailableError(message)
                raise DestinationRefusedError(message)
            if time.monotonic() + interval > deadline:
                log.warning(
                    "%s: job %s still %s after %.0f s; counted as delivered (Google holds "
                    "its rows and finishes it on its own time)",
                    self._name,
                    job,
                    status or "unlisted",
                    wait,
                )
                return
            await asyncio.sleep(interval)
            interval = min(interval * 2, max(_MAX_POLL_INTERVAL, interval))

    async def _job_status(self, job: str) -> tuple[str | None, str | None]:
        answer = await self._search(
            "SELECT offline_user_data_job.id, offline_user_data_job.status, "
            "offline_user_data_job.failure_reason FROM offline_user_data_job "
            f"WHERE offline_user_data_job.resource_name = '{job}'"
        )
        for result in answer.get("results") or ():
            row = result.get("offlineUserDataJob") or {}
            return row.get("status"), row.get("failureReason")
        return None, None  # not listed yet: search is eventually consistent

    async def _search(self, query: str) -> Json:
        return await self._call(f"{self._customer}/googleAds:search", {"query": query})

    # -- HTTP ----------------------------------------------------------------------------

    async def _call(self, path: str, body: Json | bytes) -> Json:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        await self._limiter.acquire()
        response = await http.request(
            self._http,
            "POST",
            f"{self._root}/{path}",
            where=f"{self._name}: {path}",
            content=content,
        )
        if response.status_code != 200:
            raise self._failure(response, path)
        answer = http.json_body(response, self._name)
        if not isinstance(answer, dict):
            raise DestinationUnavailableError(f"{self._name}: unexpected answer {answer!r}")
        return answer

    def _failure(self, response: httpx.Response, path: str) -> SwitchyardError:
        status = response.status_code
        try:
            error = orjson.loads(response.content).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
        if not isinstance(error, dict):
            error = {}  # not Google's shape: a proxy's page, say
        codes: list[str] = []
        retry_delay: float | None = None
        for detail in error.get("details") or ():
            for item in (detail or {}).get("errors") or ():
                codes.extend(f"{k}.{v}" for k, v in (item.get("errorCode") or {}).items())
                quota = (item.get("details") or {}).get("quotaErrorDetails") or {}
                retry_delay = retry_delay or parse_duration(quota.get("retryDelay"))
        grpc = error.get("status") or ""
        what = f"{grpc} {', '.join(codes)}".strip()
        detail = f"{what}: {error.get('message') or response.text[:200]}"
        return http.status_error(
            response,
            self._limiter,
            f"{self._name}: {path}",
            detail,
            f"${self._config.access_token_env}, ${self._config.developer_token_env} and "
            "login_customer_id",
            throttled=grpc == "RESOURCE_EXHAUSTED",
            wait=retry_delay or self._config.default_retry_after_seconds,
            # ABORTED: a concurrent change to the same job; the same request may go through.
            transient=status == 409,
        )
