"""diff: compare the eligible rows with what the destination holds, inside the warehouse.

Each eligible row's payload hash (its JSON rendered in SQL, hashed with the contract
version, when the row was prepared) is compared with the delivered one, so a contract change
re-sends everything and unchanged rows cost nothing; the rows to send take the payload
rendered then from the prepared table.
The result, `chg_<run>`, numbers the rows to send into chunks (one deliver activity each)
and batches (one API call each); deliver and commit only ever refer to those numbers.

Rows that leave: in `mirror` mode they are removed downstream; in `upsert` mode they are
forgotten (dropped from state, left in the destination), except rows held back by
consent or suppression, which are always removed: consent loss must propagate.
"""

from __future__ import annotations

from switchyard.catalog.models import SyncMode
from switchyard.pipeline import prepared, quiet
from switchyard.pipeline.state import planning, run_table
from switchyard.pipeline.validate import eligible_rows, held_rows, snapshot_rows
from switchyard.runs import ChangePlan, PlanInput
from switchyard.warehouse.base import Session


def plan_changes(session: Session, request: PlanInput) -> ChangePlan:
    run, plan = request.run, request.plan
    contract = plan.contract
    held, table = run_table(run, "held"), run_table(run, "chg")
    prep = prepared.prepared_for(session, run, plan).table
    leaver_op = "remove" if contract.sync_mode is SyncMode.MIRROR else "forget"
    changed = "TRUE" if request.full_resync else "p.key IS NULL OR p.hash <> c.hash"
    chunk, batch = request.chunk_size, min(contract.batch_size, request.chunk_size)
    with planning(session):
        session.execute(f"DROP TABLE IF EXISTS {table}")
        session.execute(
            f"""CREATE TABLE {table} AS
            WITH cur AS (
                SELECT p._key AS key, p.hash, p.profile_id, p._raw
                FROM {eligible_rows(run, prep)} AS p),
            prev AS (SELECT key, hash FROM switchyard.delivered WHERE sync_id = ?),
            -- One join finds adds, changes and leavers; each side is read once.
            joined AS (
                SELECT c.key AS cur_key, p.key AS prev_key, c.hash, c.profile_id, c._raw
                FROM cur AS c FULL JOIN prev AS p ON p.key = c.key
                WHERE c.key IS NULL OR {changed}),
            excluded AS (SELECT DISTINCT key FROM {held} WHERE stage = 'excluded'),
            changes AS (
                SELECT coalesce(j.cur_key, j.prev_key) AS key,
                       CASE WHEN j.cur_key IS NOT NULL THEN 'upsert'
                            WHEN h.key IS NOT NULL THEN 'remove'
                            ELSE '{leaver_op}' END AS op,
                       CASE WHEN j.cur_key IS NULL THEN 'leave'
                            WHEN j.prev_key IS NULL THEN 'add'
                            ELSE 'change' END AS kind,
                       j.hash, j.profile_id, j._raw
                FROM joined AS j
                LEFT JOIN excluded AS h ON h.key = j.prev_key AND j.cur_key IS NULL),
            numbered AS (
                SELECT *, row_number() OVER (PARTITION BY op = 'forget' ORDER BY op DESC, key) - 1
                    AS n
                FROM changes)
            SELECT c.key, c.op, c.kind, c.hash,
                   CASE WHEN c.op = 'upsert' THEN e.fields END AS fields,
                   CASE WHEN c.op <> 'forget' THEN c.n END AS seq,
                   CASE WHEN c.op <> 'forget'
                        THEN CAST(floor(c.n / {chunk}) AS INTEGER) END AS chunk,
                   CASE WHEN c.op <> 'forget'
                        THEN CAST(floor((c.n % {chunk}) / {batch}) AS INTEGER) END AS batch
            FROM numbered AS c
            LEFT JOIN {prep} AS e ON e.profile_id = c.profile_id AND e._raw = c._raw
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
    eligible = snapshot_rows(session, run, prep) - held_rows(session, run)
    added, changed_n = int(counts.get("add", 0)), int(counts.get("change", 0))
    removed, forgotten = int(counts.get("remove", 0)), int(counts.get("forget", 0))
    to_send = added + changed_n + removed
    result = ChangePlan(
        added=added,
        changed=changed_n,
        removed=removed,
        forgotten=forgotten,
        unchanged=eligible - added - changed_n,
        to_send=to_send,
        chunks=-(-to_send // chunk),
    )
    # Before anything is sent: a plan that sends something changes the delivered state, so
    # the quiet plan kept from before stops applying.
    if to_send == 0 and request.fingerprint and request.counts is not None:
        quiet.remember(session, run, request.fingerprint, request.counts)
    else:
        quiet.forget(session, run.sync)
    return result
