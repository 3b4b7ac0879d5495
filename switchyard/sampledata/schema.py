"""The three sample tables, as Arrow schemas; SQL DDL is derived so the two can't drift."""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us")

PROFILES = pa.schema(
    [
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("email", pa.string()),
        pa.field("phone", pa.string()),
        pa.field("crm_id", pa.string()),
        pa.field("first_name", pa.string()),
        pa.field("last_name", pa.string()),
        pa.field("country", pa.string()),
        pa.field("city", pa.string()),
        pa.field("plan", pa.string()),
        pa.field("lifetime_value", pa.float64()),
        pa.field("orders_count", pa.int32()),
        pa.field("signup_at", TIMESTAMP),
        pa.field("last_order_at", TIMESTAMP),
        pa.field("last_seen_at", TIMESTAMP),
        pa.field("churn_risk", pa.float64()),
        pa.field("is_employee", pa.bool_()),
        pa.field("updated_at", TIMESTAMP),
    ]
)

CONSENTS = pa.schema(
    [
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field("purpose", pa.string(), nullable=False),
        pa.field("granted", pa.bool_(), nullable=False),
        pa.field("updated_at", TIMESTAMP, nullable=False),
        pa.field("source", pa.string()),
    ]
)

SUPPRESSIONS = pa.schema(
    [
        pa.field("identifier_type", pa.string(), nullable=False),
        pa.field("identifier", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("created_at", TIMESTAMP, nullable=False),
    ]
)

# In load order; every writer creates and fills them in this order.
TABLES: dict[str, pa.Schema] = {
    "profiles": PROFILES,
    "consents": CONSENTS,
    "suppressions": SUPPRESSIONS,
}

# These SQL spellings are shared by DuckDB and Postgres.
_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.float64(): "DOUBLE PRECISION",
    pa.int32(): "INTEGER",
    pa.bool_(): "BOOLEAN",
    TIMESTAMP: "TIMESTAMP",
}


def create_table_sql(table: str, schema_name: str = "main", name: str | None = None) -> str:
    """CREATE TABLE for one of TABLES, optionally under another name (e.g. a staging table)."""
    columns = ",\n  ".join(
        f"{f.name} {_SQL_TYPES[f.type]}{'' if f.nullable else ' NOT NULL'}" for f in TABLES[table]
    )
    return f"CREATE TABLE {schema_name}.{name or table} (\n  {columns}\n)"
