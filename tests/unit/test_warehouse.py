"""The warehouse adapters' own behaviour: placeholders, lost connections, concurrent workers.

Pipeline behaviour is tested on both engines elsewhere; these are the engine-specific edges
a worker meets in production.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from temporalio.exceptions import ApplicationError

from activities.sync import retry_meaning
from switchyard.pipeline.checkpoints import Batch, Operation, batches_by_worker, record_ack
from switchyard.pipeline.state import ensure_schema
from switchyard.runs import RunRef
from switchyard.warehouse.base import WarehouseError
from switchyard.warehouse.duckdb import DuckDBWarehouse
from switchyard.warehouse.factory import open_warehouse
from switchyard.warehouse.postgres import PostgresWarehouse, redact, to_pyformat
from tests.support.engines import fresh_postgres
from tests.support.warehouse import MakeWarehouse


@pytest.fixture
def pg() -> Iterator[PostgresWarehouse]:
    with fresh_postgres() as url:
        warehouse = PostgresWarehouse(url)
        yield warehouse
        warehouse.close()


# --- placeholders -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT ? WHERE n % 4 = ?", "SELECT %s WHERE n %% 4 = %s"),
        (
            "SELECT '?', x LIKE '+%' FROM t WHERE a = ?",
            "SELECT '?', x LIKE '+%%' FROM t WHERE a = %s",
        ),
        ("SELECT 'it''s ?' , \"odd?name\" , ?", "SELECT 'it''s ?' , \"odd?name\" , %s"),
        ("SELECT E'\\'?', ? -- what?\n", "SELECT E'\\'?', %s -- what?\n"),
        ("SELECT $$ ? % $$, /* ? */ ?", "SELECT $$ ? %% $$, /* ? */ %s"),
    ],
)
def test_question_marks_become_placeholders_only_outside_quotes(sql: str, expected: str) -> None:
    assert to_pyformat(sql) == expected


def test_percent_signs_survive_with_and_without_parameters(pg: PostgresWarehouse) -> None:
    with pg.session() as s:
        assert s.fetchone("SELECT 7 % 4, '+1' LIKE '+%'") == (3, True)
        assert s.fetchone("SELECT 7 % ?, '+1' LIKE '+%', '?'", (4,)) == (3, True, "?")
        assert [
            r
            for batch in s.stream("SELECT g % ? FROM generate_series(1, 5) AS g", (2,), 2)
            for r in batch
        ] == [(1,), (0,), (1,), (0,), (1,)]


# --- lost connections -------------------------------------------------------------------------


def test_a_lost_connection_fails_one_statement_retryably_and_the_next_session_reconnects(
    pg: PostgresWarehouse,
) -> None:
    with pg.session() as s:
        row = s.fetchone("SELECT pg_backend_pid()")
        assert row is not None
        first_pid = row[0]
    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first_pid,))

    with pytest.raises(WarehouseError) as lost, pg.session() as s:
        s.fetchone("SELECT 1")
    # A WarehouseError is what the activities turn into a retryable Temporal failure.
    with pytest.raises(ApplicationError) as failure, retry_meaning():
        raise lost.value
    assert not failure.value.non_retryable and failure.value.type == "WarehouseError"

    with pg.session() as s:
        row = s.fetchone("SELECT pg_backend_pid()")
    assert row is not None and row[0] != first_pid


def test_an_unreachable_server_is_a_warehouse_error_without_the_password() -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:9/nowhere"
    warehouse = open_warehouse(url)
    with pytest.raises(WarehouseError, match="cannot connect") as refused, warehouse.session():
        pass
    assert "hunter2" not in str(refused.value)
    assert redact(url) == "postgresql://postgres:***@127.0.0.1:9/nowhere"


def test_a_busy_pool_fails_retryably_after_its_timeout(pg: PostgresWarehouse) -> None:
    small = PostgresWarehouse(pg.url, max_connections=1, checkout_timeout_s=0.1)
    try:
        with small.session(), pytest.raises(WarehouseError, match="busy"), small.session():
            pass
        with small.session() as s:  # the slot came back
            assert s.fetchone("SELECT 1") == (1,)
    finally:
        small.close()


# --- several workers at once ------------------------------------------------------------------


def test_concurrent_workers_create_the_schema_once_and_count_a_raced_batch_once(
    pg: PostgresWarehouse,
) -> None:
    """Threads stand in for worker processes: each has its own connection, as they would."""
    run = RunRef(run_id="run-1", sync="s")
    batch = Batch(0, 0, [Operation("upsert", "a@example.com", "{}")])
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            with pg.session() as s:
                ensure_schema(s)
            barrier.wait()
            with pg.session() as s:
                record_ack(s, run, batch, 0, [("a@example.com", "blocked")], worker=f"w{n}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with pg.session() as s:
        by_worker = batches_by_worker(s, run.run_id)
        rejected = s.fetchone("SELECT count(*) FROM switchyard.row_outcomes")
    assert sum(by_worker.values()) == 1
    assert rejected == (1,)


# --- DuckDB admits one writing process --------------------------------------------------------

_HOLD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
"""


def test_a_second_process_on_a_duckdb_file_waits_then_fails_retryably_naming_the_holder(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        warehouse = DuckDBWarehouse(path, lock_wait_s=0.3)
        with pytest.raises(WarehouseError) as locked, warehouse.session():
            pass
        message = str(locked.value)
        assert f"PID {holder.pid}" in message and "one writing process" in message
        with pytest.raises(ApplicationError) as failure, retry_meaning():
            raise locked.value
        assert not failure.value.non_retryable
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()


# --- state from an earlier release ------------------------------------------------------------


def test_checkpoints_from_before_the_worker_column_are_upgraded_in_place(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse([])
    run = RunRef(run_id="old-run", sync="s")
    with warehouse.session() as s:
        s.execute("CREATE SCHEMA switchyard")
        s.execute(
            """CREATE TABLE switchyard.acked_batches (
            run_id VARCHAR NOT NULL, chunk INTEGER NOT NULL, batch INTEGER NOT NULL,
            accepted INTEGER NOT NULL, rejected INTEGER NOT NULL, acked_at TIMESTAMP NOT NULL,
            PRIMARY KEY (run_id, chunk, batch))"""
        )
        s.execute(
            "INSERT INTO switchyard.acked_batches VALUES ('old-run', 0, 0, 1, 0, current_timestamp)"
        )
        ensure_schema(s)
        record_ack(s, run, Batch(0, 1), 1, [], worker="w1")
        assert batches_by_worker(s, run.run_id) == {"unknown": 1, "w1": 1}
