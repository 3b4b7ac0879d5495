"""Fakes, not mocks: a destination that holds what it is sent and can turn rows down."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from switchyard.destinations.base import BatchOutcome
from switchyard.pipeline.checkpoints import Batch


@dataclass
class FakeDestination:
    records: dict[str, dict[str, object]] = field(default_factory=dict)
    reject: dict[str, str] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    keys_seen: set[str] = field(default_factory=set)
    duplicates: int = 0

    async def preflight(self) -> None:
        return None

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        if idempotency_key in self.keys_seen:
            self.duplicates += 1
        self.keys_seen.add(idempotency_key)
        self.batches.append(batch)
        rejections = []
        for operation in batch.operations:
            if operation.key in self.reject:
                rejections.append((operation.key, self.reject[operation.key]))
            elif operation.op == "upsert":
                self.records[operation.key] = json.loads(operation.fields or "{}")
            else:
                self.records.pop(operation.key, None)
        return BatchOutcome(len(batch.operations) - len(rejections), rejections)

    async def aclose(self) -> None:
        return None

    @property
    def operations_sent(self) -> int:
        return sum(len(b.operations) for b in self.batches)
