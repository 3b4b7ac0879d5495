"""Pick the warehouse engine from its URL: a path means DuckDB."""

from __future__ import annotations

from switchyard.warehouse.base import Warehouse
from switchyard.warehouse.duckdb import DuckDBWarehouse


def open_warehouse(url: str) -> Warehouse:
    if url.startswith(("postgres://", "postgresql://")):
        raise NotImplementedError("the Postgres warehouse is not available yet")
    return DuckDBWarehouse(url.removeprefix("duckdb://"))
