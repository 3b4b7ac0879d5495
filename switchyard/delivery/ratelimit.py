"""A token bucket shared by every concurrent chunk sending to one destination in a worker.

It paces requests to the contract's allowance, and when the destination answers 429 with
Retry-After, `hold_until` stops every sender to that destination until then, so one
chunk's rate-limit answer is not rediscovered by the others.

The bucket lives in one worker process. With several worker processes (Postgres lets them
share a run's chunks) each paces itself to the whole allowance, so N workers may together
send up to N times the contract's `rate_limit`, and a 429's Retry-After holds only the
process that received it (the others find out on their own next request). Until buckets
are shared, give a destination with a hard limit a contract `rate_limit` of its allowance
divided by the number of workers. Sharing would mean a bucket row per destination in the
warehouse's state schema, taken with one atomic UPDATE ... RETURNING per request, and the
Retry-After hold stored beside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from switchyard.catalog.models import RateLimit

# Refilling for exactly the time slept can land a hair under a whole token; without this the
# limiter would sleep again for less than the clock can resolve, forever on a clock that
# only moves when told to.
_EPSILON = 1e-9


# What delivery uses: a hair under the allowance, and bursts of at most a quarter second's
# worth. Requests leave paced but arrive jittered (event-loop and network delays bunch
# them); a full window's burst followed by bunched arrivals is what earns 429s from a
# destination counting with the same bucket.
DELIVERY_HEADROOM = 0.98
DELIVERY_BURST_SECONDS = 0.25


class RateLimiter:
    def __init__(
        self,
        limit: RateLimit | None,
        clock: Callable[[], float] = time.monotonic,
        headroom: float = 1.0,
        burst_seconds: float | None = None,
    ):
        self._clock = clock
        self._rate = limit.per_second * headroom if limit else None
        # By default a full bucket allows a burst of one window's requests; start
        # empty-ish so a fresh worker does not burst past a destination counting per window.
        self._capacity = 0.0
        if limit is not None and self._rate is not None:
            window = float(limit.requests)
            burst = window if burst_seconds is None else self._rate * burst_seconds
            self._capacity = max(1.0, min(window, burst))
        self._tokens = 1.0
        self._updated = clock()
        self._hold_until = 0.0
        self._lock = asyncio.Lock()

    def hold_until(self, moment: float) -> None:
        self._hold_until = max(self._hold_until, moment)

    def hold_for(self, seconds: float) -> None:
        self.hold_until(self._clock() + seconds)

    def observe(self, remaining: int | None, resets_in: float | None) -> None:
        """What the destination's own headers say is left of its current window.

        When nothing is left, every sender waits for the window to reset instead of
        spending a request to learn it from a 429. Destinations whose headers say more
        (HubSpot's, Klaviyo's, Braze's) feed them in here after every response.
        """
        if remaining is not None and resets_in is not None and remaining <= 0 and resets_in > 0:
            self.hold_for(resets_in)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._hold_until:
                    await asyncio.sleep(self._hold_until - now)
                    continue
                if self._rate is None:
                    return
                self._tokens = min(
                    self._capacity, self._tokens + (now - self._updated) * self._rate
                )
                self._updated = now
                if self._tokens >= 1 - _EPSILON:
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)


class RateLimiters:
    """One limiter per destination per worker process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._limiters: dict[str, RateLimiter] = {}

    def for_destination(self, name: str, limit: RateLimit | None) -> RateLimiter:
        limiter = self._limiters.get(name)
        if limiter is None:
            limiter = self._limiters[name] = RateLimiter(
                limit,
                clock=self._clock,
                headroom=DELIVERY_HEADROOM,
                burst_seconds=DELIVERY_BURST_SECONDS,
            )
        return limiter
