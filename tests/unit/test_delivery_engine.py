"""deliver_chunk against a real warehouse (DuckDB and Postgres): durable per-batch checkpoints
make retries cheap and safe.

Ten profiles, batches of three, one chunk of ten rows: batches 0, 1, 2 hold three operations
each and batch 3 holds one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from switchyard.delivery import engine
from switchyard.delivery.engine import deliver_chunk, idempotency_key
from switchyard.destinations.base import BatchOutcome
from switchyard.errors import DestinationUnavailableError
from switchyard.pipeline.checkpoints import Batch, record_acks
from switchyard.runs import RunRef
from switchyard.warehouse.base import Warehouse
from tests.support.catalogs import webhook_plan
from tests.support.fakes import FakeDestination
from tests.support.pipeline import plan_run
from tests.support.warehouse import MakeWarehouse, profile

KEYS = [f"user{i}@example.com" for i in range(10)]


@dataclass
class CrashingDestination(FakeDestination):
    """Fails the `crash_on`-th send (1-based), before or after the destination applied it."""

    crash_on: int | None = None
    applied_before_crash: bool = False
    # (batch number, idempotency key) of every send, and the keys of those that arrived.
    attempts: list[tuple[int, str]] = field(default_factory=list)
    arrived: list[str] = field(default_factory=list)

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        self.attempts.append((batch.number, idempotency_key))
        crash = len(self.attempts) == self.crash_on
        if crash and not self.applied_before_crash:
            raise DestinationUnavailableError("connection refused")
        self.arrived.append(idempotency_key)
        outcome = await super().send(batch, idempotency_key)
        if crash:
            raise DestinationUnavailableError("connection reset before the answer arrived")
        return outcome

    def received_per_key(self) -> Counter[str]:
        return Counter(o.key for b in self.batches for o in b.operations)

    def applied_per_key(self) -> Counter[str]:
        """As an idempotent destination applies them: a replayed key counts once."""
        by_key = dict(zip(self.arrived, self.batches, strict=True))
        return Counter(o.key for b in by_key.values() for o in b.operations)


@dataclass
class GatedDestination(FakeDestination):
    """Holds every send until the test opens the gate, so it can act mid-batch."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        self.started.set()
        await self.gate.wait()
        return await super().send(batch, idempotency_key)


@pytest.fixture
def warehouse(make_warehouse: MakeWarehouse) -> Warehouse:
    return make_warehouse([profile(i) for i in range(10)])


def planned(warehouse: Warehouse, run_id: str = "run-1", chunk_size: int = 10) -> RunRef:
    run, _, _, changes = plan_run(warehouse, webhook_plan(), run_id, chunk_size=chunk_size)
    assert changes.to_send == 10
    return run


def acked(warehouse: Warehouse, run: RunRef, chunk: int = 0) -> list[int]:
    with warehouse.session() as s:
        rows = s.fetchall(
            "SELECT batch FROM switchyard.acked_batches WHERE run_id = ? AND chunk = ? "
            "ORDER BY batch",
            (run.run_id, chunk),
        )
    return [int(r[0]) for r in rows]


async def test_a_chunk_is_sent_batch_by_batch_and_each_batch_checkpointed(
    warehouse: Warehouse,
) -> None:
    run, dest = planned(warehouse), FakeDestination()
    progress: list[int] = []

    result = await deliver_chunk(warehouse, dest, run, 0, on_progress=progress.append)

    assert [len(b.operations) for b in dest.batches] == [3, 3, 3, 1]
    assert sorted(dest.records) == sorted(KEYS)
    assert (result.batches, result.sent, result.accepted, result.skipped_batches) == (4, 10, 10, 0)
    assert progress == [0, 1, 2, 3]
    assert acked(warehouse, run) == [0, 1, 2, 3]


