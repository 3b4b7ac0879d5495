"""Reading a chunk to deliver and checkpointing each batch the destination acknowledged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from switchyard.pipeline.state import run_table
from switchyard.runs import RunRef
from switchyard.warehouse.base import Session


@dataclass(frozen=True)
class Operation:
    op: str  # "upsert" or "remove"
    key: str
    fields: str | None  # the payload's JSON object text, rendered in the warehouse


@dataclass
class Batch:
    chunk: int
    number: int
    operations: list[Operation] = field(default_factory=list)


def read_chunk(session: Session, run: RunRef, chunk: int) -> list[Batch]:
    rows = session.fetchall(
        f"SELECT batch, op, key, fields FROM {run_table(run, 'chg')} WHERE chunk = ? ORDER BY seq",
        (chunk,),
    )
    batches: dict[int, Batch] = {}
    for number, op, key, fields in rows:
        batches.setdefault(number, Batch(chunk, number)).operations.append(
            Operation(op, key, fields)
        )
    return [batches[n] for n in sorted(batches)]


def acked_batches(session: Session, run: RunRef, chunk: int) -> set[int]:
    rows = session.fetchall(
        "SELECT batch FROM switchyard.acked_batches WHERE run_id = ? AND chunk = ?",
        (run.run_id, chunk),
    )
    return {int(r[0]) for r in rows}


def record_ack(
    session: Session,
    run: RunRef,
    batch: Batch,
    accepted: int,
    rejections: Sequence[tuple[str, str]],
) -> None:
    """Durably note that the destination acknowledged a batch, with its rejected rows."""
    with session.transaction():
        already = session.fetchone(
            "SELECT 1 FROM switchyard.acked_batches WHERE run_id = ? AND chunk = ? AND batch = ?",
            (run.run_id, batch.chunk, batch.number),
        )
        if already:
            return
        session.execute(
            """INSERT INTO switchyard.acked_batches
            (run_id, chunk, batch, accepted, rejected, acked_at)
            VALUES (?, ?, ?, ?, ?, current_timestamp)""",
            (run.run_id, batch.chunk, batch.number, accepted, len(rejections)),
        )
        session.executemany(
            """INSERT INTO switchyard.row_outcomes (run_id, sync_id, stage, key, reason)
            VALUES (?, ?, 'rejected', ?, ?)""",
            [(run.run_id, run.sync, key, reason) for key, reason in rejections],
        )
