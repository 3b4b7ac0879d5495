"""The destination port: what the delivery engine needs from every destination client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from switchyard.pipeline.checkpoints import Batch
from switchyard.warehouse.base import Dialect


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


@runtime_checkable
class CompletesRuns(Protocol):
    """Destinations that finish a run as a whole (a file export's manifest) implement this.

    Called once per run after its acknowledged rows are committed, with the run's id; it
    must be idempotent, since a retried commit step calls it again.
    """

    async def complete_run(self, run_id: str) -> None: ...


@runtime_checkable
class RendersInWarehouse(Protocol):
    """Destinations whose request items the warehouse can render, in SQL, implement this.

    `item_sql` returns an expression over a change row's `op`, `key` and `fields` (the
    payload's JSON text) that renders the row as the destination's item; batches then
    arrive with `rendered` set (the items, comma-joined) and `keys`, not `operations`.
    """

    def item_sql(self, dialect: Dialect) -> str: ...
