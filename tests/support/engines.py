"""Both warehouse engines for tests: a DuckDB file, or a fresh Postgres database per test.

Postgres comes from SWITCHYARD_TEST_POSTGRES (default: the local server `.ci/run` starts,
with trust auth). Each test gets its own database `sy_test_<hex>`, dropped afterwards even
if a worker process still holds connections to it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ENGINES = ("duckdb", "postgres")
ADMIN_URL = os.environ.get("SWITCHYARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def database_url(name: str, admin_url: str = ADMIN_URL) -> str:
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """The URL of a new, empty database, dropped on exit."""
    name = f"sy_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_warehouse(engine: str, directory: Path) -> Iterator[str]:
    """The URL of an empty warehouse on `engine`, isolated from every other test."""
    if engine == "duckdb":
        yield str(directory / "warehouse.duckdb")
    elif engine == "postgres":
        with fresh_postgres() as url:
            yield url
    else:
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
