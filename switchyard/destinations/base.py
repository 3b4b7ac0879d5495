"""The destination port: what the delivery engine needs from every destination client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from switchyard.pipeline.checkpoints import Batch


@dataclass(frozen=True)
class BatchOutcome:
    """The destination's answer to one accepted request: which rows it turned down, and why."""

    accepted: int
    rejections: Sequence[tuple[str, str]] = field(default_factory=tuple)


class DestinationClient(Protocol):
    async def preflight(self) -> None:
        """Raise unless the destination is reachable and accepts our credentials."""
        ...

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        """Send one batch; raise RetryableError or FatalError when it was not accepted."""
        ...

    async def aclose(self) -> None: ...
