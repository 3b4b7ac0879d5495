"""Postgres: the warehouse and state store for production and for more than one worker.

Several worker processes, each with several activity threads, share one database. Each
process keeps a small pool of connections; a session borrows one for its statements and
gives it back. Connections run in autocommit, so every statement outside
`Session.transaction()` commits on its own, at Postgres' default READ COMMITTED isolation.

Statements are written with `?` placeholders for both engines; psycopg wants `%s`, and
then reads every other `%` as the start of a placeholder, so a `%` in the SQL (`LIKE '+%'`,
`n % chunk`) is doubled. Statements without parameters are sent exactly as written.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import pq

from switchyard.warehouse.base import Dialect, WarehouseError

Connection = psycopg.Connection[tuple[Any, ...]]

# Connections one process may open (on demand). A worker runs up to 16 activities at once
# and a deliver activity holds its session for its whole chunk, so all 16 may be in a
# session at the same time; the rest is headroom. Mind the server's max_connections when
# adding worker processes.
MAX_CONNECTIONS = 20
# How long a session waits for a free connection before it fails (retryably).
CHECKOUT_TIMEOUT_S = 30.0
# An idle connection is checked with a round trip before reuse once it is this old, so a
# restarted server costs one reconnect rather than a failed activity attempt.
PING_AFTER_S = 30.0
CONNECT_TIMEOUT_S = 10

_cursor_names = itertools.count()


class PostgresDialect:
    name = "postgres"
    needs_indexes = True

    def json_object(
        self, pairs: Sequence[tuple[str, str]], omit_nulls: Sequence[tuple[str, str]] = ()
    ) -> str:
        if not pairs and not omit_nulls:
            return "'{}'"
        args = ", ".join(f"'{key}', {expr}" for key, expr in pairs)
        if not omit_nulls:
            return f"json_build_object({args})::text"
        optional = ", ".join(f"'{key}', {expr}" for key, expr in omit_nulls)
        return (
            f"(jsonb_build_object({args}) || jsonb_strip_nulls(jsonb_build_object({optional})))"
            "::text"
        )

    def regex_full_match(self, expr: str, pattern: str) -> str:
        # `~` matches anywhere; anchoring the whole pattern makes it a full match.
        return f"({expr} ~ '^(?:{pattern})$')"

    def iso_timestamp(self, expr: str) -> str:
        # Sessions run in UTC, so timestamptz values render as UTC too.
        return f"""to_char(CAST({expr} AS TIMESTAMP), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""

    def iso_date(self, expr: str) -> str:
        return f"to_char(CAST({expr} AS DATE), 'YYYY-MM-DD')"

    def row_hash(self, exprs: Sequence[str]) -> str:
        # A row's text form tells NULL from '' (`(,"")`); sessions run in UTC, so it is stable.
        return f"hashtextextended(ROW({', '.join(exprs)})::text, 0)"

    def json_text(self, expr: str) -> str:
        return f"to_json(CAST({expr} AS text))::text"

    def ordered_list(self, expr: str, order: str) -> str:
        return f"array_agg({expr} ORDER BY {order})"


# Quoted text and comments, where `?` is not a placeholder; or a `?`; or a `%`.
_TOKENS = re.compile(
    r"""(?P<quoted>
          (?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'
        | '(?:[^']|'')*'
        | "(?:[^"]|"")*"
        | --[^\n]*
        | /\*.*?\*/
        | \$(?P<tag>(?:[A-Za-z_][A-Za-z_0-9]*)?)\$.*?\$(?P=tag)\$)
      | (?P<mark>\?)
      | %""",
    re.VERBOSE | re.DOTALL,
)


def _replace(match: re.Match[str]) -> str:
    if match.group("quoted") is not None:
        return match.group(0).replace("%", "%%")
    return "%s" if match.group("mark") else "%%"


@lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """`?` placeholders as psycopg's `%s`, with every literal `%` doubled."""
    return _TOKENS.sub(_replace, sql)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=netloc[0].split(":", 1)[0] + ":***@" + netloc[1]))


