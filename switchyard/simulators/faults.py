"""Fault-injection building blocks shared by the destination simulators.

Decisions are cheap and reproducible: random ones come from a seeded `random.Random` the
caller owns, per-key ones from a hash of the key, so a key keeps its fate while a rate is set.
"""

from __future__ import annotations

import hashlib
import math
import random

# Floating-point refill can land a hair under a whole token when a client waits exactly as told.
_EPSILON = 1e-9


class TokenBucket:
    """`capacity` requests per `per_seconds`, refilled continuously; starts full."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, capacity: int, per_seconds: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / per_seconds
        self.tokens = float(capacity)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one (refilling up to `now` first)."""
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1.0 - _EPSILON:
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False

    @property
    def remaining(self) -> int:
        return int(self.tokens + _EPSILON)

    def seconds_until_token(self) -> int:
        """Whole seconds until the next token, rounded up (0 when one is available now)."""
        missing = 1.0 - self.tokens
        if missing <= _EPSILON:
            return 0
        return math.ceil(missing / self.rate - _EPSILON)


def roll(rng: random.Random, rate: float) -> bool:
    """True with probability `rate`; draws nothing when the rate is 0, so sequences stay stable."""
    return rate > 0.0 and (rate >= 1.0 or rng.random() < rate)


def key_rejected(key: str, rate: float, seed: int) -> bool:
    """Whether `key` falls in the rejected fraction `rate`.

    Deterministic per (seed, key) and monotonic in `rate`: the keys rejected at 0.1 are also
    rejected at 0.3, so raising the rate only adds failures.
    """
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2.0**64
