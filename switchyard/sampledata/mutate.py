"""Deterministic changes to seeded profiles, so the next sync has real work to do.

Three kinds, chosen by a seeded hash of profile_id (no wall clock, no Python row loops):
- traits (≈70 %): a new order (orders_count + 1, last_order_at, lifetime_value up), a
  lifetime_value increase, a plan change, or a new first_name — one per profile;
- ltv_drop (≈15 %): lifetime_value from ≥ 500 to below 500, so the profile leaves an
  audience such as "lifetime_value >= 500";
- consent_revoked (≈15 %): email_marketing consent from granted to not granted.
Every touched profile gets updated_at (trait changes also last_seen_at) = the mutation
instant: one minute after the newest updated_at in the tables (and never before
REFERENCE_AT), so repeated mutations move forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from switchyard.sampledata.profiles import REFERENCE_AT
from switchyard.warehouse.duckdb_lock import connect_with_retry

_CHOSEN = "_sampledata_mutation"
_REPLACEMENT_NAMES = ("Alex", "Sam", "Jordan", "Zoë", "José", "Łukasz", "Anne-Marie", "Kenji")


class SampleDataMissingError(LookupError):
    """The warehouse has no seeded profiles / consents tables to mutate."""


@dataclass(frozen=True, slots=True)
class MutationSummary:
    mutated_at: datetime
    traits_changed: tuple[str, ...]
    ltv_dropped: tuple[str, ...]
    consent_revoked: tuple[str, ...]

    @property
    def profile_ids(self) -> list[str]:
        return sorted((*self.traits_changed, *self.ltv_dropped, *self.consent_revoked))

    @property
    def total(self) -> int:
        return len(self.traits_changed) + len(self.ltv_dropped) + len(self.consent_revoked)


def mutate_duckdb(
    path: Path,
    count: int,
    seed: int = 7,
    *,
    lock_timeout_s: float = 30,
    on_lock_wait: Callable[[str], None] | None = None,
) -> MutationSummary:
    """Change exactly `count` distinct profiles in one transaction; see the module docstring.

    When too few profiles qualify for a drop or a revocation, the rest get trait changes.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if not path.exists():
        raise SampleDataMissingError(f"no warehouse at {path}; run `switchyard seed` first")
    con = connect_with_retry(path, lock_timeout_s, on_wait=on_lock_wait)
    try:
        _require_tables(con)
        con.execute("BEGIN TRANSACTION")
        try:
            summary = _mutate(con, count, seed)
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        return summary
    finally:
        con.close()


def _mutate(con: duckdb.DuckDBPyConnection, count: int, seed: int) -> MutationSummary:
    total = _scalar(con, "SELECT count(*) FROM main.profiles")
    if count > total:
        raise ValueError(f"count {count} exceeds the {total} profiles in the warehouse")
    _choose(con, seed, drops=count * 15 // 100, revokes=count * 15 // 100, count=count)
    mutated_at = _mutation_instant(con)
    params = {"at": mutated_at, "names": list(_REPLACEMENT_NAMES)}
    for sql in _UPDATES:
        con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})
    rows = con.execute(f"SELECT kind, profile_id FROM {_CHOSEN} ORDER BY profile_id").fetchall()
    con.execute(f"DROP TABLE {_CHOSEN}")
    by_kind: dict[str, list[str]] = {"traits": [], "ltv_drop": [], "consent_revoked": []}
    for kind, profile_id in rows:
        by_kind[kind].append(profile_id)
    return MutationSummary(
        mutated_at,
        traits_changed=tuple(by_kind["traits"]),
        ltv_dropped=tuple(by_kind["ltv_drop"]),
        consent_revoked=tuple(by_kind["consent_revoked"]),
    )


