"""commit: fold what the destination acknowledged into the sync's delivered state.

Only rows in acknowledged batches count, and of those only the ones the destination did
not reject; rejected rows keep their reason in `row_errors` and, being absent from (or
stale in) `delivered`, are sent again next run. Idempotent: running it twice changes
nothing, so a retried or cancelled run can always commit.
"""

from __future__ import annotations

from switchyard.pipeline.state import run_table
from switchyard.runs import CommitResult, RunRef
from switchyard.warehouse.base import Session

# Chunks folded in per transaction: bounds the embedded engine's memory on huge runs.
CHUNKS_PER_TRANSACTION = 50


def commit_delivered(session: Session, run: RunRef) -> CommitResult:
    chg = run_table(run, "chg")
    if not session.table_exists("switchyard", f"chg_{run.tag}"):
        return CommitResult(delivered=0, removed=0, rejected=0)
    row = session.fetchone(f"SELECT max(chunk) FROM {chg}")
    chunks = int(row[0]) + 1 if row and row[0] is not None else 0
    # Each slice of chunks is self-contained (a key appears in one chunk), so committing
    # slice by slice is as correct as one transaction, and each slice is idempotent.
    for low in range(0, chunks, CHUNKS_PER_TRANSACTION):
        _commit_slice(session, run, chg, low, low + CHUNKS_PER_TRANSACTION - 1)
    with session.transaction():
        session.execute(
            f"""DELETE FROM switchyard.delivered WHERE sync_id = ? AND key IN (
                SELECT key FROM {chg} WHERE op = 'forget')""",
            (run.sync,),
        )
        session.execute(
            """DELETE FROM switchyard.row_errors WHERE sync_id = ? AND key IN (
                SELECT key FROM switchyard.row_outcomes WHERE run_id = ? AND stage = 'rejected')""",
            (run.sync, run.run_id),
        )
        session.execute(
            """INSERT INTO switchyard.row_errors (sync_id, key, run_id, reason, failed_at)
            SELECT sync_id, key, run_id, min(reason), current_timestamp
            FROM switchyard.row_outcomes WHERE run_id = ? AND stage = 'rejected'
            GROUP BY sync_id, key, run_id""",
            (run.run_id,),
        )
    totals = session.fetchone(
        f"""SELECT
              sum(CASE WHEN op = 'upsert' THEN 1 ELSE 0 END),
              sum(CASE WHEN op = 'remove' THEN 1 ELSE 0 END)
            FROM {_acked(chg)} AS ok""",
        (run.run_id, run.run_id, 0, chunks),
    )
    rejected = session.fetchone(
        "SELECT count(*) FROM switchyard.row_outcomes WHERE run_id = ? AND stage = 'rejected'",
        (run.run_id,),
    )
    return CommitResult(
        delivered=int(totals[0] or 0) if totals else 0,
        removed=int(totals[1] or 0) if totals else 0,
        rejected=int(rejected[0]) if rejected else 0,
    )


def _acked(chg: str) -> str:
    """Rows of acknowledged batches in a chunk range that the destination did not reject."""
    return f"""(SELECT c.key, c.op, c.hash FROM {chg} AS c
        JOIN switchyard.acked_batches AS a
          ON a.run_id = ? AND a.chunk = c.chunk AND a.batch = c.batch
        WHERE NOT EXISTS (
            SELECT 1 FROM switchyard.row_outcomes AS r
            WHERE r.run_id = ? AND r.stage = 'rejected' AND r.key = c.key)
          AND c.chunk BETWEEN ? AND ?)"""


def _commit_slice(session: Session, run: RunRef, chg: str, low: int, high: int) -> None:
    """Replace the delivered rows of the acknowledged keys (delete, then insert upserts)."""
    acked = _acked(chg)
    scope = (run.run_id, run.run_id, low, high)
    with session.transaction():
        session.execute(
            f"""DELETE FROM switchyard.delivered WHERE sync_id = ? AND key IN (
                SELECT key FROM {acked} AS ok)""",
            (run.sync, *scope),
        )
        session.execute(
            f"""INSERT INTO switchyard.delivered (sync_id, key, hash, run_id, delivered_at)
            SELECT ?, key, hash, ?, current_timestamp FROM {acked} AS ok WHERE op = 'upsert'""",
            (run.sync, run.run_id, *scope),
        )
        session.execute(
            f"""DELETE FROM switchyard.row_errors WHERE sync_id = ? AND key IN (
                SELECT key FROM {acked} AS ok)""",
            (run.sync, *scope),
        )
