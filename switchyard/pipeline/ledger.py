"""report: write the run ledger row and tidy the run's working tables."""

from __future__ import annotations

from datetime import UTC, datetime

from switchyard.pipeline.state import drop_run_tables, ensure_schema
from switchyard.runs import ReportInput, RunReport
from switchyard.warehouse.base import Session

# val and elig: the tables of runs planned before held rows replaced them.
WORKING_TABLES = ("snap", "twins", "held", "chg", "val", "elig")
# Per-row explanations and per-batch checkpoints (which worker sent what) are kept for this
# many recent runs of each sync.
OUTCOME_RUNS_KEPT = 20


def report_run(session: Session, request: ReportInput, finished_at: datetime) -> RunReport:
    plan, run = request.plan, request.run
    report = RunReport(
        run_id=run.run_id,
        sync=run.sync,
        audience=plan.audience.name,
        audience_version=plan.audience.version,
        destination=plan.destination.name,
        contract_version=plan.contract.version,
        status=request.status,
        dry_run=request.dry_run,
        full_resync=request.full_resync,
        started_at=request.started_at,
        finished_at=finished_at,
        counts=request.counts,
        error=request.error,
    )
    ensure_schema(session)
    session.execute(
        """INSERT INTO switchyard.runs (run_id, sync_id, status, started_at, finished_at,
            audience, audience_version, destination, contract_version, dry_run, full_resync,
            counts, error)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (run_id) DO UPDATE SET status = excluded.status,
            finished_at = excluded.finished_at, counts = excluded.counts, error = excluded.error""",
        (
            report.run_id,
            report.sync,
            report.status,
            _naive_utc(report.started_at),
            _naive_utc(report.finished_at),
            report.audience,
            report.audience_version,
            report.destination,
            report.contract_version,
            report.dry_run,
            report.full_resync,
            report.counts.model_dump_json(),
            report.error,
        ),
    )
    drop_run_tables(session, run, WORKING_TABLES)
    _prune_outcomes(session, run.sync)
    return report


def _prune_outcomes(session: Session, sync: str) -> None:
    recent = """SELECT run_id FROM switchyard.runs WHERE sync_id = ?
        ORDER BY started_at DESC LIMIT ?"""
    session.execute(
        f"DELETE FROM switchyard.row_outcomes WHERE sync_id = ? AND run_id NOT IN ({recent})",
        (sync, sync, OUTCOME_RUNS_KEPT),
    )
    # Checkpoints carry no sync id: those of this sync's finished runs that left the window.
    session.execute(
        f"""DELETE FROM switchyard.acked_batches WHERE run_id IN (
            SELECT run_id FROM switchyard.runs WHERE sync_id = ? AND finished_at IS NOT NULL
            AND run_id NOT IN ({recent}))""",
        (sync, sync, OUTCOME_RUNS_KEPT),
    )


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
