"""Seed or mutate whichever warehouse a URL names: a DuckDB file or a Postgres database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from switchyard.sampledata.duckdb_seed import SeedSummary, seed_duckdb
from switchyard.sampledata.mutate import MutationSummary, mutate_duckdb, mutate_postgres
from switchyard.sampledata.postgres_seed import seed_postgres
from switchyard.warehouse.factory import duckdb_path, is_postgres


def seed_warehouse(
    url: str,
    profiles: int,
    seed: int = 42,
    progress: Callable[[int], None] | None = None,
    *,
    lock_timeout_s: float = 30,
    on_lock_wait: Callable[[str], None] | None = None,
) -> SeedSummary:
    """seed_duckdb or seed_postgres, by URL; the lock options apply to DuckDB files only."""
    if is_postgres(url):
        return seed_postgres(url, profiles, seed, progress)
    return seed_duckdb(
        Path(duckdb_path(url)),
        profiles,
        seed,
        progress,
        lock_timeout_s=lock_timeout_s,
        on_lock_wait=on_lock_wait,
    )


def mutate_warehouse(
    url: str,
    count: int,
    seed: int = 7,
    *,
    lock_timeout_s: float = 30,
    on_lock_wait: Callable[[str], None] | None = None,
) -> MutationSummary:
    """mutate_duckdb or mutate_postgres, by URL: the same changes on either engine."""
    if is_postgres(url):
        return mutate_postgres(url, count, seed)
    return mutate_duckdb(
        Path(duckdb_path(url)),
        count,
        seed,
        lock_timeout_s=lock_timeout_s,
        on_lock_wait=on_lock_wait,
    )
