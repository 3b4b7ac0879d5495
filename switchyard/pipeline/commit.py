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


def commit_delivered(session: Session, run: RunRef) -> CommitResult:
    chg = run_table(run, "chg")
    if not session.table_exists("switchyard", f"chg_{run.tag}"):
        return CommitResult(delivered=0, removed=0, rejected=0)
    acked = f"""(SELECT c.key, c.op, c.hash FROM {chg} AS c
        JOIN switchyard.acked_batches AS a
          ON a.run_id = ? AND a.chunk = c.chunk AND a.batch = c.batch
        WHERE NOT EXISTS (
            SELECT 1 FROM switchyard.row_outcomes AS r
            WHERE r.run_id = ? AND r.stage = 'rejected' AND r.key = c.key))"""
    ids = (run.run_id, run.run_id)
    with session.transaction():
        session.execute(
            f"""DELETE FROM switchyard.delivered WHERE sync_id = ? AND key IN (
                SELECT key FROM {acked} AS ok WHERE op = 'remove'
                UNION ALL SELECT key FROM {chg} WHERE op = 'forget')""",
            (run.sync, *ids),
        )
        session.execute(
            f"""INSERT INTO switchyard.delivered (sync_id, key, hash, run_id, delivered_at)
            SELECT ?, key, hash, ?, current_timestamp FROM {acked} AS ok WHERE op = 'upsert'
            ON CONFLICT (sync_id, key) DO UPDATE SET
              hash = excluded.hash, run_id = excluded.run_id,
              delivered_at = excluded.delivered_at""",
            (run.sync, run.run_id, *ids),
        )
        session.execute(
            f"""DELETE FROM switchyard.row_errors WHERE sync_id = ? AND key IN (
                SELECT key FROM {acked} AS ok)""",
            (run.sync, *ids),
        )
        session.execute(
            """INSERT INTO switchyard.row_errors (sync_id, key, run_id, reason, failed_at)
            SELECT sync_id, key, run_id, min(reason), current_timestamp
            FROM switchyard.row_outcomes WHERE run_id = ? AND stage = 'rejected'
            GROUP BY sync_id, key, run_id
            ON CONFLICT (sync_id, key) DO UPDATE SET
              run_id = excluded.run_id, reason = excluded.reason, failed_at = excluded.failed_at""",
            (run.run_id,),
        )
    row = session.fetchone(
        f"""SELECT
              sum(CASE WHEN op = 'upsert' THEN 1 ELSE 0 END),
              sum(CASE WHEN op = 'remove' THEN 1 ELSE 0 END)
            FROM {acked} AS ok""",
        ids,
    )
    rejected = session.fetchone(
        "SELECT count(*) FROM switchyard.row_outcomes WHERE run_id = ? AND stage = 'rejected'",
        (run.run_id,),
    )
    return CommitResult(
        delivered=int(row[0] or 0) if row else 0,
        removed=int(row[1] or 0) if row else 0,
        rejected=int(rejected[0]) if rejected else 0,
    )
