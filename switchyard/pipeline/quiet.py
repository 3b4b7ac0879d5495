"""Quiet runs: when nothing a plan depends on changed since the sync's last plan, and the
destination holds what that plan said (it sent nothing, or everything it sent got
through), this run would send nothing either, so validate, consent-filter and diff are
skipped and their counts reused.

Most scheduled runs find nothing to send, and each of those steps is a pass over every
row, so a quiet run costs the fetch and little else. A plan depends on:

- the prepared rows: fetch forgets the last plan whenever it prepares or forgets a row, in
  the same transaction, so a run that failed after changing them leaves nothing behind;
- the extra copies of identical rows, the suppressions, the consents for the contract's
  purpose and the plan itself (contract, mapping, destination): hashed into the run's
  fingerprint, compared with the one kept;
- the delivered state and the rows the destination rejected: only commit changes them,
  and only for a run whose plan sent something; every such plan forgets the kept one
  before sending. A kept plan left no rejected row waiting (those are planned again
  until they get through).

So the kept plan is valid exactly while the fingerprint matches. A plan that sends nothing
is kept by diff; one that sends is kept by commit once the run delivered all of it with
nothing rejected, since the delivered state then matches it. A full resync never reuses
it. A quiet run copies the last plan's per-row outcomes (invalid, excluded) under its own
id, so every run still explains each row it held back.
"""

from __future__ import annotations

import hashlib

from pydantic import ValidationError

from switchyard.catalog.models import SyncPlan
from switchyard.pipeline.consent import CONSENTS_TABLE, SUPPRESSIONS_TABLE, has_source_table
from switchyard.pipeline.state import run_table
from switchyard.runs import Counts, QuietPlan, RunRef
from switchyard.warehouse.base import Session


def fingerprint(session: Session, run: RunRef, plan: SyncPlan, prepared_table: str) -> str:
    """A hash of everything besides the prepared rows that the run's plan depends on."""
    dialect = session.dialect
    parts = [prepared_table, plan.model_dump_json()]
    digest = "SELECT count(*), coalesce(sum({hash}), 0) FROM {table}"
    copies = dialect.row_hash(["profile_id", "_raw", "extra"])
    parts.append(_row(session, digest.format(hash=copies, table=run_table(run, "twins"))))
    if has_source_table(session, SUPPRESSIONS_TABLE):
        hashed = dialect.row_hash(["identifier_type", "identifier", "reason"])
        parts.append(_row(session, digest.format(hash=hashed, table=SUPPRESSIONS_TABLE)))
    purpose = plan.contract.consent_purpose
    if purpose and has_source_table(session, CONSENTS_TABLE):
        hashed = dialect.row_hash(["profile_id", "granted"])
        where = f"(SELECT * FROM {CONSENTS_TABLE} WHERE purpose = ?) AS c"
        parts.append(_row(session, digest.format(hash=hashed, table=where), (purpose,)))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def forget(session: Session, sync: str) -> None:
    session.execute("DELETE FROM switchyard.quiet_plans WHERE sync_id = ?", (sync,))


def recall(session: Session, run: RunRef, fingerprint: str) -> QuietPlan | None:
    """The sync's kept plan if its fingerprint matches this run's; its per-row outcomes are
    copied to this run. Idempotent, so a retried fetch is safe."""
    row = session.fetchone(
        "SELECT fingerprint, outcomes_run, counts FROM switchyard.quiet_plans WHERE sync_id = ?",
        (run.sync,),
    )
    if row is None or row[0] != fingerprint:
        return None
    try:
        found = QuietPlan.model_validate_json(str(row[2]))
    except ValidationError:
        return None  # kept by a version that stored other counts: plan afresh
    outcomes_run = str(row[1])
    if outcomes_run != run.run_id:
        with session.transaction():
            session.execute(
                """DELETE FROM switchyard.row_outcomes
                WHERE run_id = ? AND stage IN ('invalid', 'excluded')""",
                (run.run_id,),
            )
            session.execute(
                """INSERT INTO switchyard.row_outcomes
                SELECT ?, sync_id, stage, key, profile_id, reason FROM switchyard.row_outcomes
                WHERE run_id = ? AND stage IN ('invalid', 'excluded')""",
                (run.run_id, outcomes_run),
            )
            # Older runs' outcomes are pruned; the newest copy is the one to copy next.
            session.execute(
                "UPDATE switchyard.quiet_plans SET outcomes_run = ? WHERE sync_id = ?",
                (run.run_id, run.sync),
            )
    return found


def settle(session: Session, run: RunRef, fingerprint: str, counts: Counts) -> None:
    """After a run's commit: if the run delivered its whole plan and the destination
    rejected nothing, the delivered state now matches that plan, so the next run with the
    same inputs has nothing to send; keep the plan for it."""
    if not fingerprint or counts.unchanged_since is not None:
        return  # a run without a fingerprint, or one that reused the kept plan
    if counts.rejected or counts.sent < counts.to_send:
        return
    remember(session, run, fingerprint, counts)


def remember(session: Session, run: RunRef, fingerprint: str, counts: Counts) -> None:
    """Keep a plan that leaves nothing to send, for the next runs while nothing changes."""
    found = QuietPlan(
        planned_by=run.run_id,
        invalid=counts.invalid,
        fields_dropped=counts.fields_dropped,
        excluded=counts.excluded,
        eligible=counts.eligible,
    )
    with session.transaction():
        forget(session, run.sync)
        session.execute(
            """INSERT INTO switchyard.quiet_plans
            (sync_id, fingerprint, planned_by, outcomes_run, counts) VALUES (?, ?, ?, ?, ?)""",
            (run.sync, fingerprint, run.run_id, run.run_id, found.model_dump_json()),
        )


def _row(session: Session, sql: str, params: tuple[str, ...] = ()) -> str:
    return repr(session.fetchone(sql, params))
