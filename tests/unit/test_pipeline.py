"""The run's SQL steps against a real warehouse (each test on DuckDB and on Postgres), with a
fake destination."""

from __future__ import annotations

import pytest

from switchyard.errors import AudienceQueryError, ContractMismatchError, GateFailedError
from switchyard.pipeline import commit, snapshot, validate
from switchyard.runs import RunRef
from tests.support.catalogs import webhook_plan
from tests.support.fakes import FakeDestination
from tests.support.pipeline import run_once
from tests.support.warehouse import MakeWarehouse, grant, profile, suppress


def clean_profiles(n: int) -> list[tuple[object, ...]]:
    return [profile(i) for i in range(n)]


async def test_first_run_sends_every_eligible_row_and_second_run_sends_nothing(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(clean_profiles(10))
    plan, dest = webhook_plan(), FakeDestination()

    _, _, first = await run_once(warehouse, plan, dest, "run-1")
    assert (first.added, first.changed, first.removed) == (10, 0, 0)
    assert len(dest.records) == 10
    assert dest.records["user3@example.com"] == {
        "first_name": "Ada",
        "phone": "+14155550100",
        "plan": "pro",
        "lifetime_value": 900.0,
        "last_order_at": "2026-10-01T12:00:00Z",
    }

    sent_before = dest.operations_sent
    _, _, second = await run_once(warehouse, plan, dest, "run-2")
    assert second.to_send == 0 and second.unchanged == 10
    assert dest.operations_sent == sent_before


async def test_changes_leavers_and_consent_loss_are_exactly_what_is_sent(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(clean_profiles(10))
    plan, dest = webhook_plan(), FakeDestination()
    await run_once(warehouse, plan, dest, "run-1")

    with warehouse.session() as s:
        s.execute(
            "UPDATE profiles SET plan = 'enterprise' WHERE profile_id IN ('prf_0001', 'prf_0002')"
        )
        s.execute("UPDATE profiles SET lifetime_value = 10 WHERE profile_id = 'prf_0003'")
    grant(warehouse, "prf_0004", False)
    suppress(warehouse, "email", "user5@example.com", "unsubscribed")
    dest.batches.clear()

    _, allowed, changes = await run_once(warehouse, plan, dest, "run-2")
    assert (changes.added, changes.changed, changes.removed) == (0, 2, 3)
    sent = {(o.op, o.key) for b in dest.batches for o in b.operations}
    assert sent == {
        ("upsert", "user1@example.com"),
        ("upsert", "user2@example.com"),
        ("remove", "user3@example.com"),
        ("remove", "user4@example.com"),
        ("remove", "user5@example.com"),
    }
    assert allowed.excluded == {
        "no_consent:email_marketing": 1,
        "suppressed:unsubscribed": 1,
    }
    assert dest.records["user1@example.com"]["plan"] == "enterprise"
    assert "user3@example.com" not in dest.records


async def test_upsert_mode_forgets_leavers_but_still_removes_consent_loss(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(clean_profiles(6))
    plan, dest = webhook_plan(sync_mode="upsert"), FakeDestination()
    await run_once(warehouse, plan, dest, "run-1")
    with warehouse.session() as s:
        s.execute("UPDATE profiles SET lifetime_value = 10 WHERE profile_id = 'prf_0001'")
    grant(warehouse, "prf_0002", False)

    _, _, changes = await run_once(warehouse, plan, dest, "run-2")
    assert (changes.removed, changes.forgotten) == (1, 1)
    assert "user1@example.com" in dest.records  # left the audience: left alone downstream
    assert "user2@example.com" not in dest.records  # lost consent: removed

    # Forgotten rows are out of the state, so coming back re-sends them.
    with warehouse.session() as s:
        s.execute("UPDATE profiles SET lifetime_value = 900 WHERE profile_id = 'prf_0001'")
    _, _, back = await run_once(warehouse, plan, dest, "run-3")
    assert back.added == 1


async def test_invalid_rows_are_quarantined_with_reasons(make_warehouse: MakeWarehouse) -> None:
    rows = [
        *clean_profiles(12),
        profile(20, email="not-an-email"),
        profile(21, email="  USER1@Example.com "),  # duplicate of prf_0001 once normalised
        profile(22, plan=None),
        profile(23, email="trailing@dot.com."),
        profile(24, phone="(415) 555-0199"),  # national US format: normalised
        profile(25, phone="call me"),  # optional field: dropped, row still sent
        profile(26, first_name="x" * 30),  # longer than max_length 20: dropped
    ]
    warehouse = make_warehouse(rows)
    plan, dest = webhook_plan(), FakeDestination()
    checked, _, changes = await run_once(warehouse, plan, dest, "run-1")
    assert checked.invalid == {
        "invalid_email:email": 2,
        "duplicate_key": 1,
        "missing_required:plan": 1,
    }
    assert checked.fields_dropped == {"invalid_phone:phone": 1, "too_long:first_name": 1}
    assert changes.added == 15
    assert dest.records["user24@example.com"]["phone"] == "+14155550199"
    assert dest.records["user25@example.com"]["phone"] is None
    with warehouse.session() as s:
        reasons = dict(
            s.fetchall(
                "SELECT profile_id, reason FROM switchyard.row_outcomes WHERE stage = 'invalid'"
            )
        )
    assert reasons == {
        "prf_0020": "invalid_email:email",
        "prf_0021": "duplicate_key",
        "prf_0022": "missing_required:plan",
        "prf_0023": "invalid_email:email",
    }


async def test_rejected_rows_keep_their_reason_and_are_resent_next_run(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(clean_profiles(5))
    plan = webhook_plan()
    dest = FakeDestination(reject={"user2@example.com": "field_too_long:first_name"})
    await run_once(warehouse, plan, dest, "run-1")
    assert "user2@example.com" not in dest.records
    with warehouse.session() as s:
        errors = s.fetchall("SELECT key, reason FROM switchyard.row_errors")
    assert errors == [("user2@example.com", "field_too_long:first_name")]

    dest.reject.clear()
    dest.batches.clear()
    _, _, again = await run_once(warehouse, plan, dest, "run-2")
    assert again.added == 1
    assert [o.key for b in dest.batches for o in b.operations] == ["user2@example.com"]
    with warehouse.session() as s:
        assert s.fetchall("SELECT * FROM switchyard.row_errors") == []


async def test_full_resync_resends_everything(make_warehouse: MakeWarehouse) -> None:
    warehouse = make_warehouse(clean_profiles(5))
    plan, dest = webhook_plan(), FakeDestination()
    await run_once(warehouse, plan, dest, "run-1")
    _, _, full = await run_once(warehouse, plan, dest, "run-2", full_resync=True)
    assert full.to_send == 5


async def test_contract_change_resends_everything(make_warehouse: MakeWarehouse) -> None:
    warehouse = make_warehouse(clean_profiles(5))
    dest = FakeDestination()
    await run_once(warehouse, webhook_plan(), dest, "run-1")
    _, _, after = await run_once(warehouse, webhook_plan(version=2), dest, "run-2")
    assert after.changed == 5


def test_audience_sql_that_fails_is_a_clear_fatal_error(make_warehouse: MakeWarehouse) -> None:
    warehouse = make_warehouse(clean_profiles(2))
    plan = webhook_plan(sql="SELECT * FROM profilez")
    with warehouse.session() as s, pytest.raises(AudienceQueryError, match="profilez"):
        snapshot.snapshot_audience(s, RunRef(run_id="r", sync="test_sync"), plan)


def test_mapping_to_a_missing_column_names_it(make_warehouse: MakeWarehouse) -> None:
    warehouse = make_warehouse(clean_profiles(2))
    plan = webhook_plan(sql="SELECT profile_id, email FROM profiles")
    with warehouse.session() as s, pytest.raises(ContractMismatchError, match="first_name"):
        snapshot.snapshot_audience(s, RunRef(run_id="r", sync="test_sync"), plan)


def test_gate_stops_a_run_with_too_many_invalid_rows(make_warehouse: MakeWarehouse) -> None:
    rows = [profile(i, email=f"broken{i}") for i in range(5)] + clean_profiles(2)
    warehouse = make_warehouse(rows)
    plan = webhook_plan()
    run = RunRef(run_id="r", sync="test_sync")
    with warehouse.session() as s:
        snapshot.snapshot_audience(s, run, plan)
        with pytest.raises(GateFailedError, match="invalid"):
            validate.validate_snapshot(s, run, plan)


async def test_commit_in_slices_of_chunks_keeps_state_exact(
    make_warehouse: MakeWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One chunk per transaction: every slice boundary is crossed.
    monkeypatch.setattr(commit, "CHUNKS_PER_TRANSACTION", 1)
    warehouse = make_warehouse(clean_profiles(10))
    plan, dest = webhook_plan(), FakeDestination()
    _, _, first = await run_once(warehouse, plan, dest, "run-1", chunk_size=3)
    assert first.chunks == 4
    with warehouse.session() as s:
        s.execute(
            "UPDATE profiles SET plan = 'enterprise' WHERE profile_id IN ('prf_0000', 'prf_0009')"
        )
        s.execute("UPDATE profiles SET lifetime_value = 10 WHERE profile_id = 'prf_0005'")
    _, _, second = await run_once(warehouse, plan, dest, "run-2", chunk_size=3)
    assert (second.changed, second.removed) == (2, 1)
    with warehouse.session() as s:
        rows = s.fetchall("SELECT key FROM switchyard.delivered WHERE sync_id = 'test_sync'")
    assert sorted(r[0] for r in rows) == sorted(dest.records)
    assert len(rows) == 9
