"""Quiet runs reuse the last plan only while nothing it depended on changed (each test on
DuckDB and on Postgres). Every change of input must plan afresh and send what a run
without the shortcut would send."""

from __future__ import annotations

from dataclasses import dataclass

from switchyard.catalog.models import Gates, SyncPlan
from switchyard.delivery.engine import deliver_chunk
from switchyard.pipeline import commit, consent, diff, quiet, snapshot, validate
from switchyard.pipeline.state import ensure_schema
from switchyard.runs import ChangePlan, Counts, PlanInput, QuietPlan, RunRef
from switchyard.warehouse.base import Warehouse
from tests.support.catalogs import webhook_plan
from tests.support.fakes import FakeDestination
from tests.support.warehouse import MakeWarehouse, grant, profile, suppress

# prf_0004's email is invalid, so it is quarantined; `settled` revokes prf_0003's consent.
PROFILES = [profile(i) for i in range(4)] + [profile(4, email="not-an-email")]


@dataclass
class Planned:
    counts: Counts
    changes: ChangePlan | None  # None when the run reused the last plan
    quiet: QuietPlan | None
    fingerprint: str = ""


def plan_like_the_workflow(
    warehouse: Warehouse, plan: SyncPlan, run_id: str, *, full_resync: bool = False
) -> Planned:
    """fetch, then either reuse the last plan or validate, consent-filter and diff."""
    run, counts = RunRef(run_id=run_id, sync=plan.sync.name), Counts()
    with warehouse.session() as s:
        fetched = snapshot.snapshot_audience(s, run, plan, full_resync=full_resync)
        counts.snapshot = fetched.rows
        if fetched.quiet is not None:
            return Planned(counts, None, fetched.quiet, fetched.fingerprint)
        checked = validate.validate_snapshot(s, run, plan)
        counts.invalid, counts.fields_dropped = checked.invalid, checked.fields_dropped
        allowed = consent.filter_consent(s, run, plan)
        counts.excluded, counts.eligible = allowed.excluded, allowed.eligible
        request = PlanInput(
            run=run,
            plan=plan,
            full_resync=full_resync,
            chunk_size=100,
            fingerprint=fetched.fingerprint,
            counts=counts,
        )
        changes = diff.plan_changes(s, request)
    return Planned(counts, changes, None, fetched.fingerprint)


async def run_like_the_workflow(
    warehouse: Warehouse,
    plan: SyncPlan,
    dest: FakeDestination,
    run_id: str,
    *,
    full_resync: bool = False,
) -> Planned:
    planned = plan_like_the_workflow(warehouse, plan, run_id, full_resync=full_resync)
    run, counts = RunRef(run_id=run_id, sync=plan.sync.name), planned.counts
    if planned.changes is not None:
        counts.to_send = planned.changes.to_send
        for chunk in range(planned.changes.chunks):
            result = await deliver_chunk(warehouse, dest, run, chunk)
            counts.sent += result.sent
            for reason, n in result.rejected.items():
                counts.rejected[reason] = counts.rejected.get(reason, 0) + n
    else:
        counts.unchanged_since = planned.quiet.planned_by if planned.quiet else None
    with warehouse.session() as s:
        commit.commit_delivered(s, run)
        quiet.settle(s, run, planned.fingerprint, counts)
    return planned


def outcomes(warehouse: Warehouse, run_id: str) -> list[tuple[str, str, str]]:
    with warehouse.session() as s:
        rows = s.fetchall(
            "SELECT stage, profile_id, reason FROM switchyard.row_outcomes "
            "WHERE run_id = ? ORDER BY profile_id",
            (run_id,),
        )
    return [(str(a), str(b), str(c)) for a, b, c in rows]


async def settled(
    make_warehouse: MakeWarehouse, plan: SyncPlan | None = None
) -> tuple[Warehouse, SyncPlan, FakeDestination]:
    """A sync whose first run planned and delivered everything."""
    warehouse = make_warehouse(PROFILES)
    grant(warehouse, "prf_0003", False)
    plan, dest = plan or webhook_plan(), FakeDestination()
    first = await run_like_the_workflow(warehouse, plan, dest, "run-1")
    assert first.changes is not None and first.changes.to_send == 3
    return warehouse, plan, dest


