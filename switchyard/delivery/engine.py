"""chunk-deliver: send one chunk's batches, checkpointing each acknowledged batch durably.

A restarted attempt skips every batch already checkpointed, so after a crash at most the
batches that were in flight or awaiting their checkpoint (twice the requests in flight) are
sent again, and those carry the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from typing import TypeVar

from switchyard.destinations.base import BatchOutcome, DestinationClient, RendersInWarehouse
from switchyard.pipeline.checkpoints import (
    Ack,
    Batch,
    acked_batches,
    chunk_totals,
    read_chunk,
    read_rendered_chunk,
    record_acks,
)
from switchyard.runs import ChunkResult, RunRef
from switchyard.warehouse.base import Session, Warehouse

T = TypeVar("T")
# Batches sent and not yet checkpointed, per request slot: the next request need not wait for
# the last one's checkpoint, and a crash re-sends at most this many batches per slot.
UNSETTLED_PER_SLOT = 2


def idempotency_key(run: RunRef, batch: Batch) -> str:
    """Deterministic per (run, chunk, batch): the same batch re-sent has the same key."""
    raw = f"{run.run_id}/{batch.chunk}/{batch.number}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


class _Checkpointer:
    """One warehouse session for the whole chunk, used by one thread at a time.

    Holding it keeps an embedded warehouse open for the chunk's lifetime instead of
    reopening the file for every batch.
    """

    def __init__(self, warehouse: Warehouse) -> None:
        self._context = warehouse.session()
        self._session: Session | None = None
        self._lock = asyncio.Lock()
        self._acks: list[tuple[Ack, asyncio.Future[None]]] = []

    async def __aenter__(self) -> _Checkpointer:
        self._session = await asyncio.to_thread(self._context.__enter__)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._context.__exit__, None, None, None)

    async def run(self, work: Callable[[Session], T]) -> T:
        assert self._session is not None
        session = self._session
        async with self._lock:
            return await asyncio.to_thread(work, session)

    async def ack(self, run: RunRef, ack: Ack, worker: str | None) -> None:
        """Checkpoint one acknowledged batch; returns once it is durable.

        Batches acknowledged while a checkpoint is being written wait for the next one and
        are written together, so eight batches in flight cost one statement, not eight.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks.append((ack, done))
        async with self._lock:
            group, self._acks = self._acks, []
            if group:
                assert self._session is not None
                session, acks = self._session, [item for item, _ in group]
                try:
                    await asyncio.to_thread(record_acks, session, run, acks, worker=worker)
                except BaseException as error:
                    for _, waiter in group:
                        waiter.set_exception(error)
                else:
                    for _, waiter in group:
                        waiter.set_result(None)
        await done


class _Requests:
    """A chunk's request slots: at most `slots` requests at a time, and none started after
    one failed."""

    def __init__(self, concurrency: int) -> None:
        self.slots = max(1, concurrency)
        self.stopped = False
        self._free = asyncio.Semaphore(self.slots)

    async def start(self) -> bool:
        """Take a slot; False (and no slot) once the chunk stopped."""
        await self._free.acquire()
        if self.stopped:
            self._free.release()
            return False
        return True

    def stop(self) -> None:
        self.stopped = True

    def finish(self, *, failed: bool) -> None:
        # Stopped before the slot is given back, so no queued batch slips out after a failure.
        if failed:
            self.stop()
        self._free.release()


async def deliver_chunk(
    warehouse: Warehouse,
    client: DestinationClient,
    run: RunRef,
    chunk: int,
    resume_after: int = -1,
    on_progress: Callable[[int], None] = lambda _: None,
    concurrency: int = 1,
    worker: str | None = None,
) -> ChunkResult:
    """Deliver one chunk with up to `concurrency` batches in flight.

    `resume_after` is the last batch a previous attempt reported done; `on_progress` gets the
    highest batch number below which every batch is acknowledged, so it is safe to resume
    after even though batches may complete out of order.
    """
    result = ChunkResult(chunk=chunk)
    async with _Checkpointer(warehouse) as store:
        batches = await store.run(lambda s: _read(s, client, run, chunk))
        done = await store.run(lambda s: acked_batches(s, run, chunk))
        todo = [b for b in batches if b.number not in done and b.number > resume_after]
        result.skipped_batches = len(batches) - len(todo)
        acked = {b.number for b in batches} - {b.number for b in todo}
        requests = _Requests(concurrency)
        # Sent but not yet checkpointed: what a crash now would send again. A request's slot
        # is free once the destination answers, so this bounds the checkpoints still owed.
        unsettled = asyncio.Semaphore(UNSETTLED_PER_SLOT * requests.slots)

        async def deliver(batch: Batch) -> None:
            async with unsettled:
                if not await requests.start():
                    return
                try:
                    await _send_whole(store, client, run, batch, requests, worker)
                except BaseException:
                    requests.stop()
                    raise
            acked.add(batch.number)
            on_progress(_contiguous(acked) - 1)

        tasks = [asyncio.ensure_future(deliver(batch)) for batch in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # One batch failed or we were cancelled: the others finish or stop cleanly, so
            # every batch the destination acknowledged is checkpointed before we leave.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        # Counted from the checkpoints, so batches a crashed attempt delivered count too.
        totals = await store.run(lambda s: chunk_totals(s, run, chunk))
    result.batches, result.sent, result.accepted, result.rejected = totals
    return result


def _read(session: Session, client: DestinationClient, run: RunRef, chunk: int) -> list[Batch]:
    if isinstance(client, RendersInWarehouse):
        return read_rendered_chunk(session, run, chunk, client.item_sql(session.dialect))
    return read_chunk(session, run, chunk)


def _contiguous(numbers: set[int]) -> int:
    """How many batches from 0 up are all in `numbers`."""
    n = 0
    while n in numbers:
        n += 1
    return n


async def _send_whole(
    store: _Checkpointer,
    client: DestinationClient,
    run: RunRef,
    batch: Batch,
    requests: _Requests,
    worker: str | None = None,
) -> BatchOutcome:
    """Send and checkpoint one batch; a cancellation waits for both, never half of it.

    The request's slot is given back as soon as the destination answers, so the next
    batch goes out while this one's checkpoint is written.
    """

    async def send_and_checkpoint() -> BatchOutcome:
        try:
            outcome = await client.send(batch, idempotency_key(run, batch))
        except BaseException:
            requests.finish(failed=True)
            raise
        requests.finish(failed=False)
        await store.ack(run, (batch, outcome.accepted, outcome.rejections), worker)
        return outcome

    task = asyncio.ensure_future(send_and_checkpoint())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # Awaiting the task bare would let a second cancellation reach it; keep it shielded
        # however often we are cancelled, then report the first cancellation.
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        task.result()
        raise
