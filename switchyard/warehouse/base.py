"""The warehouse port: where profiles live and where sync state is kept.

Every pipeline step is SQL run inside the warehouse, so Python never holds an audience in
memory. The few functions that differ between engines live on `Dialect`; statements use
`?` placeholders and each engine adapts them.

Engines: DuckDB (a file, one writing process; `duckdb.py`) and Postgres (any number of
worker processes; `postgres.py`). `factory.open_warehouse` picks one from the URL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol


class WarehouseError(Exception):
    """A statement failed in the warehouse (bad SQL, missing table, lost connection)."""


class Dialect(Protocol):
    name: str
    # True where a filtered read of a big table scans all of it without a b-tree index
    # (Postgres); DuckDB's zone maps over tables written in order do without.
    needs_indexes: bool

    def json_object(
        self, pairs: Sequence[tuple[str, str]], omit_nulls: Sequence[tuple[str, str]] = ()
    ) -> str:
        """SQL rendering a JSON object text from (key, SQL expression) pairs.

        Keys in `omit_nulls` are left out of the object when their value is NULL.
        """
        ...

    def regex_full_match(self, expr: str, pattern: str) -> str: ...

    def iso_timestamp(self, expr: str) -> str:
        """SQL rendering a timestamp as ISO 8601 text in UTC (`2026-01-31T12:00:00Z`)."""
        ...

    def iso_date(self, expr: str) -> str: ...

    def row_hash(self, exprs: Sequence[str]) -> str:
        """SQL for a cheap 64-bit hash of several values (NULLs included), for telling
        whether a row changed; not for security, and compared together with a key."""
        ...

    def json_text(self, expr: str) -> str:
        """SQL rendering a text value as a JSON string literal (quoted and escaped)."""
        ...

    def ordered_list(self, expr: str, order: str) -> str:
        """SQL aggregating `expr` into an array (a Python list when fetched), by `order`."""
        ...


class Session(Protocol):
    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    def columns(self, sql: str) -> list[str]:
        """Column names a query would return, without running it over the data."""
        ...

    def table_exists(self, schema: str, table: str) -> bool: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """A transaction holding the lock `name` against every other session of every
        process using the warehouse, for work that must not run twice at once (schema
        changes)."""
        ...

    def stream(
        self, sql: str, params: Sequence[Any] = (), size: int = 10_000
    ) -> Iterator[list[tuple[Any, ...]]]: ...


class Warehouse(Protocol):
    dialect: Dialect
    url: str

    def session(self) -> AbstractContextManager[Session]: ...

    def close(self) -> None: ...
