"""Errors carry their retry meaning as a type; callers catch the level they mean.

    SwitchyardError
    ├── FatalError                  retrying cannot help: the run stops, loudly
    │   ├── AudienceQueryError      the audience SQL failed in the warehouse
    │   ├── ContractMismatchError   the contract maps what the audience does not return
    │   ├── MissingSourceTableError consent or suppression data the contract needs is absent
    │   ├── GateFailedError         a quality gate stopped the run before anything was sent
    │   ├── DestinationConfigError  missing secret, bad URL
    │   └── DestinationRefusedError the destination refused the request itself (auth, 4xx)
    └── RetryableError              transient: retried with backoff, Retry-After honoured
        ├── RateLimitedError        429 (or the destination's equivalent)
        └── DestinationUnavailableError  5xx, timeouts, connection failures

Row-level failures (one record rejected inside an accepted batch) are not exceptions:
they are outcomes recorded per row and retried on the next run.
"""

from __future__ import annotations


class SwitchyardError(Exception):
    """Base of every error Switchyard raises on purpose."""


class FatalError(SwitchyardError):
    """Retrying cannot help; a person must change something."""


class AudienceQueryError(FatalError):
    pass


class ContractMismatchError(FatalError):
    pass


class MissingSourceTableError(FatalError):
    pass


class GateFailedError(FatalError):
    pass


class DestinationConfigError(FatalError):
    pass


class DestinationRefusedError(FatalError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableError(SwitchyardError):
    """Transient; `retry_after` (seconds) is the destination's own hint when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(RetryableError):
    pass


class DestinationUnavailableError(RetryableError):
    pass
