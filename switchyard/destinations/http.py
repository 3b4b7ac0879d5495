"""What an HTTP answer means for a retry, the same way for every destination.

Every client maps the wire onto the error tree in `switchyard.errors` alike:

- no answer (a timeout, a refused or dropped connection): DestinationUnavailableError;
- 429, or the vendor's own throttle (`throttled`): RateLimitedError, waiting Retry-After
  or else the vendor's own hint (`wait`), and holding the limiter that long so every
  sender waits, not just the one that was told;
- 5xx, 408, or an answer the vendor marks transient: DestinationUnavailableError with
  the answer's Retry-After;
- 401/403 (or the vendor's own token errors): DestinationRefusedError that says which
  variable to check, never the secret;
- any other status: DestinationRefusedError;
- a 2xx whose body is not JSON (a proxy's page, not the vendor's answer): whether the
  request landed is unknown, so DestinationUnavailableError and a resend.

What is the vendor's own stays in its folder: how it reads its error bodies and
rate-limit headers, and which codes mean throttling or a bad token. Waiting for the
limiter stays with the callers too: the webhook signs between the wait and the send,
and Braze paces two endpoint families on two limiters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import httpx
import orjson

from switchyard.delivery.ratelimit import RateLimiter
from switchyard.delivery.retry_after import parse_retry_after
from switchyard.errors import (
    DestinationRefusedError,
    DestinationUnavailableError,
    RateLimitedError,
    RetryableError,
    SwitchyardError,
)

# Per client: enough for a destination's delivery slots, few enough to be a polite caller.
CONNECTION_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16)

T = TypeVar("T")


async def request(
    http: httpx.AsyncClient, method: str, url: str, *, where: str, **kwargs: Any
) -> httpx.Response:
    """Send one request; no answer at all is DestinationUnavailableError.

    `where` opens the error's message: the destination's name and what was asked.
    """
    try:
        return await http.request(method, url, **kwargs)
    except httpx.TimeoutException as error:
        raise DestinationUnavailableError(f"{where}: timed out") from error
    except httpx.TransportError as error:
        raise DestinationUnavailableError(f"{where}: {type(error).__name__}: {error}") from error


def json_body(response: httpx.Response, where: str) -> Any:
    """The parsed body of an answer the caller accepted; not JSON means not landed."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as error:
        raise DestinationUnavailableError(
            f"{where}: HTTP {response.status_code} with a body that is not JSON: "
            f"{response.text[:200]}"
        ) from error


def retryable_error(
    response: httpx.Response,
    limiter: RateLimiter,
    where: str,
    detail: str,
    *,
    throttled: bool = False,
    wait: float | None = None,
    transient: bool = False,
) -> RetryableError | None:
    """The retryable error a failed answer means, or None when retrying cannot help.

    A rate limit holds `limiter` for Retry-After, or for `wait` when the answer has none.
    """
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429 or throttled:
        if retry_after is None:
            retry_after = wait
        if retry_after is not None:
            limiter.hold_for(retry_after)
        return RateLimitedError(f"{where}: rate limited (HTTP {status}): {detail}", retry_after)
    if status >= 500 or status == 408 or transient:
        return DestinationUnavailableError(f"{where}: HTTP {status}: {detail}", retry_after)
    return None


def refused_error(
    response: httpx.Response,
    where: str,
    detail: str,
    check: str,
    *,
    credentials: bool | None = None,
) -> DestinationRefusedError:
    """A refusal; `check` says what to look at when the credentials were refused
    (`credentials`, by default a 401 or 403)."""
    status = response.status_code
    if credentials is None:
        credentials = status in (401, 403)
    if credentials:
        return DestinationRefusedError(
            f"{where}: HTTP {status}, credentials refused ({detail}); check {check}", status
        )
    return DestinationRefusedError(f"{where}: HTTP {status}: {detail}", status)


def status_error(
    response: httpx.Response,
    limiter: RateLimiter,
    where: str,
    detail: str,
    check: str,
    *,
    throttled: bool = False,
    wait: float | None = None,
    transient: bool = False,
    credentials: bool | None = None,
) -> SwitchyardError:
    """The error a failed answer means: retryable first, else a refusal."""
    retryable = retryable_error(
        response, limiter, where, detail, throttled=throttled, wait=wait, transient=transient
    )
    return retryable or refused_error(response, where, detail, check, credentials=credentials)


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in consecutive slices of at most `size` (a vendor's per-request cap)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
