"""Sync state kept beside the profiles, in the warehouse's `switchyard` schema.

- `delivered`: per sync, the key and payload hash the destination acknowledged last; the
  diff compares each run's snapshot with it.
- `acked_batches`: durable per-batch checkpoints, so a restarted deliver activity re-sends
  at most the batches that were in flight; each names the worker process that sent it.
- `row_outcomes`: why a row was not sent (invalid, excluded, rejected), per run.
- `row_errors`: the destination's latest rejection per row, cleared when it gets through.
- `runs`: the run ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from switchyard.runs import RunRef
from switchyard.warehouse.base import Session

SCHEMA = "switchyard"

DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.delivered (
        sync_id VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        hash VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        delivered_at TIMESTAMP NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.acked_batches (
        run_id VARCHAR NOT NULL,
        chunk INTEGER NOT NULL,
        batch INTEGER NOT NULL,
        accepted INTEGER NOT NULL,
        rejected INTEGER NOT NULL,
        acked_at TIMESTAMP NOT NULL,
        worker VARCHAR,
        PRIMARY KEY (run_id, chunk, batch))""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.row_outcomes (
        run_id VARCHAR NOT NULL,
        sync_id VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        key VARCHAR,
        profile_id VARCHAR,
        reason VARCHAR NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.row_errors (
        sync_id VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        failed_at TIMESTAMP NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.runs (
        run_id VARCHAR PRIMARY KEY,
        sync_id VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        audience VARCHAR NOT NULL,
        audience_version INTEGER NOT NULL,
        destination VARCHAR NOT NULL,
        contract_version INTEGER NOT NULL,
        dry_run BOOLEAN NOT NULL,
        full_resync BOOLEAN NOT NULL,
        counts VARCHAR NOT NULL,
        error VARCHAR)""",
    # A sync's last plan that sent nothing, and what it depended on (see `quiet`).
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.quiet_plans (
        sync_id VARCHAR PRIMARY KEY,
        fingerprint VARCHAR NOT NULL,
        planned_by VARCHAR NOT NULL,
        outcomes_run VARCHAR NOT NULL,
        counts VARCHAR NOT NULL)""",
    # Added after the first release: state created before it lacks the column.
    f"ALTER TABLE {SCHEMA}.acked_batches ADD COLUMN IF NOT EXISTS worker VARCHAR",
]

# Where the engine keeps indexes on disk (Postgres): one row per key, enforced, and the rows
# of one run in the per-run outcomes. DuckDB holds indexes in memory, so there `delivered`
# stays unindexed (a 10M-row key index would set the worker's memory) and uniqueness comes
# from commit replacing rows (delete, then insert) one slice at a time.
INDEXES = [
    f"CREATE UNIQUE INDEX IF NOT EXISTS delivered_key ON {SCHEMA}.delivered (sync_id, key)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS row_errors_key ON {SCHEMA}.row_errors (sync_id, key)",
    f"CREATE INDEX IF NOT EXISTS row_outcomes_run ON {SCHEMA}.row_outcomes (run_id, stage)",
]


def ensure_schema(session: Session) -> None:
    """Create or upgrade the state tables; cheap and lock-free once they are current.

    Worker processes may start runs at the same moment, and Postgres refuses two concurrent
    CREATE ... IF NOT EXISTS of one name, so the DDL runs under one lock held across every
    process (an advisory lock on Postgres) and in one transaction: all of it applies or
    none, and the last column added marks it done.
    """
    if _current(session):
        return
    with session.exclusive("switchyard.ensure_schema"):
        for statement in DDL:
            session.execute(statement)
        if session.dialect.needs_indexes:
            for statement in INDEXES:
                session.execute(statement)


def _current(session: Session) -> bool:
    row = session.fetchone(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = 'acked_batches' AND column_name = 'worker'",
        (SCHEMA,),
    )
    return bool(row and row[0])


# Postgres sizes each hash table and sort by work_mem (4MB by default): planning joins a
# million rows with a million, which at 4MB spill to disk in dozens of batches.
PLANNING_WORK_MEM = "128MB"


def more_working_memory(session: Session) -> None:
    """Let the current transaction's joins and sorts use more memory (Postgres)."""
    if session.dialect.name == "postgres":
        session.execute(f"SET LOCAL work_mem = '{PLANNING_WORK_MEM}'")


@contextmanager
def planning(session: Session) -> Iterator[None]:
    """A planning step's statements: on Postgres in one transaction with more memory for
    joins; on DuckDB as they are (it sizes its own memory)."""
    if session.dialect.name != "postgres":
        yield
        return
    with session.transaction():
        more_working_memory(session)
        yield


def run_table(run: RunRef, stage: str) -> str:
    """The working table of one pipeline stage of one run."""
    return f"{SCHEMA}.{stage}_{run.tag}"


def drop_run_tables(session: Session, run: RunRef, stages: tuple[str, ...]) -> None:
    for stage in stages:
        session.execute(f"DROP TABLE IF EXISTS {run_table(run, stage)}")
