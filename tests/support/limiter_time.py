"""A fake clock for the rate limiter: time moves only when the limiter sleeps, so no test
waits and each can say exactly how long the limiter held its senders."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from switchyard.delivery import ratelimit

_real_sleep = asyncio.sleep


class FakeTime:
    """A monotonic clock that the limiter's sleeps advance, and a record of those sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert len(self.sleeps) < 10_000, "the limiter is spinning"
        self.sleeps.append(seconds)
        self.now += seconds
        await _real_sleep(0)

    @property
    def slept(self) -> float:
        return sum(self.sleeps)


class _AsyncioWithFakeSleep:
    """`asyncio` as the limiter module sees it, with only `sleep` replaced."""

    def __init__(self, time: FakeTime) -> None:
        self.sleep = time.sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def fake_limiter_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """Put the limiter module's sleeps on a fake clock for the rest of the test."""
    fake = FakeTime()
    monkeypatch.setattr(ratelimit, "asyncio", _AsyncioWithFakeSleep(fake))
    return fake