def _choose(
    con: duckdb.DuckDBPyConnection, seed: int, drops: int, revokes: int, count: int
) -> None:
    """Fill the temp table: drops first, then revocations, then traits for the rest.

    Each kind takes the profiles with the lowest hash(profile_id, seed) that qualify and
    aren't taken yet. Taking the top n + taken by hash before excluding the taken ones keeps
    every step a top-N over the table plus a tiny anti-join.
    """
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_CHOSEN} ("
        " profile_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, h UBIGINT NOT NULL,"
        # Small numbers from other bits of h: the trait variant and an amount / name pick.
        " v INTEGER GENERATED ALWAYS AS ((h % 4)::INTEGER) VIRTUAL,"
        " r BIGINT GENERATED ALWAYS AS ((h // 7 % 1000003)::BIGINT) VIRTUAL)"
    )
    steps = (
        ("ltv_drop", "main.profiles WHERE lifetime_value >= 500", drops),
        ("consent_revoked", _GRANTED_EMAIL, revokes),
        ("traits", "main.profiles", None),
    )
    for kind, source, wanted in steps:
        taken = _scalar(con, f"SELECT count(*) FROM {_CHOSEN}")
        n = count - taken if wanted is None else wanted
        con.execute(
            f"INSERT INTO {_CHOSEN} (profile_id, kind, h) "
            f"SELECT profile_id, '{kind}', h FROM ("
            f"  SELECT profile_id, hash(profile_id, $seed) AS h FROM {source}"
            "   ORDER BY h, profile_id LIMIT $pool"
            f") ANTI JOIN {_CHOSEN} USING (profile_id) ORDER BY h, profile_id LIMIT $n",
            {"seed": seed, "pool": n + taken, "n": n},
        )


_GRANTED_EMAIL = "main.consents WHERE purpose = 'email_marketing' AND granted"


def _mutation_instant(con: duckdb.DuckDBPyConnection) -> datetime:
    newest = con.execute(
        "SELECT greatest((SELECT max(updated_at) FROM main.profiles),"
        " (SELECT max(updated_at) FROM main.consents))"
    ).fetchone()
    latest = max((newest[0] if newest and newest[0] else REFERENCE_AT), REFERENCE_AT)
    return latest.replace(microsecond=0) + timedelta(minutes=1)


def _update_where(kind: str, sets: str, variant: int | None = None) -> str:
    only_variant = "" if variant is None else f" AND m.v = {variant}"
    return (
        f"UPDATE main.profiles AS p SET {sets} FROM {_CHOSEN} AS m "
        f"WHERE p.profile_id = m.profile_id AND m.kind = '{kind}'{only_variant}"
    )


# One statement per change, so each touches only the columns it changes (cheaper commits).
_UPDATES = (
    _update_where(
        "traits",
        "orders_count = p.orders_count + 1, last_order_at = $at,"
        " lifetime_value = round(p.lifetime_value + 20 + (m.r % 20000) / 100.0, 2)",
        variant=0,
    ),
    _update_where("traits", "lifetime_value = round(p.lifetime_value * 1.1 + 25, 2)", variant=1),
    _update_where(
        "traits",
        "plan = CASE p.plan WHEN 'free' THEN 'starter' WHEN 'starter' THEN 'pro'"
        " WHEN 'pro' THEN 'enterprise' WHEN 'enterprise' THEN 'pro' ELSE 'free' END",
        variant=2,
    ),
    _update_where(
        "traits",
        "first_name = CASE WHEN p.first_name IS NOT DISTINCT FROM $names[1 + m.r % len($names)]"
        " THEN $names[1 + (m.r + 1) % len($names)] ELSE $names[1 + m.r % len($names)] END",
        variant=3,
    ),
    _update_where("traits", "last_seen_at = $at, updated_at = $at"),
    _update_where("ltv_drop", "lifetime_value = round(100 + (m.r % 40000) / 100.0, 2)"),
    _update_where("ltv_drop", "updated_at = $at"),
    _update_where("consent_revoked", "updated_at = $at"),
    "UPDATE main.consents AS c SET granted = false, updated_at = $at, source = 'preference_center'"
    f" FROM {_CHOSEN} AS m WHERE c.profile_id = m.profile_id AND m.kind = 'consent_revoked'"
    " AND c.purpose = 'email_marketing'",
)


def _require_tables(con: duckdb.DuckDBPyConnection) -> None:
    found = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }
    missing = [t for t in ("profiles", "consents") if t not in found]
    if missing:
        raise SampleDataMissingError(
            f"the warehouse has no {', '.join(missing)} table; run `switchyard seed` first"
        )


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0
