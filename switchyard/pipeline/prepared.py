"""The sync's prepared rows: each audience row normalised, checked and hashed once, then
reused for as long as its raw values stay the same; after fetch, the run's snapshot.

Normalising (regexes over emails and phones), checking and rendering payloads are most of
planning's cost, and they depend only on a row's raw values and the contract. So each sync
keeps `prep_<sync>_<fingerprint>`: for every distinct row of its latest snapshot, keyed by
profile_id and a hash of the row's raw values (`_raw`): which optional fields failed their
check and were dropped (`d<i>`), the normalised suppression identifiers, the row's own
invalid reason and, for valid rows, the payload as sent (`fields`, rendered once: diff
copies it for the rows to send) and its hash. A run
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
from typing import NamedTuple

from switchyard.catalog.models import SyncPlan, TraitType
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


def ensure(session: Session, run: RunRef, prepared: Prepared) -> None:
    """Create the table if this fingerprint is new; drop the sync's older ones."""
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


class Refreshed(NamedTuple):
    rows: int  # the audience's rows
    changed: bool  # whether any prepared row was added or forgotten


def refresh(session: Session, prepared: Prepared, audience: str, twins: str) -> Refreshed:
    """Make the table hold exactly the audience's rows: forget the `_gone` rows, prepare
    the `_new` ones. Identical rows are prepared once; `twins` (created here) counts their
    extra copies."""
    table = prepared.table
    row = session.fetchone(
        f"""SELECT coalesce(sum(CASE WHEN _gone THEN 0 ELSE 1 END), 0),
                  coalesce(sum(CASE WHEN _new THEN 1 ELSE 0 END), 0),
                  coalesce(sum(CASE WHEN _gone THEN 1 ELSE 0 END), 0),
                  coalesce(sum(CASE WHEN _gone AND profile_id IS NULL THEN 1 ELSE 0 END), 0),
                  (SELECT count(*) FROM {table})
            FROM {audience}"""
    )
    total, new, gone, gone_without_id, kept = (int(v) for v in row) if row else (0,) * 5
    # Every prepared row that stays matched at least one audience row; more matches than
    # such rows are extra copies of identical rows, and only then are the seen rows grouped.
    seen_copies = total - new > kept - gone
    session.execute(f"DROP TABLE IF EXISTS {twins}")
    session.execute(
        f"""CREATE TABLE {twins} AS SELECT profile_id, _raw, _new, count(*) - 1 AS extra
        FROM {audience} WHERE {"NOT _gone" if seen_copies else "_new"}
        GROUP BY profile_id, _raw, _new HAVING count(*) > 1"""
    )
    if gone:
        session.execute(
            f"""DELETE FROM {table} AS p USING {audience} AS a
            WHERE a._gone AND a.profile_id = p.profile_id AND a._raw = p._raw"""
        )
    if gone_without_id:
        # Rows without a profile_id match nothing, so they are prepared afresh every run.
        session.execute(f"DELETE FROM {table} WHERE profile_id IS NULL")
    if new:
        rows = f"(SELECT * FROM {audience} WHERE _new)"
        if _count(session, f"SELECT count(*) FROM {twins} WHERE _new"):
            rows = f"(SELECT DISTINCT * FROM {rows} AS a)"
        session.execute(f"INSERT INTO {table} {prepared.select.replace(SOURCE, rows)}")
        if not kept and session.dialect.name == "postgres":
            # Statistics for the first fill; autovacuum keeps them current as rows change.
            session.execute(f"ANALYZE {table}")
    return Refreshed(total, changed=bool(new or gone))


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
        *(
            f"(e.r{c.index} IS NOT NULL AND e.{c.name} IS NULL) AS d{c.index}"
            for c in columns
            if not c.mapping.required
        ),
        *(f"e._{name}" for name in SUPPRESSION_COLUMNS),
        "e._reason",
        f"CASE WHEN e._reason IS NULL THEN {payload_sql(session, plan)} END AS fields",
    ]
    # Postgres would pull the CTEs up into the outer query and evaluate a normalisation or
    # check (regexes) again at every reference to it; OFFSET 0 keeps each a subquery whose
    # columns are computed once per row. DuckDB computes each projection once anyway.
    fence = " OFFSET 0" if dialect.name == "postgres" else ""
    return f"""WITH n AS (SELECT {", ".join(normalise)} FROM {SOURCE} AS q{fence}),
        e AS (SELECT {", ".join(checked)} FROM n{fence}),
        k AS (SELECT {", ".join(kept)} FROM e{fence})
        SELECT k.*, md5('v{contract.version}:' || k.fields) AS hash FROM k"""


def payload_sql(session: Session, plan: SyncPlan) -> str:
    """The JSON object sent for a row of checked values `e`."""
    columns = sent_columns(plan)
    pairs = [(c.mapping.name, f"e.{c.name}") for c in columns if c.mapping.send_nulls]
    optional = [(c.mapping.name, f"e.{c.name}") for c in columns if not c.mapping.send_nulls]
    return session.dialect.json_object(pairs, optional)