@pytest.mark.parametrize("applied_before_crash", [False, True], ids=["lost", "unanswered"])
@pytest.mark.parametrize("crash_on", [1, 3])
async def test_a_retried_attempt_resends_only_the_batch_that_was_in_flight(
    warehouse: Warehouse, crash_on: int, applied_before_crash: bool
) -> None:
    run = planned(warehouse)
    dest = CrashingDestination(crash_on=crash_on, applied_before_crash=applied_before_crash)

    with pytest.raises(DestinationUnavailableError):
        await deliver_chunk(warehouse, dest, run, 0)
    assert acked(warehouse, run) == list(range(crash_on - 1))

    # The activity's retry: a fresh call, knowing nothing but the durable checkpoints.
    retried = await deliver_chunk(warehouse, dest, run, 0)

    in_flight = crash_on - 1
    assert retried.skipped_batches == in_flight
    # Totals count every acknowledged batch of the chunk, the crashed attempt's included.
    assert (retried.batches, retried.sent) == (4, 10)
    sent_batches = [number for number, _ in dest.attempts]
    assert sent_batches == [*range(crash_on), *range(in_flight, 4)]
    # The batch in flight went again under the same key, so the destination could tell.
    keys = [key for _, key in dest.attempts]
    assert keys[in_flight] == keys[crash_on]
    assert dest.duplicates == (1 if applied_before_crash else 0)
    assert dest.applied_per_key() == Counter(KEYS)
    replayed = (
        {o.key for o in dest.batches[in_flight].operations} if applied_before_crash else set()
    )
    assert dest.received_per_key() == Counter({k: 2 if k in replayed else 1 for k in KEYS})
    assert acked(warehouse, run) == [0, 1, 2, 3]


async def test_an_attempt_after_the_chunk_is_done_sends_nothing(warehouse: Warehouse) -> None:
    run, dest = planned(warehouse), FakeDestination()
    await deliver_chunk(warehouse, dest, run, 0)

    again = await deliver_chunk(warehouse, dest, run, 0)

    # Nothing goes out again, and the chunk still reports what it delivered.
    assert (again.batches, again.sent, again.skipped_batches) == (4, 10, 4)
    assert len(dest.batches) == 4


async def test_resume_after_from_heartbeat_details_skips_those_batches(
    warehouse: Warehouse,
) -> None:
    run, dest = planned(warehouse), FakeDestination()
    progress: list[int] = []

    result = await deliver_chunk(
        warehouse, dest, run, 0, resume_after=1, on_progress=progress.append
    )

    assert [b.number for b in dest.batches] == [2, 3]
    assert (result.batches, result.skipped_batches, result.sent) == (2, 2, 4)
    assert progress == [2, 3]


async def test_cancelling_mid_batch_lets_that_batch_finish_and_checkpoint(
    warehouse: Warehouse,
) -> None:
    run, dest = planned(warehouse), GatedDestination()

    task = asyncio.create_task(deliver_chunk(warehouse, dest, run, 0))
    await dest.started.wait()
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done(), "the cancellation abandoned the batch in flight"

    dest.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert [b.number for b in dest.batches] == [0]
    assert acked(warehouse, run) == [0]


async def test_a_repeated_cancellation_still_waits_for_the_batch_in_flight(
    warehouse: Warehouse,
) -> None:
    run, dest = planned(warehouse), GatedDestination()

    task = asyncio.create_task(deliver_chunk(warehouse, dest, run, 0))
    await dest.started.wait()
    for _ in range(3):
        task.cancel()
        await asyncio.sleep(0.01)
    assert not task.done(), "a second cancellation abandoned the batch in flight"

    dest.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert [b.number for b in dest.batches] == [0]
    assert acked(warehouse, run) == [0]


def test_idempotency_keys_are_deterministic_per_run_chunk_and_batch() -> None:
    run = RunRef(run_id="run-1", sync="test_sync")
    key = idempotency_key(run, Batch(chunk=0, number=0))

    assert idempotency_key(RunRef(run_id="run-1", sync="test_sync"), Batch(0, 0)) == key
    others = {
        idempotency_key(run, Batch(0, 1)),
        idempotency_key(run, Batch(1, 0)),
        idempotency_key(RunRef(run_id="run-2", sync="test_sync"), Batch(0, 0)),
    }
    assert key not in others and len(others) == 3
    assert len(key) == 32 and int(key, 16) >= 0


async def test_every_batch_of_every_chunk_gets_its_own_key(warehouse: Warehouse) -> None:
    run = planned(warehouse, chunk_size=6)
    first, second = FakeDestination(), FakeDestination()

    for chunk in (0, 1):
        await deliver_chunk(warehouse, first, run, chunk)
    with warehouse.session() as s:
        s.execute("DELETE FROM switchyard.acked_batches")
    for chunk in (0, 1):
        await deliver_chunk(warehouse, second, run, chunk)

    assert [(b.chunk, b.number) for b in first.batches] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(first.keys_seen) == 4
    # Re-delivering the same run produces the same keys: nothing about them is random.
    assert second.keys_seen == first.keys_seen


