"""consent-filter: hold back rows without consent for the contract's purpose or suppressed.

The warehouse provides `consents(profile_id, purpose, granted)` and
`suppressions(identifier_type, identifier, reason)`; both must exist, so a missing
consent source can never silently mean "everyone consented".
"""

from __future__ import annotations

from switchyard.catalog.models import SyncPlan
from switchyard.errors import MissingSourceTableError
from switchyard.pipeline import prepared
from switchyard.pipeline.state import planning, run_table
from switchyard.pipeline.validate import (
    eligible_rows,
    held_by_reason,
    held_rows,
    record_outcomes,
    snapshot_rows,
)
from switchyard.runs import ConsentResult, RunRef
from switchyard.warehouse.base import Session

CONSENTS_TABLE = "consents"
SUPPRESSIONS_TABLE = "suppressions"


def has_source_table(session: Session, table: str) -> bool:
    """Whether the warehouse has the table outside Switchyard's own schema."""
    row = session.fetchone(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? "
        "AND table_schema NOT IN ('switchyard', 'information_schema', 'pg_catalog')",
        (table,),
    )
    return bool(row and row[0])


def _require_table(session: Session, table: str, why: str) -> None:
    if not has_source_table(session, table):
        raise MissingSourceTableError(
            f"the warehouse has no `{table}` table, which {why}; nothing was sent. "
            f"Create it (an empty `{table}` table states that there is nothing to apply)"
        )


def filter_consent(session: Session, run: RunRef, plan: SyncPlan) -> ConsentResult:
    purpose = plan.contract.consent_purpose
    _require_table(session, SUPPRESSIONS_TABLE, "every sync checks before sending")
    if purpose:
        _require_table(
            session,
            CONSENTS_TABLE,
            f"contract v{plan.contract.version} needs for purpose {purpose!r}",
        )
    held = run_table(run, "held")
    prep = prepared.prepared_for(session, run, plan).table
    consent_join = (
        f"""LEFT JOIN (SELECT DISTINCT profile_id FROM {CONSENTS_TABLE}
                       WHERE purpose = ? AND granted) AS con ON con.profile_id = p.profile_id"""
        if purpose
        else ""
    )
    no_consent = f"WHEN con.profile_id IS NULL THEN 'no_consent:{purpose}'" if purpose else ""
    # One pass over the rows: each kind of suppression is a small table, one reason per
    # identifier, joined by hash.
    by_kind = {
        kind: f"""LEFT JOIN (SELECT identifier, min(reason) AS reason FROM {SUPPRESSIONS_TABLE}
            WHERE identifier_type = '{kind}' GROUP BY identifier) AS sup_{kind}
            ON sup_{kind}.identifier = {ref}"""
        for kind, ref in (
            ("profile_id", "p.profile_id"),
            ("email", "p._email"),
            ("phone", "p._phone"),
        )
    }
    # least() skips NULLs on both engines: the first reason among the kinds that hit.
    suppressed = "least(" + ", ".join(f"sup_{kind}.reason" for kind in by_kind) + ")"
    with planning(session):
        session.execute(f"DELETE FROM {held} WHERE stage = 'excluded'")
        session.execute(
            f"""INSERT INTO {held} (stage, profile_id, _raw, key, reason, copies, extra)
            SELECT 'excluded', profile_id, _raw, _key, _excluded, 1, FALSE FROM (
                SELECT p.profile_id, p._raw, p._key, CASE
                    WHEN {suppressed} IS NOT NULL THEN 'suppressed:' || {suppressed}
                    {no_consent}
                  END AS _excluded
                FROM {eligible_rows(run, prep)} AS p
                {" ".join(by_kind.values())}
                {consent_join}) AS x
            WHERE _excluded IS NOT NULL""",
            (purpose,) if purpose else (),
        )
        record_outcomes(session, run, "excluded")
        excluded = held_by_reason(session, run, "excluded")
        eligible = snapshot_rows(session, run, prep) - held_rows(session, run)
    return ConsentResult(eligible=eligible, excluded=excluded)