def connect(url: str, application: str = "switchyard") -> Connection:
    """One autocommit connection in UTC; a WarehouseError (retryable) if the server can't be
    reached."""
    try:
        connection: Connection = psycopg.connect(
            url,
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=application,
        )
        connection.execute("SET TIME ZONE 'UTC'")
    except psycopg.Error as error:
        raise WarehouseError(f"cannot connect to the warehouse {redact(url)}: {error}") from error
    return connection


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class PostgresSession:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.dialect: Dialect = PostgresDialect()

    @staticmethod
    def _query(sql: str, params: Sequence[Any]) -> tuple[str, Sequence[Any] | None]:
        if not params:
            return sql, None
        return to_pyformat(sql), list(params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        try:
            self._connection.execute(*self._query(sql, params))
        except psycopg.Error as error:
            raise WarehouseError(str(error)) from error

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            with self._connection.cursor() as cursor:
                cursor.executemany(to_pyformat(sql), [list(r) for r in rows])
        except psycopg.Error as error:
            raise WarehouseError(str(error)) from error

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection.execute(*self._query(sql, params)).fetchall()
        except psycopg.Error as error:
            raise WarehouseError(str(error)) from error

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        try:
            return self._connection.execute(*self._query(sql, params)).fetchone()
        except psycopg.Error as error:
            raise WarehouseError(str(error)) from error

    def columns(self, sql: str) -> list[str]:
        try:
            cursor = self._connection.execute(f"SELECT * FROM ({sql}) AS q LIMIT 0")
        except psycopg.Error as error:
            raise WarehouseError(str(error)) from error
        return [column.name for column in cursor.description or []]

    def table_exists(self, schema: str, table: str) -> bool:
        row = self.fetchone(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            (schema, table),
        )
        return bool(row and row[0])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self._connection.transaction():
                yield
        except psycopg.Error as error:
            raise WarehouseError(str(error)) from error

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        with self.transaction():
            # Held until the transaction ends, by whichever process (or thread) asks first.
            self.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(name),))
            yield

    def stream(
        self, sql: str, params: Sequence[Any] = (), size: int = 10_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        # A server-side cursor: the server holds the result, this process one batch of it.
        # Such a cursor lives in a transaction.
        name = f"switchyard_stream_{next(_cursor_names)}"
        try:
            with (
                self._connection.transaction(),
                self._connection.cursor(name=name) as cursor,
            ):
                cursor.execute(*self._query(sql, params))
                while rows := cursor.fetchmany(size):
                    yield rows
        except psycopg.Error as error:
            raise WarehouseError(str(error)) from error


class ConnectionPool:
    """At most `size` connections to one database, shared by the threads of one process.

    Deliberately small: a borrowed connection is checked cheaply (broken, or idle long
    enough to deserve a round trip) and a returned one that is broken or left inside a
    transaction is closed or rolled back, so one lost connection costs one failed statement
    (a retryable WarehouseError), never a poisoned pool.
    """

    def __init__(
        self,
        url: str,
        size: int = MAX_CONNECTIONS,
        timeout_s: float = CHECKOUT_TIMEOUT_S,
        application: str = "switchyard",
    ) -> None:
        self.url = url
        self.size = size
        self._timeout_s = timeout_s
        self._application = application
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[tuple[Connection, float]] = []
        self._closed = False

    def get(self) -> Connection:
        if not self._slots.acquire(timeout=self._timeout_s):
            raise WarehouseError(
                f"all {self.size} connections to {redact(self.url)} stayed busy for "
                f"{self._timeout_s:g}s"
            )
        try:
            return self._reuse() or connect(self.url, self._application)
        except BaseException:
            self._slots.release()
            raise

    def _reuse(self) -> Connection | None:
        while True:
            with self._lock:
                if self._closed:
                    raise WarehouseError(f"the warehouse {redact(self.url)} was closed")
                if not self._idle:
                    return None
                connection, since = self._idle.pop()
            if connection.broken or connection.closed:
                connection.close()
                continue
            if time.monotonic() - since > PING_AFTER_S:
                try:
                    connection.execute("SELECT 1")
                except psycopg.Error:
                    connection.close()
                    continue
            return connection

    def put(self, connection: Connection) -> None:
        try:
            status = connection.info.transaction_status
            if status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
                try:
                    connection.rollback()
                except psycopg.Error:
                    connection.close()
            if connection.broken or connection.closed or status == pq.TransactionStatus.UNKNOWN:
                connection.close()
                return
            with self._lock:
                if not self._closed:
                    self._idle.append((connection, time.monotonic()))
                    return
            connection.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()


class PostgresWarehouse:
    """A Postgres database shared by every thread and worker process that uses it."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = MAX_CONNECTIONS,
        checkout_timeout_s: float = CHECKOUT_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.dialect: Dialect = PostgresDialect()
        self._pool = ConnectionPool(url, max_connections, checkout_timeout_s)

    def session(self) -> AbstractContextManager[PostgresSession]:
        return self._session()

    @contextmanager
    def _session(self) -> Iterator[PostgresSession]:
        connection = self._pool.get()
        try:
            yield PostgresSession(connection)
        finally:
            self._pool.put(connection)

    def close(self) -> None:
        self._pool.close()
