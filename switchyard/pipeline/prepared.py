"""The sync's prepared rows: each audience row normalised, checked and hashed once, then
reused for as long as its raw values stay the same; after fetch, the run's snapshot.

Normalising (regexes over emails and phones), checking and rendering payloads are most of
planning's cost, and they depend only on a row's raw values and the contract. So each sync
keeps `prep_<sync>_<fingerprint>`: for every distinct row of its latest snapshot, keyed by
profile_id and a hash of the row's raw values (`_raw`), the normalised sent fields
(`f<i>`), which optional fields failed their check and were dropped (`d<i>`), the
normalised suppression identifiers, the row's own invalid reason and its payload hash. A run
prepares only the rows whose raw values it has not seen (all of them the first time, about
as many as changed afterwards) and forgets the rows that left; the later steps read it
directly (one run per sync at a time: the workflow id is the sync's).

The fingerprint hashes the SQL that fills the table and the snapshot's column types, so a
change of contract (fields, types, version), of normalisation code or of the audience's
columns starts from an empty table. What depends on other rows (duplicate keys) or other
tables (consent, suppressions, the delivered state) is decided by every run, never kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from switchyard.catalog.models import SyncPlan, TraitType

# A module import: diff reads the prepared rows too, and the payload is rendered its way.
from switchyard.pipeline import diff
from switchyard.pipeline.expressions import normalised, quote
from switchyard.pipeline.fields import invalid_reason, kept_value, sent_columns
from switchyard.pipeline.state import SCHEMA, run_table
from switchyard.runs import RunRef
from switchyard.warehouse.base import Session

# Kept in every snapshot when the audience returns them, so suppression lists keyed by
# email or phone apply even to contracts that don't send those fields.
SUPPRESSION_COLUMNS = ("email", "phone")
SOURCE = "{source}"


@dataclass(frozen=True)
class Prepared:
    """The prepared-rows table of one sync, for one contract and snapshot shape."""

    table: str
    select: str  # the prepared rows of the snapshot rows in SOURCE


def raw_hash(session: Session, columns: list[str]) -> str:
    return session.dialect.row_hash([f"q.{quote(c)}" for c in columns])


def prepared_for(session: Session, run: RunRef, plan: SyncPlan) -> Prepared:
    """The sync's prepared table for the run's snapshot."""
    types = snapshot_types(session, run)
    select = _prepare_sql(session, plan, {name for name, _ in types})
    fingerprint = hashlib.sha1(
        "\0".join(
            [select, raw_hash(session, [n for n, _ in types]), *(f"{n}:{t}" for n, t in types)]
        ).encode()
    ).hexdigest()[:12]
    return Prepared(f"{SCHEMA}.{_prefix(run)}{fingerprint}", select)


def snapshot_types(session: Session, run: RunRef) -> list[tuple[str, str]]:
    """The raw columns of a run's snapshot and their types, by name (sources never start
    with `_`, the snapshot's own columns always do)."""
    rows = session.fetchall(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        (SCHEMA, run_table(run, "snap").split(".", 1)[1]),
    )
    return sorted((str(n), str(t)) for n, t in rows if not str(n).startswith("_"))


def ensure(session: Session, run: RunRef, prepared: Prepared) -> bool:
    """Create the table if this fingerprint is new (True); drop the sync's older ones."""
    prefix = _prefix(run)
    rows = session.fetchall(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = ? AND table_name LIKE ?",
        (SCHEMA, prefix + "%"),
    )
    current = prepared.table.split(".", 1)[1]
    for (name,) in rows:
        if name != current:
            session.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{name}")
    if current not in {name for (name,) in rows}:
        # Typed by the snapshot's shape: `snap_<run>` has its raw columns and no rows.
        probe = run_table(run, "snap")
        columns = [name for name, _ in snapshot_types(session, run)]
        empty = f"(SELECT q.*, {raw_hash(session, columns)} AS _raw FROM {probe} AS q LIMIT 0)"
        empty = prepared.select.replace(SOURCE, empty)
        session.execute(f"CREATE TABLE {prepared.table} AS {empty}")
        return True
    return False


