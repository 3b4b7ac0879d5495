"""The rate limiter on a fake clock: time moves only when the limiter sleeps, so no test waits."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from switchyard.catalog.models import RateLimit
from switchyard.delivery.ratelimit import RateLimiter, RateLimiters
from tests.support.limiter_time import FakeTime, fake_limiter_time


@pytest.fixture
def time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    return fake_limiter_time(monkeypatch)


async def grants(limiter: RateLimiter, time: FakeTime, n: int) -> list[float]:
    """When (seconds after the start) each of `n` sequential acquires was granted."""
    start, granted = time.now, []
    for _ in range(n):
        await limiter.acquire()
        granted.append(time.now - start)
    return granted


@pytest.mark.parametrize(("requests", "per_seconds"), [(10, 1), (20, 1), (3, 7), (7, 3)])
async def test_requests_are_paced_to_the_contracts_rate(
    time: FakeTime, requests: int, per_seconds: float
) -> None:
    limiter = RateLimiter(RateLimit(requests=requests, per_seconds=per_seconds), clock=time)
    interval = per_seconds / requests

    granted = await grants(limiter, time, 3 * requests + 1)

    # One request goes at once (no burst from a fresh worker), then one per interval.
    assert granted[0] == 0
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert gaps == pytest.approx([interval] * len(gaps), rel=1e-6)
    # Over three windows: never more than three windows' allowance (plus the first one).
    assert granted[-1] == pytest.approx(3 * per_seconds, rel=1e-6)


async def test_an_idle_limiter_allows_at_most_one_windows_burst(time: FakeTime) -> None:
    limiter = RateLimiter(RateLimit(requests=5, per_seconds=1), clock=time)
    time.now += 60

    granted = await grants(limiter, time, 7)

    assert granted[:5] == [0, 0, 0, 0, 0]
    assert granted[5:] == pytest.approx([0.2, 0.4])


async def test_delivery_paces_under_the_allowance_with_short_bursts(time: FakeTime) -> None:
    # What workers use: 2% headroom and at most a quarter second's burst, so arrivals that
    # jitter together still fit a destination counting with the same bucket.
    limiter = RateLimiters(clock=time).for_destination("crm", RateLimit(requests=40, per_seconds=1))
    time.now += 60  # long idle: a plain window bucket would now allow a burst of 40

    granted = await grants(limiter, time, 30)

    burst = sum(1 for moment in granted if moment == 0)
    assert burst == int(40 * 0.98 * 0.25)
    steady = [b - a for a, b in itertools.pairwise(granted[burst:])]
    assert steady == pytest.approx([1 / (40 * 0.98)] * len(steady), rel=1e-6)


async def test_concurrent_acquirers_share_the_allowance(time: FakeTime) -> None:
    limiter = RateLimiter(RateLimit(requests=4, per_seconds=1), clock=time)
    start, granted = time.now, []

    async def one() -> None:
        await limiter.acquire()
        granted.append(time.now - start)

    await asyncio.gather(*(one() for _ in range(9)))

    assert sorted(granted) == pytest.approx([0.25 * i for i in range(9)])


async def test_hold_for_blocks_every_acquirer_until_it_ends(time: FakeTime) -> None:
    limiter = RateLimiter(None, clock=time)
    start, granted = time.now, []
    limiter.hold_for(5)

    async def one() -> None:
        await limiter.acquire()
        granted.append(time.now - start)

    await asyncio.gather(*(one() for _ in range(3)))

    assert granted == [5, 5, 5]
    # They waited out the same hold together, not one after another.
    assert time.slept == 5


async def test_a_later_hold_extends_but_an_earlier_one_never_shortens(time: FakeTime) -> None:
    limiter = RateLimiter(None, clock=time)

    limiter.hold_for(10)
    limiter.hold_for(3)
    await limiter.acquire()
    assert time.slept == 10

    limiter.hold_for(2)
    limiter.hold_until(time.now + 4)
    await limiter.acquire()
    assert time.slept == 14


async def test_a_hold_pauses_pacing_too(time: FakeTime) -> None:
    limiter = RateLimiter(RateLimit(requests=2, per_seconds=1), clock=time)
    await limiter.acquire()

    limiter.hold_for(3)
    granted = await grants(limiter, time, 4)

    # After the hold the bucket has refilled to one window (2), then pacing resumes.
    assert granted == pytest.approx([3, 3, 3.5, 4])


async def test_without_a_limit_nothing_waits(time: FakeTime) -> None:
    limiter = RateLimiter(None, clock=time)

    await asyncio.gather(*(limiter.acquire() for _ in range(1000)))

    assert time.sleeps == []


async def test_the_real_clock_paces_too() -> None:
    limiter = RateLimiter(RateLimit(requests=50, per_seconds=1))
    loop = asyncio.get_running_loop()
    started = loop.time()

    await asyncio.gather(*(limiter.acquire() for _ in range(11)))

    # Ten intervals of 20 ms; only a lower bound, a loaded machine may take longer.
    assert loop.time() - started >= 0.15


def test_one_limiter_per_destination() -> None:
    limiters = RateLimiters()
    limit = RateLimit(requests=10, per_seconds=1)

    crm = limiters.for_destination("crm_webhook", limit)

    assert limiters.for_destination("crm_webhook", limit) is crm
    assert limiters.for_destination("ads_webhook", limit) is not crm
    assert RateLimiters().for_destination("crm_webhook", limit) is not crm
