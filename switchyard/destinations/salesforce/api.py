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
from switchyard.destinations import http
from switchyard.destinations.credentials import resolve_credential
from switchyard.destinations.http import CONNECTION_LIMITS
from switchyard.destinations.salesforce.spec import DEV_SALESFORCE_TOKEN, SalesforceConfig
from switchyard.errors import SwitchyardError

LIMIT_HEADER = "Sforce-Limit-Info"
_API_USAGE = re.compile(r"(?:^|[;\s])api-usage=(\d+)/(\d+)")
JSON = "application/json"


def resolve_token(config: SalesforceConfig, environment: str, env: Mapping[str, str]) -> str:
    return resolve_credential(
        config.token_env, DEV_SALESFORCE_TOKEN, "the Salesforce access token", environment, env
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
            limits=CONNECTION_LIMITS,
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
        response = await http.request(
            self._http,
            method,
            url,
            where=f"{self.name}: {method} {path}",
            content=content,
            params=params,
            headers=headers,
        )
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
        return http.json_body(response, self.name)

    def classify(self, response: httpx.Response) -> SwitchyardError:
        code, message = error_of(response)
        detail = ": ".join(part for part in (code, message) if part) or "no detail"
        return http.status_error(
            response,
            self._limiter,
            self.name,
            detail,
            f"${self.config.token_env}",
            # Salesforce's own word for an API allocation spent, even where it says 403.
            throttled=response.status_code == 403 and code == "REQUEST_LIMIT_EXCEEDED",
            wait=self.config.limit_hold_seconds,
            credentials=response.status_code == 401,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
