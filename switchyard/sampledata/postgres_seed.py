"""Writing the sample data set into Postgres, streamed by COPY.

The same Arrow batches the DuckDB seeder writes are encoded as CSV by Arrow (in C++, a block
at a time) and streamed into `COPY ... FROM STDIN`, so memory stays at a few blocks whatever
the data set's size. The tables go into the connection's current schema (the first schema
on its search_path that exists, where unqualified `profiles` in audience SQL resolves).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import psycopg
import pyarrow as pa
from pyarrow import csv

from switchyard.pipeline.expressions import quote
from switchyard.sampledata.duckdb_seed import SeedSummary
from switchyard.sampledata.generate import check_args, iter_blocks
from switchyard.sampledata.schema import TABLES, create_table_sql
from switchyard.warehouse.base import WarehouseError
from switchyard.warehouse.postgres import Connection, connect, redact

# Built after loading (cheaper than maintaining them row by row), renamed with their table.
INDEXES: dict[str, list[tuple[str, str]]] = {
    "profiles": [("profile_id", "UNIQUE INDEX {name} ON {table} (profile_id)")],
    # consent-filter: "granted for this purpose", joined on profile_id.
    "consents": [("purpose_profile", "INDEX {name} ON {table} (purpose, profile_id)")],
    # consent-filter: suppression hits by (type, normalised identifier).
    "suppressions": [("type_identifier", "INDEX {name} ON {table} (identifier_type, identifier)")],
}
_CSV = csv.WriteOptions(include_header=False)


def seed_postgres(
    url: str,
    profiles: int,
    seed: int = 42,
    progress: Callable[[int], None] | None = None,
) -> SeedSummary:
    """(Re)create profiles, consents and suppressions with sample data, like seed_duckdb.

    Only those three tables are replaced; the `switchyard` schema (sync state) is left alone.
    Everything happens in one transaction: rows go into new tables (COPY FREEZE: written
    once, already frozen, so the first sync doesn't rewrite them), which get their indexes
    and statistics and then take the old tables' names. Readers see the old tables until
    the commit, and a failed or interrupted seed leaves them as they were. progress, if
    given, is called with the number of profiles written so far after each block.
    """
    check_args(profiles, seed)
    rows = dict.fromkeys(TABLES, 0)
    con = connect(url, "switchyard-seed")
    started = time.perf_counter()
    try:
        with con.transaction():
            con.execute("SET LOCAL maintenance_work_mem = '256MB'")
            schema = _current_schema(con)
            _create_staging(con, schema)
            # closing(): stop the look-ahead thread now, not when the traceback is freed.
            with contextlib.closing(iter_blocks(profiles, seed, ahead=2)) as blocks:
                for block in blocks:
                    for table, batch in block.batches():
                        _copy(con, f"{schema}.{_staging(table)}", batch)
                        rows[table] += batch.num_rows
                    if progress is not None:
                        progress(rows["profiles"])
            _index_and_analyse(con, schema)
            _swap_in_staging(con, schema)
    except psycopg.Error as error:
        raise WarehouseError(f"seeding {redact(url)} failed: {error}") from error
    finally:
        con.close()
    return SeedSummary(redact(url), seed, rows, time.perf_counter() - started)


def _current_schema(con: Connection) -> str:
    row = con.execute("SELECT current_schema()").fetchone()
    if not row or not row[0]:
        raise WarehouseError("the connection has no current schema: set search_path")
    return quote(str(row[0]))


def _staging(table: str) -> str:
    return f"_seed_{table}"


def _create_staging(con: Connection, schema: str) -> None:
    for table in TABLES:
        con.execute(f"DROP TABLE IF EXISTS {schema}.{_staging(table)}")
        con.execute(create_table_sql(table, schema, name=_staging(table)))


def _copy(con: Connection, table: str, batch: pa.RecordBatch) -> None:
    # Arrow writes NULL as an empty field and an empty string as "", as COPY's CSV reads them.
    sink = pa.BufferOutputStream()
    csv.write_csv(batch, sink, _CSV)
    columns = ", ".join(batch.schema.names)
    sql = f"COPY {table} ({columns}) FROM STDIN (FORMAT csv, FREEZE)"
    with con.cursor() as cursor, cursor.copy(sql) as copy:
        copy.write(memoryview(sink.getvalue()))


def _index_name(table: str, suffix: str, staging: bool) -> str:
    return f"{_staging(table) if staging else table}_{suffix}"


def _index_and_analyse(con: Connection, schema: str) -> None:
    for table, indexes in INDEXES.items():
        for suffix, template in indexes:
            name = _index_name(table, suffix, staging=True)
            con.execute("CREATE " + template.format(name=name, table=f"{schema}.{_staging(table)}"))
    for table in TABLES:
        # Fresh tables have no statistics; the first run's joins shouldn't plan blind.
        con.execute(f"ANALYZE {schema}.{_staging(table)}")


def _swap_in_staging(con: Connection, schema: str) -> None:
    for table in TABLES:
        con.execute(f"DROP TABLE IF EXISTS {schema}.{table}")
        con.execute(f"ALTER TABLE {schema}.{_staging(table)} RENAME TO {table}")
        for suffix, _ in INDEXES.get(table, []):
            con.execute(
                f"ALTER INDEX {schema}.{_index_name(table, suffix, staging=True)} "
                f"RENAME TO {_index_name(table, suffix, staging=False)}"
            )