def refresh(
    session: Session, prepared: Prepared, audience: str, twins: str, *, created: bool
) -> None:
    """Make the table hold exactly the rows of `audience` (raw values and `_raw`): forget
    the rows that left, prepare the rows not seen before. Identical rows are prepared once;
    `twins` counts their extra copies."""
    table = prepared.table
    session.execute(
        f"""DELETE FROM {table} AS p WHERE NOT EXISTS (
            SELECT 1 FROM {audience} AS a WHERE a.profile_id = p.profile_id AND a._raw = p._raw)"""
    )
    new = f"""(SELECT * FROM {audience} AS a WHERE NOT EXISTS (
        SELECT 1 FROM {table} AS p WHERE p.profile_id = a.profile_id AND p._raw = a._raw))"""
    if _count(session, f"SELECT count(*) FROM {twins}"):
        new = f"(SELECT DISTINCT * FROM {new} AS a)"
    session.execute(f"INSERT INTO {table} {prepared.select.replace(SOURCE, new)}")
    if created and session.dialect.name == "postgres":
        # Statistics for the first fill; autovacuum keeps them current as rows change.
        session.execute(f"ANALYZE {table}")


def _count(session: Session, sql: str) -> int:
    row = session.fetchone(sql)
    return int(row[0]) if row and row[0] is not None else 0


def _prefix(run: RunRef) -> str:
    return "prep_" + hashlib.sha1(run.sync.encode()).hexdigest()[:12] + "_"


def _prepare_sql(session: Session, plan: SyncPlan, snap_columns: set[str]) -> str:
    dialect, contract = session.dialect, plan.contract
    columns = sent_columns(plan)
    region = contract.default_phone_region
    normalise = [
        "profile_id",
        "_raw",
        f"{normalised(dialect, contract.identifier.source, contract.identifier.type, region)}"
        " AS _key",
        *(
            f"{normalised(dialect, c.mapping.source, c.mapping.type, region)} AS {c.name}"
            for c in columns
        ),
        *(
            f"{normalised(dialect, name, TraitType(name), region)} AS _{name}"
            if name in snap_columns
            else f"CAST(NULL AS VARCHAR) AS _{name}"
            for name in SUPPRESSION_COLUMNS
        ),
    ]
    checked = [
        "n.profile_id",
        "n._raw",
        "n._key",
        *(f"{kept_value(session, c)} AS {c.name}" for c in columns),
        *(f"n.{c.name} AS r{c.index}" for c in columns if not c.mapping.required),
        *(f"n._{name}" for name in SUPPRESSION_COLUMNS),
        f"{invalid_reason(session, plan, columns)} AS _reason",
    ]
    kept = [
        "e.profile_id",
        "e._raw",
        "e._key",
        *(f"e.{c.name}" for c in columns),
        *(
            f"(e.r{c.index} IS NOT NULL AND e.{c.name} IS NULL) AS d{c.index}"
            for c in columns
            if not c.mapping.required
        ),
        *(f"e._{name}" for name in SUPPRESSION_COLUMNS),
        "e._reason",
    ]
    # Postgres would pull the CTEs up into the outer query and evaluate a normalisation or
    # check (regexes) again at every reference to it; OFFSET 0 keeps each a subquery whose
    # columns are computed once per row. DuckDB computes each projection once anyway.
    fence = " OFFSET 0" if dialect.name == "postgres" else ""
    return f"""WITH n AS (SELECT {", ".join(normalise)} FROM {SOURCE} AS q{fence}),
        e AS (SELECT {", ".join(checked)} FROM n{fence})
        SELECT {", ".join(kept)}, CASE WHEN e._reason IS NULL
          THEN md5('v{contract.version}:' || {diff._payload_sql(session, plan)}) END AS hash
        FROM e"""
