"""Small hand-made warehouses for pipeline tests: every row's fate is known in advance.

The same rows on either engine: `make_warehouse` (a fixture) fills the test's fresh
warehouse, whichever `warehouse_url` it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from switchyard.warehouse.base import Warehouse
from switchyard.warehouse.factory import open_warehouse

PROFILE_COLUMNS = (
    "profile_id VARCHAR, email VARCHAR, phone VARCHAR, first_name VARCHAR, plan VARCHAR, "
    "lifetime_value DOUBLE PRECISION, orders_count INTEGER, last_order_at TIMESTAMP, "
    "is_employee BOOLEAN"
)

MakeWarehouse = Callable[[list[tuple[object, ...]]], Warehouse]


def fill_warehouse(url: str, profiles: list[tuple[object, ...]]) -> Warehouse:
    warehouse = open_warehouse(url)
    with warehouse.session() as s:
        s.execute(f"CREATE TABLE profiles ({PROFILE_COLUMNS})")
        s.execute("CREATE TABLE consents (profile_id VARCHAR, purpose VARCHAR, granted BOOLEAN)")
        s.execute(
            "CREATE TABLE suppressions (identifier_type VARCHAR, identifier VARCHAR, "
            "reason VARCHAR)"
        )
        s.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", profiles)
        s.execute("INSERT INTO consents SELECT profile_id, 'email_marketing', TRUE FROM profiles")
    return warehouse


@pytest.fixture
def make_warehouse(warehouse_url: str) -> Iterator[MakeWarehouse]:
    """Fill the test's warehouse with profiles (everyone consents to email_marketing)."""
    opened: list[Warehouse] = []

    def make(profiles: list[tuple[object, ...]]) -> Warehouse:
        opened.append(fill_warehouse(warehouse_url, profiles))
        return opened[-1]

    yield make
    for warehouse in opened:
        warehouse.close()


def grant(warehouse: Warehouse, profile_id: str, granted: bool) -> None:
    with warehouse.session() as s:
        s.execute(
            "UPDATE consents SET granted = ? WHERE profile_id = ? AND purpose = 'email_marketing'",
            (granted, profile_id),
        )


def suppress(warehouse: Warehouse, kind: str, identifier: str, reason: str) -> None:
    with warehouse.session() as s:
        s.execute("INSERT INTO suppressions VALUES (?, ?, ?)", (kind, identifier, reason))


def profile(
    n: int,
    email: str | None = None,
    phone: str | None = "+14155550100",
    plan: str | None = "pro",
    ltv: float = 900.0,
    first_name: str | None = "Ada",
) -> tuple[object, ...]:
    return (
        f"prf_{n:04d}",
        email if email is not None else f"user{n}@example.com",
        phone,
        first_name,
        plan,
        ltv,
        3,
        "2026-10-01 12:00:00",
        False,
    )
