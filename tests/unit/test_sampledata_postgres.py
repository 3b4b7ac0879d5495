"""Sample data in Postgres: the same rows and the same mutations as in a DuckDB file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from starter.commands import seed as seed_command
from switchyard.sampledata import (
    SampleDataMissingError,
    mutate_warehouse,
    seed_warehouse,
)
from switchyard.warehouse.base import WarehouseError
from switchyard.warehouse.factory import open_warehouse
from tests.support.engines import fresh_postgres

TABLES = ("profiles", "consents", "suppressions")


@pytest.fixture
def pg() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


def table_rows(url: str, table: str) -> list[tuple[Any, ...]]:
    warehouse = open_warehouse(url)
    try:
        with warehouse.session() as s:
            rows = s.fetchall(f"SELECT * FROM {table}")
    finally:
        warehouse.close()
    return sorted(rows, key=lambda row: [(v is None, str(v)) for v in row])


def scalar(url: str, sql: str) -> Any:
    warehouse = open_warehouse(url)
    try:
        with warehouse.session() as s:
            row = s.fetchone(sql)
    finally:
        warehouse.close()
    assert row is not None
    return row[0]


def test_postgres_gets_the_same_rows_as_duckdb_and_the_indexes_consent_filter_uses(
    pg: str, tmp_path: Path
) -> None:
    duck = str(tmp_path / "w.duckdb")
    on_duckdb = seed_warehouse(duck, 3_000, seed=9)
    on_postgres = seed_warehouse(pg, 3_000, seed=9)

    assert on_postgres.rows == on_duckdb.rows
    for table in TABLES:
        assert table_rows(pg, table) == table_rows(duck, table), table
    indexes = scalar(
        pg,
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes "
        "WHERE schemaname = 'public'",
    )
    assert indexes == ("consents_purpose_profile,profiles_profile_id,suppressions_type_identifier")


def test_mutate_changes_the_same_profiles_the_same_way_on_both_engines(
    pg: str, tmp_path: Path
) -> None:
    duck = str(tmp_path / "w.duckdb")
    seed_warehouse(duck, 5_000)
    seed_warehouse(pg, 5_000)
    before = table_rows(pg, "profiles")

    on_duckdb = mutate_warehouse(duck, 200, seed=7)
    on_postgres = mutate_warehouse(pg, 200, seed=7)

    assert on_postgres == on_duckdb
    lengths = (
        len(on_postgres.traits_changed),
        len(on_postgres.ltv_dropped),
        len(on_postgres.consent_revoked),
    )
    assert lengths == (140, 30, 30)
    after = table_rows(pg, "profiles")
    assert {r[0] for r in set(after) - set(before)} == set(on_postgres.profile_ids)
    for table in ("profiles", "consents"):
        assert table_rows(pg, table) == table_rows(duck, table), table


def test_reseeding_postgres_keeps_sync_state_and_a_failed_seed_keeps_the_old_tables(
    pg: str,
) -> None:
    seed_warehouse(pg, 500)
    warehouse = open_warehouse(pg)
    with warehouse.session() as s:
        s.execute("CREATE SCHEMA switchyard")
        s.execute("CREATE TABLE switchyard.delivered (sync_id VARCHAR, key VARCHAR)")
        s.execute("INSERT INTO switchyard.delivered VALUES ('s1', 'a@example.com')")
    warehouse.close()

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seed_warehouse(pg, 900, progress=interrupt)
    assert scalar(pg, "SELECT count(*) FROM profiles") == 500

    seed_warehouse(pg, 800, seed=3)
    assert scalar(pg, "SELECT count(*) FROM profiles") == 800
    assert scalar(pg, "SELECT count(*) FROM switchyard.delivered") == 1
    tables = scalar(
        pg,
        "SELECT string_agg(table_name, ',' ORDER BY table_name) "
        "FROM information_schema.tables WHERE table_schema = 'public'",
    )
    assert tables == "consents,profiles,suppressions"


def test_mutate_refuses_an_unseeded_or_unreachable_postgres(pg: str) -> None:
    with pytest.raises(SampleDataMissingError):
        mutate_warehouse(pg, 10)
    with pytest.raises(WarehouseError, match="cannot connect"):
        mutate_warehouse("postgresql://postgres:secret@127.0.0.1:9/nowhere", 10)
    with pytest.raises(WarehouseError) as refused:
        seed_warehouse("postgresql://postgres:secret@127.0.0.1:9/nowhere", 10)
    assert "secret" not in str(refused.value)


def test_cli_seeds_and_mutates_postgres_from_the_option_or_the_environment(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = typer.Typer()
    seed_command.register(app)
    runner = CliRunner()

    seeded = runner.invoke(app, ["seed", "--profiles", "300", "--warehouse", pg])
    monkeypatch.setenv("SWITCHYARD_WAREHOUSE", pg)
    mutated = runner.invoke(app, ["mutate", "--count", "10"])
    unknown = runner.invoke(app, ["seed", "--warehouse", "mysql://localhost/db"])

    assert seeded.exit_code == 0, seeded.output
    assert "profiles 300" in seeded.output
    assert mutated.exit_code == 0, mutated.output
    assert "mutated 10 profiles" in mutated.output
    assert unknown.exit_code == 2
