"""chunk-deliver: send one chunk's batches, checkpointing each acknowledged batch durably.

A restarted attempt skips every batch already checkpointed, so after a crash at most the
batches that were in flight are sent again, and those carry the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import Callable

from switchyard.destinations.base import BatchOutcome, DestinationClient
from switchyard.pipeline.checkpoints import Batch, acked_batches, read_chunk, record_ack
from switchyard.runs import ChunkResult, RunRef
from switchyard.warehouse.base import Warehouse


def idempotency_key(run: RunRef, batch: Batch) -> str:
    """Deterministic per (run, chunk, batch): the same batch re-sent has the same key."""
    raw = f"{run.run_id}/{batch.chunk}/{batch.number}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def _load(warehouse: Warehouse, run: RunRef, chunk: int) -> tuple[list[Batch], set[int]]:
    with warehouse.session() as session:
        return read_chunk(session, run, chunk), acked_batches(session, run, chunk)


def _checkpoint(warehouse: Warehouse, run: RunRef, batch: Batch, outcome: BatchOutcome) -> None:
    with warehouse.session() as session:
        record_ack(session, run, batch, outcome.accepted, outcome.rejections)


async def deliver_chunk(
    warehouse: Warehouse,
    client: DestinationClient,
    run: RunRef,
    chunk: int,
    resume_after: int = -1,
    on_progress: Callable[[int], None] = lambda _: None,
) -> ChunkResult:
    """Deliver one chunk; `resume_after` is the last batch a previous attempt reported done."""
    batches, done = await asyncio.to_thread(_load, warehouse, run, chunk)
    result = ChunkResult(chunk=chunk)
    rejected: Counter[str] = Counter()
    for batch in batches:
        if batch.number in done or batch.number <= resume_after:
            result.skipped_batches += 1
            continue
        outcome = await _send_whole(warehouse, client, run, batch)
        result.batches += 1
        result.sent += len(batch.operations)
        result.accepted += outcome.accepted
        rejected.update(reason for _, reason in outcome.rejections)
        on_progress(batch.number)
    result.rejected = dict(rejected)
    return result


async def _send_whole(
    warehouse: Warehouse, client: DestinationClient, run: RunRef, batch: Batch
) -> BatchOutcome:
    """Send and checkpoint one batch; a cancellation waits for both, never half of it."""

    async def send_and_checkpoint() -> BatchOutcome:
        outcome = await client.send(batch, idempotency_key(run, batch))
        await asyncio.to_thread(_checkpoint, warehouse, run, batch, outcome)
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
