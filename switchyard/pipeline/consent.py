"""consent-filter: hold back rows without consent for the contract's purpose or suppressed.

The warehouse provides `consents(profile_id, purpose, granted)` and
`suppressions(identifier_type, identifier, reason)`; both must exist, so a missing
consent source can never silently mean "everyone consented".
"""

from __future__ import annotations

from switchyard.catalog.models import SyncPlan
from switchyard.errors import MissingSourceTableError
from switchyard.pipeline.state import run_table
from switchyard.pipeline.validate import record_outcomes
from switchyard.runs import ConsentResult, RunRef
from switchyard.warehouse.base import Session

CONSENTS_TABLE = "consents"
SUPPRESSIONS_TABLE = "suppressions"


def _require_table(session: Session, table: str, why: str) -> None:
    row = session.fetchone(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? "
        "AND table_schema NOT IN ('switchyard', 'information_schema', 'pg_catalog')",
        (table,),
    )
    if not row or not row[0]:
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
    val, table = run_table(run, "val"), run_table(run, "elig")
    consent_join = (
        f"""LEFT JOIN (SELECT DISTINCT profile_id FROM {CONSENTS_TABLE}
                       WHERE purpose = ? AND granted) AS con ON con.profile_id = v.profile_id"""
        if purpose
        else ""
    )
    no_consent = f"WHEN con.profile_id IS NULL THEN 'no_consent:{purpose}'" if purpose else ""
    session.execute(f"DROP TABLE IF EXISTS {table}")
    session.execute(
        f"""CREATE TABLE {table} AS
        WITH v AS (SELECT * FROM {val} WHERE _invalid IS NULL),
        hits AS (
            SELECT v.profile_id, s.reason FROM v JOIN {SUPPRESSIONS_TABLE} AS s
              ON s.identifier_type = 'profile_id' AND s.identifier = v.profile_id
            UNION ALL
            SELECT v.profile_id, s.reason FROM v JOIN {SUPPRESSIONS_TABLE} AS s
              ON s.identifier_type = 'email' AND s.identifier = v._email
            UNION ALL
            SELECT v.profile_id, s.reason FROM v JOIN {SUPPRESSIONS_TABLE} AS s
              ON s.identifier_type = 'phone' AND s.identifier = v._phone),
        sup AS (SELECT profile_id, min(reason) AS reason FROM hits GROUP BY profile_id)
        SELECT v.*, CASE
            WHEN sup.reason IS NOT NULL THEN 'suppressed:' || sup.reason
            {no_consent}
          END AS _excluded
        FROM v
        LEFT JOIN sup ON sup.profile_id = v.profile_id
        {consent_join}""",
        (purpose,) if purpose else (),
    )
    record_outcomes(session, run, "excluded", table, "_excluded")
    rows = session.fetchall(f"SELECT _excluded, count(*) FROM {table} GROUP BY 1")
    excluded = {str(r): int(n) for r, n in rows if r is not None}
    eligible = sum(int(n) for r, n in rows if r is None)
    return ConsentResult(eligible=eligible, excluded=excluded)
