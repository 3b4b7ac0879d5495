"""HTTP to one Salesforce org: the bearer token, the limiter, the usage header, and what each
answer means for a retry.

Every request counts against the org's API allocation (a rolling 24 hours), so each one
waits for the limiter. Salesforce reports usage on every answer in
`Sforce-Limit-Info: api-usage=<used>/<allocation>`; when that says the allocation is spent,
every sender holds instead of spending a request to hear it. Over the limit Salesforce
answers 403 `[{"errorCode": "REQUEST_LIMIT_EXCEEDED", ...}]` (not 429): both are rate
limiting here. Errors come as `[{"message", "errorCode", "fields"?}]`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from switchyard.delivery.ratelimit import RateLimiter
from switchyard.delivery.retry_after import parse_retry_after
from switchyard.destinations.salesforce.spec import DEV_SALESFORCE_TOKEN, SalesforceConfig
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    RateLimitedError,
    SwitchyardError,
)

LIMIT_HEADER = "Sforce-Limit-Info"
_API_USAGE = re.compile(r"(?:^|[;\s])api-usage=(\d+)/(\d+)")
JSON = "application/json"


def resolve_token(config: SalesforceConfig, environment: str, env: Mapping[str, str]) -> str:
    token = env.get(config.token_env)
    if token and (token != DEV_SALESFORCE_TOKEN or environment == "development"):
        return token
    if token:
        raise DestinationConfigError(
            f"{config.token_env} holds the development placeholder token; set a real one "
            f"outside development (environment is {environment!r})"
        )
    if environment == "development":
        return DEV_SALESFORCE_TOKEN
    raise DestinationConfigError(
        f"environment variable {config.token_env} (the Salesforce access token) is not set"
    )


def parse_api_usage(value: str | None) -> tuple[int, int] | None:
    """(used, allocation) from `Sforce-Limit-Info`, e.g. `api-usage=18/5000`."""
    match = _API_USAGE.search(value or "")
    return (int(match[1]), int(match[2])) if match else None


def error_of(response: httpx.Response) -> tuple[str, str]:
    """(errorCode, message) from Salesforce's error list, or what the body has instead."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return "", response.text[:300]
    first = body[0] if isinstance(body, list) and body else body
    if isinstance(first, dict):
        code = first.get("errorCode") or first.get("statusCode") or ""
        return str(code), str(first.get("message") or "")
    return "", response.text[:300]


class SalesforceApi:
    """Requests to `<instance_url>/services/data/<api_version>/...`, classified."""

    def __init__(
        self,
        config: SalesforceConfig,
        name: str,
        limiter: RateLimiter,
        token: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self._limiter = limiter
        self._root = config.instance_url.rstrip("/")
        self.data_path = f"/services/data/{config.api_version}"
        self._http = httpx.AsyncClient(
            timeout=config.timeout_seconds,
            transport=transport,
            headers={"Authorization": f"Bearer {token}"},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        content_type: str = JSON,
        accept: str = JSON,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One counted request; `path` is under the API version unless it starts with
        `/services/` (as `nextRecordsUrl` does). Returns only 2xx answers."""
        url = self._root + (path if path.startswith("/services/") else self.data_path + path)
        headers = {"Accept": accept}
        if content is not None:
            headers["Content-Type"] = content_type
        await self._limiter.acquire()
        try:
            response = await self._http.request(
                method, url, content=content, params=params, headers=headers
            )
        except httpx.TimeoutException as error:
            raise DestinationUnavailableError(f"{self.name}: {method} timed out") from error
        except httpx.TransportError as error:
            raise DestinationUnavailableError(
                f"{self.name}: {type(error).__name__}: {error}"
            ) from error
        usage = parse_api_usage(response.headers.get(LIMIT_HEADER))
        if usage is not None:
            self.observe_usage(*usage)
        if 200 <= response.status_code < 300:
            return response
        raise self.classify(response)

    def observe_usage(self, used: int, allocation: int) -> None:
        """Hold every sender once the allocation is spent (the window does not say when
        calls free up, so for `limit_hold_seconds`)."""
        self._limiter.observe(allocation - used, self.config.limit_hold_seconds)

    def json(self, response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as error:
            # A proxy's page, not Salesforce's answer: whether it landed is unknown.
            raise DestinationUnavailableError(
                f"{self.name}: HTTP {response.status_code} with a body that is not JSON: "
                f"{response.text[:200]}"
            ) from error

    def classify(self, response: httpx.Response) -> SwitchyardError:
        status = response.status_code
        code, message = error_of(response)
        detail = (
            f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        )
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429 or (status == 403 and code == "REQUEST_LIMIT_EXCEEDED"):
            wait = retry_after if retry_after is not None else self.config.limit_hold_seconds
            self._limiter.hold_for(wait)
            return RateLimitedError(f"{self.name}: API limit reached ({detail})", wait)
        if status >= 500 or status == 408:
            return DestinationUnavailableError(f"{self.name}: {detail}", retry_after)
        if status == 401:
            return DestinationRefusedError(
                f"{self.name}: the access token was refused ({detail}); check "
                f"${self.config.token_env}",
                status,
            )
        return DestinationRefusedError(f"{self.name}: {detail}", status)

    async def aclose(self) -> None:
        await self._http.aclose()