async def test_a_run_with_no_changed_input_reuses_the_last_plan_and_its_explanations(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse, plan, dest = await settled(make_warehouse)
    sent_before = len(dest.records)

    second = await run_like_the_workflow(warehouse, plan, dest, "run-2")
    third = await run_like_the_workflow(warehouse, plan, dest, "run-3")

    assert second.quiet is not None and third.quiet is not None
    assert second.quiet.planned_by == third.quiet.planned_by == "run-1"
    # The counts a full plan gave, and the same rows explained under each run's own id.
    assert second.quiet.invalid == {"invalid_email:email": 1}
    assert second.quiet.excluded == {"no_consent:email_marketing": 1}
    assert (second.quiet.eligible, second.quiet.unchanged) == (3, 3)
    assert outcomes(warehouse, "run-2") == outcomes(warehouse, "run-1") != []
    assert outcomes(warehouse, "run-3") == outcomes(warehouse, "run-1")
    assert len(dest.records) == sent_before


async def test_a_changed_trait_plans_afresh_and_is_sent(make_warehouse: MakeWarehouse) -> None:
    warehouse, plan, dest = await settled(make_warehouse)
    with warehouse.session() as s:
        s.execute("UPDATE profiles SET plan = 'enterprise' WHERE profile_id = 'prf_0001'")

    changed = await run_like_the_workflow(warehouse, plan, dest, "run-3")

    assert changed.quiet is None and changed.changes is not None
    assert (changed.changes.changed, changed.changes.to_send) == (1, 1)


async def test_a_new_suppression_or_a_revoked_consent_plans_afresh(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse, plan, dest = await settled(make_warehouse)
    suppress(warehouse, "email", "user1@example.com", "unsubscribed")
    suppressed = await run_like_the_workflow(warehouse, plan, dest, "run-3")
    assert suppressed.quiet is None and suppressed.changes is not None
    assert suppressed.changes.removed == 1

    # Everything it sent got through, so its plan is the one kept.
    quiet_again = await run_like_the_workflow(warehouse, plan, dest, "run-4")
    assert quiet_again.quiet is not None and quiet_again.quiet.planned_by == "run-3"
    grant(warehouse, "prf_0002", False)
    revoked = await run_like_the_workflow(warehouse, plan, dest, "run-5")
    assert revoked.quiet is None and revoked.changes is not None
    assert revoked.changes.removed == 1


async def test_an_extra_copy_of_an_unchanged_row_plans_afresh(
    make_warehouse: MakeWarehouse,
) -> None:
    lenient = webhook_plan(gates=Gates(max_invalid_ratio=0.5))
    warehouse, _, _ = await settled(make_warehouse, lenient)
    with warehouse.session() as s:
        s.execute("INSERT INTO profiles SELECT * FROM profiles WHERE profile_id = 'prf_0001'")

    # Identical to a row prepared already, so only the count of copies tells.
    planned = plan_like_the_workflow(warehouse, lenient, "run-3")

    assert planned.quiet is None
    assert planned.counts.invalid == {"invalid_email:email": 1, "duplicate_key": 1}


async def test_a_new_contract_version_plans_afresh(make_warehouse: MakeWarehouse) -> None:
    warehouse, _, _ = await settled(make_warehouse)
    planned = plan_like_the_workflow(warehouse, webhook_plan(version=2), "run-3")
    assert planned.quiet is None and planned.changes is not None
    assert planned.changes.changed == 3


async def test_a_full_resync_plans_afresh(make_warehouse: MakeWarehouse) -> None:
    warehouse, plan, _ = await settled(make_warehouse)
    full = plan_like_the_workflow(warehouse, plan, "run-3", full_resync=True)
    assert full.quiet is None and full.changes is not None and full.changes.to_send == 3


async def test_changed_rows_of_a_run_that_failed_after_fetch_are_still_planned(
    make_warehouse: MakeWarehouse,
) -> None:
    """Fetch prepares the changed rows, then the run dies before validating: the rows are
    prepared already when the next run fetches, yet it must not reuse the old plan."""
    warehouse, plan, dest = await settled(make_warehouse)
    with warehouse.session() as s:
        s.execute("UPDATE profiles SET plan = 'enterprise' WHERE profile_id = 'prf_0001'")
        snapshot.snapshot_audience(s, RunRef(run_id="run-3", sync=plan.sync.name), plan)

    after = await run_like_the_workflow(warehouse, plan, dest, "run-4")

    assert after.quiet is None and after.changes is not None
    assert after.changes.to_send == 1


async def test_inputs_changed_and_changed_back_are_sent_back(make_warehouse: MakeWarehouse) -> None:
    """The delivered state moved in between, so the fingerprint of the old inputs must not
    bring back the plan kept before the change."""
    warehouse, plan, dest = await settled(make_warehouse)
    suppress(warehouse, "email", "user1@example.com", "unsubscribed")
    removed = await run_like_the_workflow(warehouse, plan, dest, "run-3")
    assert removed.changes is not None and removed.changes.removed == 1
    with warehouse.session() as s:
        s.execute("DELETE FROM suppressions WHERE identifier = 'user1@example.com'")

    back = await run_like_the_workflow(warehouse, plan, dest, "run-4")

    assert back.quiet is None and back.changes is not None
    assert back.changes.added == 1


async def test_a_run_whose_rows_were_rejected_keeps_no_plan_and_they_are_sent_again(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(PROFILES)
    plan, dest = webhook_plan(), FakeDestination(reject={"user1@example.com": "blocked"})
    first = await run_like_the_workflow(warehouse, plan, dest, "run-1")
    assert first.changes is not None and first.changes.to_send == 4

    dest.reject.clear()
    again = await run_like_the_workflow(warehouse, plan, dest, "run-2")

    assert again.quiet is None and again.changes is not None
    assert again.changes.added == 1
    assert dest.records["user1@example.com"]["plan"] == "pro"


def test_only_a_run_that_delivered_its_whole_plan_keeps_it(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(PROFILES)
    run = RunRef(run_id="run-1", sync="test_sync")
    kept = "SELECT count(*) FROM switchyard.quiet_plans"
    with warehouse.session() as s:
        ensure_schema(s)
        quiet.settle(s, run, "fp", Counts(to_send=10, sent=6))  # stopped part way
        quiet.settle(s, run, "", Counts(to_send=10, sent=10))  # no fingerprint
        reused = Counts(to_send=0, unchanged_since="run-0")  # kept already
        quiet.settle(s, run, "fp", reused)
        assert s.fetchone(kept) == (0,)
        quiet.settle(s, run, "fp", Counts(to_send=10, sent=10, eligible=12))
        assert s.fetchone(kept) == (1,)


async def test_a_kept_plan_this_version_cannot_read_is_planned_afresh(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse, plan, dest = await settled(make_warehouse)
    with warehouse.session() as s:
        s.execute("UPDATE switchyard.quiet_plans SET counts = '{\"planned_by\": 1}'")

    after = await run_like_the_workflow(warehouse, plan, dest, "run-2")

    assert after.quiet is None and after.changes is not None
    assert after.changes.to_send == 0
