"""Pick the warehouse engine from its URL: postgres:// or postgresql:// is Postgres, a path
(optionally duckdb://) is a DuckDB file."""

from __future__ import annotations

from switchyard.warehouse.base import Warehouse
from switchyard.warehouse.duckdb import DuckDBWarehouse
from switchyard.warehouse.postgres import PostgresWarehouse

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def duckdb_path(url: str) -> str:
    return url.removeprefix("duckdb://")


def open_warehouse(
    url: str, *, linger_seconds: float = 0.0, memory_limit: str | None = None
) -> Warehouse:
    """The warehouse at `url`; `linger_seconds` and `memory_limit` tune a DuckDB file (see
    DuckDBWarehouse) and mean nothing to Postgres, which keeps a connection pool."""
    if is_postgres(url):
        return PostgresWarehouse(url)
    if "://" in url and not url.startswith("duckdb://"):
        raise ValueError(
            f"unsupported warehouse URL scheme {url.split('://', 1)[0]!r}: "
            "use a DuckDB file path or a postgresql:// URL"
        )
    return DuckDBWarehouse(
        duckdb_path(url), linger_seconds=linger_seconds, memory_limit=memory_limit
    )
