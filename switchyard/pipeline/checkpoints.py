"""Reading a chunk to deliver and checkpointing each batch the destination acknowledged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from switchyard.pipeline.state import run_table
from switchyard.runs import RunRef
from switchyard.warehouse.base import Session, WarehouseError


class Operation(NamedTuple):
    """One row to send; a tuple because a chunk builds tens of thousands of them."""

    op: str  # "upsert" or "remove"
    key: str
    fields: str | None  # the payload's JSON object text, rendered in the warehouse


@dataclass
class Batch:
    chunk: int
    number: int
    operations: list[Operation] = field(default_factory=list)
    # The run it belongs to: destinations that write per run (file exports) name files by it.
    run_id: str = ""
    # Set instead of `operations` when the warehouse rendered the batch for the destination
    # (`read_rendered_chunk`): each row's item text, comma-joined in order, and the rows' keys.
    rendered: str | None = None
    keys: list[str] | None = None

    @property
    def size(self) -> int:
        return len(self.keys) if self.keys is not None else len(self.operations)

    def key_at(self, index: int) -> str:
        return self.keys[index] if self.keys is not None else self.operations[index].key


def read_chunk(session: Session, run: RunRef, chunk: int) -> list[Batch]:
    rows = session.fetchall(
        f"SELECT batch, op, key, fields FROM {run_table(run, 'chg')} WHERE chunk = ? ORDER BY seq",
        (chunk,),
    )
    batches: dict[int, Batch] = {}
    make = Operation._make
    for row in rows:
        number = row[0]
        batch = batches.get(number)
        if batch is None:
            batch = batches[number] = Batch(chunk, number, run_id=run.run_id)
        batch.operations.append(make(row[1:]))
    return [batches[n] for n in sorted(batches)]


def read_rendered_chunk(session: Session, run: RunRef, chunk: int, item_sql: str) -> list[Batch]:
    """A chunk's batches with every row already rendered by the warehouse.

    `item_sql` renders one row (columns `op`, `key`, `fields`) as the destination's item
    text; the warehouse joins a batch's items, so Python handles a string per batch
    instead of a tuple and a concatenation per row.
    """
    dialect = session.dialect
    rows = session.fetchall(
        f"""SELECT batch, {dialect.ordered_list("key", "seq")},
               string_agg(item, ',' ORDER BY seq)
        FROM (SELECT batch, seq, key, {item_sql} AS item
              FROM {run_table(run, "chg")} WHERE chunk = ?) AS rows
        GROUP BY batch ORDER BY batch""",
        (chunk,),
    )
    return [
        Batch(chunk, int(number), run_id=run.run_id, rendered=str(items), keys=list(keys))
        for number, keys, items in rows
    ]


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
    *,
    worker: str | None = None,
) -> None:
    """Durably note that the destination acknowledged one batch, with its rejected rows."""
    record_acks(session, run, [(batch, accepted, rejections)], worker=worker)


Ack = tuple[Batch, int, Sequence[tuple[str, str]]]


def record_acks(
    session: Session, run: RunRef, acks: Sequence[Ack], *, worker: str | None = None
) -> None:
    """Durably note acknowledged batches (batch, accepted, rejections) in one statement.

    One statement when nothing was rejected (the common case, on the hot path); a batch
    already noted is left as it is, so a replayed acknowledgement changes nothing, even when
    two workers race to note the same batch (the second insert waits for the first and
    then does nothing, so its rejections are not counted twice). `worker` names the worker
    process that sent the batches.
    """
    if not acks:
        return
    rows = ", ".join("(?, ?, ?, ?, ?, ?, current_timestamp)" for _ in acks)
    plain = f"""INSERT INTO switchyard.acked_batches
        (run_id, chunk, batch, accepted, rejected, worker, acked_at)
        VALUES {rows}"""
    insert = plain + " ON CONFLICT (run_id, chunk, batch) DO NOTHING"
    values = [
        v
        for batch, accepted, rejections in acks
        for v in (run.run_id, batch.chunk, batch.number, accepted, len(rejections), worker)
    ]
    if not any(rejections for _, _, rejections in acks):
        try:
            # Without ON CONFLICT: DuckDB checks it at about three times the cost of the
            # insert itself, and a batch is noted twice only after a crash or a race.
            session.execute(plain, values)
        except WarehouseError:
            session.execute(insert, values)
        return
    with session.transaction():
        new = {
            (int(c), int(b))
            for c, b in session.fetchall(insert + " RETURNING chunk, batch", values)
        }
        session.executemany(
            """INSERT INTO switchyard.row_outcomes (run_id, sync_id, stage, key, reason)
            VALUES (?, ?, 'rejected', ?, ?)""",
            [
                (run.run_id, run.sync, key, reason)
                for batch, _, rejections in acks
                if (batch.chunk, batch.number) in new
                for key, reason in rejections
            ],
        )


def batches_by_worker(session: Session, run_id: str) -> dict[str, int]:
    """How many of a run's batches each worker process acknowledged (kept for recent runs)."""
    rows = session.fetchall(
        "SELECT coalesce(worker, 'unknown'), count(*) FROM switchyard.acked_batches "
        "WHERE run_id = ? GROUP BY 1 ORDER BY 1",
        (run_id,),
    )
    return {str(worker): int(n) for worker, n in rows}


def chunk_totals(session: Session, run: RunRef, chunk: int) -> tuple[int, int, int, dict[str, int]]:
    """(batches, sent, accepted, rejected by reason) acknowledged for a chunk, every attempt
    included: a retried chunk reports what reached the destination, not just its last try."""
    row = session.fetchone(
        """SELECT count(*), coalesce(sum(accepted), 0), coalesce(sum(rejected), 0)
        FROM switchyard.acked_batches WHERE run_id = ? AND chunk = ?""",
        (run.run_id, chunk),
    )
    batches, accepted, rejected = (int(v) for v in row) if row else (0, 0, 0)
    reasons = session.fetchall(
        f"""SELECT r.reason, count(*) FROM switchyard.row_outcomes AS r
        JOIN {run_table(run, "chg")} AS c ON c.key = r.key
        WHERE r.run_id = ? AND r.stage = 'rejected' AND c.chunk = ?
        GROUP BY r.reason""",
        (run.run_id, chunk),
    )
    return batches, accepted + rejected, accepted, {str(k): int(n) for k, n in reasons}
