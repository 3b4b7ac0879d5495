"""Writing the sample data set into a DuckDB file."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from switchyard.sampledata.generate import check_args, iter_blocks
from switchyard.sampledata.schema import TABLES, create_table_sql
from switchyard.warehouse.duckdb_lock import connect_with_retry

SCHEMA = "main"


@dataclass(frozen=True, slots=True)
class SeedSummary:
    # The DuckDB file's path, or the Postgres URL without its password.
    warehouse: str
    seed: int
    rows: dict[str, int]
    seconds: float

    @property
    def profiles(self) -> int:
        return self.rows["profiles"]

    @property
    def path(self) -> Path:
        return Path(self.warehouse)


def seed_duckdb(
    path: Path,
    profiles: int,
    seed: int = 42,
    progress: Callable[[int], None] | None = None,
    *,
    lock_timeout_s: float = 30,
    on_lock_wait: Callable[[str], None] | None = None,
) -> SeedSummary:
    """(Re)create main.profiles, main.consents and main.suppressions with sample data.

    Only those three tables are replaced; other schemas in the file (sync state under
    `switchyard`) are left alone. Data goes into staging tables first and replaces the old
    tables in one short transaction at the end, so a failed or interrupted seed leaves the
    previous tables as they were. (One big transaction would do the same but holds every
    inserted row in memory until commit: ~0.7 GB per million profiles.) progress, if given,
    is called with the number of profiles written so far after each block.
    """
    check_args(profiles, seed)
    rows = dict.fromkeys(TABLES, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = connect_with_retry(path, lock_timeout_s, on_wait=on_lock_wait)
    started = time.perf_counter()  # after any wait for the lock: seconds measure the seeding
    try:
        _create_staging(con)
        # closing(): stop the look-ahead thread now, not when the traceback is freed.
        with contextlib.closing(iter_blocks(profiles, seed, ahead=2)) as blocks:
            for block in blocks:
                for table, batch in block.batches():
                    _append(con, _staging(table), batch)
                    rows[table] += batch.num_rows
                if progress is not None:
                    progress(rows["profiles"])
        _swap_in_staging(con)
    except BaseException:
        _drop_staging(con)
        raise
    finally:
        con.close()
    return SeedSummary(str(path), seed, rows, time.perf_counter() - started)


def _staging(table: str) -> str:
    return f"_seed_{table}"


def _create_staging(con: duckdb.DuckDBPyConnection) -> None:
    for table in TABLES:
        con.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{_staging(table)}")
        con.execute(create_table_sql(table, SCHEMA, name=_staging(table)))


def _swap_in_staging(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        for table in TABLES:
            con.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
            con.execute(f"ALTER TABLE {SCHEMA}.{_staging(table)} RENAME TO {table}")
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


def _drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    # Best effort: the original error matters more than a cleanup failing on a broken
    # connection, and the next seed drops leftovers anyway.
    with contextlib.suppress(duckdb.Error):
        for table in TABLES:
            con.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{_staging(table)}")


def _append(con: duckdb.DuckDBPyConnection, table: str, batch: pa.RecordBatch) -> None:
    # Registering the batch lets DuckDB scan the Arrow buffers directly, without a copy.
    con.register("_sample_batch", batch)
    try:
        con.execute(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM _sample_batch")
    finally:
        con.unregister("_sample_batch")
