"""Rows prepared once and reused: later runs must decide exactly as a first run would (each
test on DuckDB and on Postgres)."""

from __future__ import annotations

from switchyard.warehouse.base import Warehouse
from tests.support.catalogs import webhook_plan
from tests.support.fakes import FakeDestination
from tests.support.pipeline import plan_run, run_once
from tests.support.warehouse import MakeWarehouse, profile


def clean_profiles(n: int) -> list[tuple[object, ...]]:
    return [profile(i) for i in range(n)]


def prepared_tables(warehouse: Warehouse) -> list[str]:
    with warehouse.session() as s:
        rows = s.fetchall(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'switchyard' AND table_name LIKE 'prep_%'"
        )
    return sorted(str(r[0]) for r in rows)


def prepared_rows(warehouse: Warehouse) -> int:
    (table,) = prepared_tables(warehouse)
    with warehouse.session() as s:
        row = s.fetchone(f"SELECT count(*) FROM switchyard.{table}")
    return int(row[0]) if row else 0


async def test_a_new_row_sharing_an_unchanged_rows_key_is_ranked_as_on_a_first_run(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(clean_profiles(5))
    plan, dest = webhook_plan(), FakeDestination()
    await run_once(warehouse, plan, dest, "run-1")
    with warehouse.session() as s:
        # Sorts before prf_0003, whose row is unchanged (and prepared last run).
        s.execute(
            "INSERT INTO profiles SELECT 'prf_0002a', ' USER3@example.com', phone, first_name, "
            "plan, lifetime_value, orders_count, last_order_at, is_employee "
            "FROM profiles WHERE profile_id = 'prf_0003'"
        )
        s.execute("INSERT INTO consents VALUES ('prf_0002a', 'email_marketing', TRUE)")

    checked, _, changes = await run_once(warehouse, plan, dest, "run-2")
    assert checked.invalid == {"duplicate_key": 1}
    assert changes.to_send == 0
    with warehouse.session() as s:
        held = s.fetchall(
            "SELECT profile_id, reason FROM switchyard.row_outcomes WHERE run_id = 'run-2'"
        )
    assert held == [("prf_0003", "duplicate_key")]


async def test_identical_audience_rows_are_one_valid_row_and_one_duplicate(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(clean_profiles(4))
    plan = webhook_plan(
        sql="SELECT * FROM profiles UNION ALL SELECT * FROM profiles WHERE profile_id = 'prf_0002'"
    )
    dest = FakeDestination()
    for run_id in ("run-1", "run-2"):
        checked, allowed, changes = await run_once(warehouse, plan, dest, run_id)
        assert (checked.valid, checked.invalid) == (4, {"duplicate_key": 1})
        assert allowed.eligible == 4
    assert (changes.added, changes.changed, changes.unchanged) == (0, 0, 4)
    assert prepared_rows(warehouse) == 4


async def test_unchanged_rows_follow_consent_and_suppressions_every_run(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(clean_profiles(4))
    plan, dest = webhook_plan(), FakeDestination()
    await run_once(warehouse, plan, dest, "run-1")
    with warehouse.session() as s:
        s.execute("INSERT INTO suppressions VALUES ('phone', '+14155550100', 'dnc')")
    _, allowed, changes = await run_once(warehouse, plan, dest, "run-2")
    assert allowed.excluded == {"suppressed:dnc": 4}
    assert changes.removed == 4 and not dest.records

    with warehouse.session() as s:
        s.execute("DELETE FROM suppressions")
    _, _, back = await run_once(warehouse, plan, dest, "run-3")
    assert back.added == 4


async def test_a_contract_change_prepares_rows_afresh(make_warehouse: MakeWarehouse) -> None:
    rows = [profile(i, phone="020 7946 0000") for i in range(3)]
    warehouse = make_warehouse(rows)
    dest = FakeDestination()
    await run_once(warehouse, webhook_plan(default_phone_region="US"), dest, "run-1")
    first = prepared_tables(warehouse)
    assert dest.records["user1@example.com"]["phone"] is None  # not a US number: dropped

    # Same version, same raw values: only the normalisation changed.
    _, _, changes = await run_once(
        warehouse, webhook_plan(default_phone_region="GB"), dest, "run-2"
    )
    assert changes.changed == 3
    assert dest.records["user1@example.com"]["phone"] == "+442079460000"
    assert len(prepared_tables(warehouse)) == 1 and prepared_tables(warehouse) != first


async def test_rows_that_leave_are_forgotten_and_prepared_again_when_back(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(clean_profiles(4))
    plan, dest = webhook_plan(), FakeDestination()
    await run_once(warehouse, plan, dest, "run-1")
    with warehouse.session() as s:
        s.execute("UPDATE profiles SET lifetime_value = 10 WHERE profile_id = 'prf_0001'")
    await run_once(warehouse, plan, dest, "run-2")
    assert prepared_rows(warehouse) == 3
    with warehouse.session() as s:
        s.execute("UPDATE profiles SET lifetime_value = 900 WHERE profile_id = 'prf_0001'")
    _, _, back = await run_once(warehouse, plan, dest, "run-3")
    assert back.added == 1 and prepared_rows(warehouse) == 4
    assert dest.records["user1@example.com"]["lifetime_value"] == 900.0


def test_a_retried_fetch_prepares_nothing_twice(make_warehouse: MakeWarehouse) -> None:
    warehouse = make_warehouse(clean_profiles(4))
    plan = webhook_plan()
    plan_run(warehouse, plan, "run-1")
    _, checked, allowed, changes = plan_run(warehouse, plan, "run-1")
    assert checked.valid == 4 and allowed.eligible == 4 and changes.added == 4
    assert prepared_rows(warehouse) == 4


async def test_a_row_repeated_while_another_leaves_is_counted_as_a_copy(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(clean_profiles(5))
    dest = FakeDestination()
    await run_once(warehouse, webhook_plan(), dest, "run-1")
    # prf_0002 leaves while prf_0001, unchanged and prepared, comes back twice.
    plan = webhook_plan(
        sql="SELECT * FROM profiles WHERE profile_id <> 'prf_0002' "
        "UNION ALL SELECT * FROM profiles WHERE profile_id = 'prf_0001'"
    )
    checked, allowed, changes = await run_once(warehouse, plan, dest, "run-2")
    assert (checked.valid, checked.invalid) == (4, {"duplicate_key": 1})
    assert allowed.eligible == 4
    assert (changes.added, changes.changed, changes.unchanged) == (0, 0, 4)
    assert changes.removed == 1 and "user2@example.com" not in dest.records
    assert prepared_rows(warehouse) == 4


async def test_rows_without_a_profile_id_are_prepared_afresh_and_never_pile_up(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(clean_profiles(3))
    with warehouse.session() as s:
        s.execute(
            "INSERT INTO profiles SELECT NULL, 'nobody@example.com', phone, first_name, plan, "
            "lifetime_value, orders_count, last_order_at, is_employee "
            "FROM profiles WHERE profile_id = 'prf_0001'"
        )
    plan, dest = webhook_plan(), FakeDestination()
    outcomes = [await run_once(warehouse, plan, dest, f"run-{n}") for n in (1, 2, 3)]
    assert outcomes[1][:2] == outcomes[2][:2] == outcomes[0][:2]
    assert outcomes[0][1].excluded == {"no_consent:email_marketing": 1}
    assert prepared_rows(warehouse) == 4