async def test_rejected_rows_are_recorded_as_row_outcomes(warehouse: Warehouse) -> None:
    run = planned(warehouse)
    dest = FakeDestination(reject={KEYS[1]: "invalid_email", KEYS[7]: "blocked"})

    result = await deliver_chunk(warehouse, dest, run, 0)

    assert (result.sent, result.accepted) == (10, 8)
    assert result.rejected == {"invalid_email": 1, "blocked": 1}
    with warehouse.session() as s:
        outcomes = s.fetchall(
            "SELECT run_id, sync_id, stage, key, reason FROM switchyard.row_outcomes "
            "WHERE stage = 'rejected' ORDER BY key"
        )
        batches = s.fetchall(
            "SELECT batch, accepted, rejected FROM switchyard.acked_batches ORDER BY batch"
        )
    assert outcomes == [
        ("run-1", "test_sync", "rejected", KEYS[1], "invalid_email"),
        ("run-1", "test_sync", "rejected", KEYS[7], "blocked"),
    ]
    # Rows are numbered in key order, so user1 is in batch 0 and user7 in batch 2.
    assert batches == [(0, 2, 1), (1, 3, 0), (2, 2, 1), (3, 1, 0)]


@dataclass
class SlowDestination(FakeDestination):
    """Answers after a short wait, and remembers how many sends overlapped at most."""

    in_flight: int = 0
    most_in_flight: int = 0

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.05)
            return await super().send(batch, idempotency_key)
        finally:
            self.in_flight -= 1


async def test_batches_in_flight_are_bounded_and_their_checkpoints_written_together(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, dest = planned(warehouse), SlowDestination()
    writes: list[int] = []
    real_record_acks = engine.record_acks

    def counting(session: Any, run: RunRef, acks: Any, **kw: Any) -> None:
        writes.append(len(acks))
        real_record_acks(session, run, acks, **kw)

    monkeypatch.setattr(engine, "record_acks", counting)

    result = await deliver_chunk(warehouse, dest, run, 0, concurrency=3)

    assert dest.most_in_flight == 3
    assert (result.batches, result.sent) == (4, 10)
    assert acked(warehouse, run) == [0, 1, 2, 3]
    assert Counter(o.key for b in dest.batches for o in b.operations) == Counter(KEYS)
    # Batches acknowledged while a checkpoint was being written shared the next one.
    assert sum(writes) == 4 and len(writes) < 4


async def test_a_slow_checkpoint_frees_the_request_slot_but_bounds_what_awaits_it(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next request goes out while the last one's checkpoint is written; no more than
    UNSETTLED_PER_SLOT batches per slot are ever sent and not yet checkpointed."""
    run, dest = planned(warehouse), FakeDestination()
    checkpointed: list[int] = []
    unsettled: list[int] = []  # at each send, batches sent (this one too) minus checkpointed
    real_send, real_record_acks = dest.send, engine.record_acks

    async def send(batch: Batch, idempotency_key: str) -> BatchOutcome:
        unsettled.append(len(dest.batches) + 1 - sum(checkpointed))
        return await real_send(batch, idempotency_key)

    def slow(session: Any, run: RunRef, acks: Any, **kw: Any) -> None:
        time.sleep(0.2)
        real_record_acks(session, run, acks, **kw)
        checkpointed.append(len(acks))

    monkeypatch.setattr(dest, "send", send)
    monkeypatch.setattr(engine, "record_acks", slow)

    result = await deliver_chunk(warehouse, dest, run, 0, concurrency=1)

    assert (result.batches, result.sent) == (4, 10)
    assert acked(warehouse, run) == [0, 1, 2, 3]
    # One request slot, yet the next batch went out while the last checkpoint was written,
    # and never more than the bound ran ahead of the checkpoints.
    assert max(unsettled) == engine.UNSETTLED_PER_SLOT


def test_an_acknowledgement_noted_again_changes_nothing(warehouse: Warehouse) -> None:
    """The common checkpoint skips the conflict check; a replayed one (a retried attempt's,
    or two workers racing) falls back to it and leaves the first note as it was."""
    run = planned(warehouse)
    first, again = Batch(0, 1, run_id=run.run_id), Batch(0, 2, run_id=run.run_id)
    with warehouse.session() as s:
        record_acks(s, run, [(first, 3, [])], worker="w1")
        # A group holding one batch already noted and one new: the new one is noted too.
        record_acks(s, run, [(first, 0, []), (again, 3, [])], worker="w2")
        rows = s.fetchall(
            "SELECT batch, accepted, worker FROM switchyard.acked_batches "
            "WHERE run_id = ? ORDER BY batch",
            (run.run_id,),
        )
    assert rows == [(1, 3, "w1"), (2, 3, "w2")]
