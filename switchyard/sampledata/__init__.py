"""Deterministic sample CDP data ("seed") and profile mutation, for demos, tests and load.

Three tables, the shape a CDP or warehouse model hands to activation:
- profiles: one unified customer per row (identifiers, traits, commerce, timeline), with the
  mess real data has: NULL / invalid / padded / upper-case / shared emails, phones in every
  format, over-long and non-Latin names;
- consents: at most one row per (profile_id, purpose); a missing row means "no consent";
- suppressions: emails (normalised), phones (E.164) and profile ids that must not be sent.

`generate` yields Arrow batches any writer can stream; `seed_duckdb` and `seed_postgres`
(COPY) write them; `mutate_duckdb` / `mutate_postgres` change some profiles, identically on
both engines, so a sync has work to do. `seed_warehouse` / `mutate_warehouse` pick the
engine from the warehouse URL. All timestamps lie before REFERENCE_AT; nothing reads the
wall clock.
"""

from switchyard.sampledata.dispatch import mutate_warehouse, seed_warehouse
from switchyard.sampledata.duckdb_seed import SeedSummary, seed_duckdb
from switchyard.sampledata.generate import (
    BLOCK_SIZE,
    SampleBlock,
    build_block,
    generate,
    iter_blocks,
)
from switchyard.sampledata.mutate import (
    MutationSummary,
    SampleDataMissingError,
    mutate_duckdb,
    mutate_postgres,
)
from switchyard.sampledata.postgres_seed import seed_postgres
from switchyard.sampledata.profiles import REFERENCE_AT
from switchyard.sampledata.schema import TABLES, create_table_sql

__all__ = [
    "BLOCK_SIZE",
    "REFERENCE_AT",
    "TABLES",
    "MutationSummary",
    "SampleBlock",
    "SampleDataMissingError",
    "SeedSummary",
    "build_block",
    "create_table_sql",
    "generate",
    "iter_blocks",
    "mutate_duckdb",
    "mutate_postgres",
    "mutate_warehouse",
    "seed_duckdb",
    "seed_postgres",
    "seed_warehouse",
]
