"""diff: compare the eligible rows with what the destination holds, inside the warehouse.

Each eligible row's payload is rendered as JSON in SQL and hashed with the contract
version, so a contract change re-sends everything and unchanged rows cost nothing.
The result, `chg_<run>`, numbers the rows to send into chunks (one deliver activity each)
and batches (one API call each); deliver and commit only ever refer to those numbers.

Rows that leave: in `mirror` mode they are removed downstream; in `upsert` mode they are
forgotten (dropped from state, left in the destination), except rows held back by
consent or suppression, which are always removed: consent loss must propagate.
"""

from __future__ import annotations

from switchyard.catalog.models import SyncMode, SyncPlan
from switchyard.pipeline.state import run_table
from switchyard.pipeline.validate import sent_columns
from switchyard.runs import ChangePlan, PlanInput
from switchyard.warehouse.base import Session


def _payload_sql(session: Session, plan: SyncPlan) -> str:
    columns = sent_columns(plan)
    pairs = [(c.mapping.name, f"e.{c.name}") for c in columns if c.mapping.send_nulls]
    optional = [(c.mapping.name, f"e.{c.name}") for c in columns if not c.mapping.send_nulls]
    return session.dialect.json_object(pairs, optional)


def plan_changes(session: Session, request: PlanInput) -> ChangePlan:
    run, plan = request.run, request.plan
    contract = plan.contract
    elig, table = run_table(run, "elig"), run_table(run, "chg")
    leaver_op = "remove" if contract.sync_mode is SyncMode.MIRROR else "forget"
    changed = "TRUE" if request.full_resync else "p.key IS NULL OR p.hash <> c.hash"
    chunk, batch = request.chunk_size, min(contract.batch_size, request.chunk_size)
    session.execute(f"DROP TABLE IF EXISTS {table}")
    session.execute(
        f"""CREATE TABLE {table} AS
        WITH rendered AS (
            SELECT e._key AS key, {_payload_sql(session, plan)} AS fields
            FROM {elig} AS e WHERE e._excluded IS NULL),
        cur AS (SELECT key, fields, md5('v{contract.version}:' || fields) AS hash FROM rendered),
        prev AS (SELECT key, hash FROM switchyard.delivered WHERE sync_id = ?),
        held AS (SELECT DISTINCT _key AS key FROM {elig} WHERE _excluded IS NOT NULL),
        changes AS (
            SELECT c.key, 'upsert' AS op,
                   CASE WHEN p.key IS NULL THEN 'add' ELSE 'change' END AS kind,
                   c.hash, c.fields
            FROM cur AS c LEFT JOIN prev AS p ON p.key = c.key
            WHERE {changed}
            UNION ALL
            SELECT p.key,
                   CASE WHEN h.key IS NOT NULL THEN 'remove' ELSE '{leaver_op}' END AS op,
                   'leave' AS kind, CAST(NULL AS VARCHAR) AS hash, CAST(NULL AS VARCHAR) AS fields
            FROM prev AS p
            LEFT JOIN cur AS c ON c.key = p.key
            LEFT JOIN held AS h ON h.key = p.key
            WHERE c.key IS NULL),
        numbered AS (
            SELECT *, row_number() OVER (PARTITION BY op = 'forget' ORDER BY op DESC, key) - 1
                AS n
            FROM changes)
        SELECT key, op, kind, hash, fields,
               CASE WHEN op <> 'forget' THEN n END AS seq,
               CASE WHEN op <> 'forget' THEN CAST(floor(n / {chunk}) AS INTEGER) END AS chunk,
               CASE WHEN op <> 'forget'
                    THEN CAST(floor((n % {chunk}) / {batch}) AS INTEGER) END AS batch
        FROM numbered
        ORDER BY seq""",
        (run.sync,),
    )
    if session.dialect.needs_indexes:
        # Each deliver activity reads one chunk, in order.
        session.execute(f"CREATE INDEX ON {table} (chunk, seq)")
    counts = dict(
        session.fetchall(
            f"""SELECT CASE WHEN op = 'upsert' THEN kind ELSE op END, count(*)
            FROM {table} GROUP BY 1"""
        )
    )
    eligible_row = session.fetchone(f"SELECT count(*) FROM {elig} WHERE _excluded IS NULL")
    eligible = int(eligible_row[0]) if eligible_row else 0
    added, changed_n = int(counts.get("add", 0)), int(counts.get("change", 0))
    removed, forgotten = int(counts.get("remove", 0)), int(counts.get("forget", 0))
    to_send = added + changed_n + removed
    return ChangePlan(
        added=added,
        changed=changed_n,
        removed=removed,
        forgotten=forgotten,
        unchanged=eligible - added - changed_n,
        to_send=to_send,
        chunks=-(-to_send // chunk),
    )
