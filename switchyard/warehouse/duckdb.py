"""DuckDB: the embedded default warehouse and state store.

DuckDB lets one process at a time open a file for writing. The worker therefore opens the
file only while activities use it and closes it when the last session ends, so the CLI can
seed or change profiles between runs. The open/close count is per process: a second worker
process on the same file waits for the lock like the CLI does, and when it stays taken its
activities fail with a retryable WarehouseError naming the holder's PID. Run one worker per
DuckDB file; to scale out, use Postgres.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import duckdb

from switchyard.warehouse.base import Dialect, Session, WarehouseError
from switchyard.warehouse.duckdb_lock import WarehouseLockedError, connect_with_retry

log = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 30.0

# Named locks for `Session.exclusive`: one process writes a DuckDB file, so a lock per
# process serialises every session that can reach it.
_named_locks: dict[str, threading.Lock] = {}
_named_locks_guard = threading.Lock()


def _named_lock(name: str) -> threading.Lock:
    with _named_locks_guard:
        return _named_locks.setdefault(name, threading.Lock())


class DuckDBDialect:
    name = "duckdb"
    needs_indexes = False

    def json_object(
        self, pairs: Sequence[tuple[str, str]], omit_nulls: Sequence[tuple[str, str]] = ()
    ) -> str:
        if not pairs and not omit_nulls:
            return "'{}'"
        args = ", ".join(f"'{key}', {expr}" for key, expr in pairs)
        whole = f"json_object({args})"
        if omit_nulls:
            # A merge patch (RFC 7386) drops the keys whose patch value is null.
            optional = ", ".join(f"'{key}', {expr}" for key, expr in omit_nulls)
            whole = f"json_merge_patch({whole}, json_object({optional}))"
        return f"CAST({whole} AS VARCHAR)"

    def regex_full_match(self, expr: str, pattern: str) -> str:
        return f"regexp_full_match({expr}, '{pattern}')"

    def iso_timestamp(self, expr: str) -> str:
        return f"strftime(CAST({expr} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%SZ')"

    def iso_date(self, expr: str) -> str:
        return f"strftime(CAST({expr} AS DATE), '%Y-%m-%d')"

    def row_hash(self, exprs: Sequence[str]) -> str:
        return f"hash({', '.join(exprs)})"

    def json_text(self, expr: str) -> str:
        return f"CAST(to_json(CAST({expr} AS VARCHAR)) AS VARCHAR)"

    def ordered_list(self, expr: str, order: str) -> str:
        return f"list({expr} ORDER BY {order})"


class DuckDBSession:
    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor
        self.dialect: Dialect = DuckDBDialect()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        try:
            self._cursor.execute(sql, list(params))
        except duckdb.Error as error:
            raise WarehouseError(str(error)) from error

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            self._cursor.executemany(sql, [list(r) for r in rows])
        except duckdb.Error as error:
            raise WarehouseError(str(error)) from error

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._cursor.execute(sql, list(params)).fetchall()
        except duckdb.Error as error:
            raise WarehouseError(str(error)) from error

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        try:
            return self._cursor.execute(sql, list(params)).fetchone()
        except duckdb.Error as error:
            raise WarehouseError(str(error)) from error

    def columns(self, sql: str) -> list[str]:
        try:
            relation = self._cursor.execute(f"SELECT * FROM ({sql}) AS q LIMIT 0")
        except duckdb.Error as error:
            raise WarehouseError(str(error)) from error
        return [d[0] for d in relation.description or []]

    def table_exists(self, schema: str, table: str) -> bool:
        row = self.fetchone(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            (schema, table),
        )
        return bool(row and row[0])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        with _named_lock(name), self.transaction():
            yield

    def stream(
        self, sql: str, params: Sequence[Any] = (), size: int = 10_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        try:
            result = self._cursor.execute(sql, list(params))
            while rows := result.fetchmany(size):
                yield rows
        except duckdb.Error as error:
            raise WarehouseError(str(error)) from error


class DuckDBWarehouse:
    """A DuckDB file shared by the threads of one process, open only while in use.

    `linger_seconds` keeps the file open that long after the last session ends, so a worker
    moving from one activity to the next doesn't reopen it each time; `memory_limit` bounds
    DuckDB's buffer pool (it spills to disk beyond it), which bounds the worker's memory
    whatever the audience size.
    """

    def __init__(
        self,
        path: Path | str,
        linger_seconds: float = 0.0,
        memory_limit: str | None = None,
        *,
        lock_wait_s: float = LOCK_WAIT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self._lock_wait_s = lock_wait_s
        self.url = str(self.path)
        self.dialect: Dialect = DuckDBDialect()
        self._linger = linger_seconds
        self._memory_limit = memory_limit
        self._lock = threading.Lock()
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._idle_timer: threading.Timer | None = None

    def _acquire(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            if self._connection is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self._connection = connect_with_retry(
                        self.path, self._lock_wait_s, on_wait=self._say_waiting
                    )
                except WarehouseLockedError as error:
                    raise WarehouseError(
                        f"cannot open warehouse {self.path}: {error}. DuckDB admits one "
                        "writing process per file: run a single worker on it, or use a "
                        "Postgres warehouse to run several"
                    ) from error
                except duckdb.Error as error:
                    raise WarehouseError(f"cannot open warehouse {self.path}: {error}") from error
                if self._memory_limit:
                    self._connection.execute(f"SET memory_limit = '{self._memory_limit}'")
                    # Large CREATE TABLE AS statements buffer far less without it; nothing
                    # relies on physical row order (chunks are read ORDER BY seq).
                    self._connection.execute("SET preserve_insertion_order = false")
            self._users += 1
            return self._connection

    def _say_waiting(self, message: str) -> None:
        log.warning(
            "%s: %s (another process has it open; waiting up to %gs)",
            self.path,
            message,
            self._lock_wait_s,
        )

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users or self._connection is None:
                return
            if self._linger > 0:
                self._idle_timer = threading.Timer(self._linger, self.close)
                self._idle_timer.daemon = True
                self._idle_timer.start()
            else:
                self._connection.close()
                self._connection = None

    def session(self) -> AbstractContextManager[Session]:
        return self._session()

    @contextmanager
    def _session(self) -> Iterator[DuckDBSession]:
        connection = self._acquire()
        cursor = connection.cursor()
        try:
            yield DuckDBSession(cursor)
        finally:
            cursor.close()
            self._release()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._users == 0:
                self._connection.close()
                self._connection = None
