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

The same SQL runs on DuckDB and Postgres and gives the same result on both: the hash is
md5 (its first hex digits as an integer), amounts are computed in whole cents, and names
are picked with CASE, so the same data and seed change the same profiles the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from switchyard.sampledata.profiles import REFERENCE_AT
from switchyard.warehouse.base import Session
from switchyard.warehouse.duckdb import DuckDBSession
from switchyard.warehouse.duckdb_lock import connect_with_retry
from switchyard.warehouse.postgres import PostgresSession, connect

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
    _check_count(count)
    if not path.exists():
        raise SampleDataMissingError(f"no warehouse at {path}; run `switchyard seed` first")
    con = connect_with_retry(path, lock_timeout_s, on_wait=on_lock_wait)
    try:
        return mutate(DuckDBSession(con), count, seed)
    finally:
        con.close()


def mutate_postgres(url: str, count: int, seed: int = 7) -> MutationSummary:
    """mutate_duckdb's changes, in the Postgres database at `url`."""
    _check_count(count)
    con = connect(url, "switchyard-mutate")
    try:
        return mutate(PostgresSession(con), count, seed)
    finally:
        con.close()


def mutate(session: Session, count: int, seed: int = 7) -> MutationSummary:
    """Change `count` profiles through an open session, in one transaction."""
    _check_count(count)
    _require_tables(session)
    with session.transaction():
        return _mutate(session, count, int(seed))


def _check_count(count: int) -> None:
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")


def _mutate(session: Session, count: int, seed: int) -> MutationSummary:
    total = _scalar(session, "SELECT count(*) FROM profiles")
    if count > total:
        raise ValueError(f"count {count} exceeds the {total} profiles in the warehouse")
    _choose(session, seed, drops=count * 15 // 100, revokes=count * 15 // 100, count=count)
    mutated_at = _mutation_instant(session)
    for sql in _UPDATES:
        session.execute(sql, (mutated_at,) * sql.count("?"))
    rows = session.fetchall(f"SELECT kind, profile_id FROM {_CHOSEN} ORDER BY profile_id")
    session.execute(f"DROP TABLE {_CHOSEN}")
    by_kind: dict[str, list[str]] = {"traits": [], "ltv_drop": [], "consent_revoked": []}
    for kind, profile_id in rows:
        by_kind[kind].append(profile_id)
    return MutationSummary(
        mutated_at,
        traits_changed=tuple(by_kind["traits"]),
        ltv_dropped=tuple(by_kind["ltv_drop"]),
        consent_revoked=tuple(by_kind["consent_revoked"]),
    )


def _hex_int(session: Session, hex_digits: str, digits: int) -> str:
    """SQL turning `digits` hex digits into a non-negative BIGINT, identically per engine."""
    if session.dialect.name == "postgres":
        return f"CAST(CAST('x' || {hex_digits} AS bit({4 * digits})) AS BIGINT)"
    return f"CAST('0x' || {hex_digits} AS BIGINT)"


def _choose(session: Session, seed: int, drops: int, revokes: int, count: int) -> None:
    """Fill the temp table: drops first, then revocations, then traits for the rest.

    Each kind takes the profiles with the lowest hash(profile_id, seed) that qualify and
    aren't taken yet. Taking the top n + taken by hash before excluding the taken ones keeps
    every step a top-N over the table plus a tiny anti-join. h orders the picks; v (the
    trait variant) and r (an amount / name pick) come from other digits of the same md5.
    """
    digest = f"md5(profile_id || ':{seed}')"
    h = _hex_int(session, f"substr({digest}, 1, 15)", 15)
    r = _hex_int(session, f"substr({digest}, 16, 5)", 5)
    session.execute(
        f"CREATE TEMP TABLE {_CHOSEN} ("
        " profile_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, h BIGINT NOT NULL,"
        " v INTEGER NOT NULL, r BIGINT NOT NULL)"
    )
    steps = (
        ("ltv_drop", "profiles WHERE lifetime_value >= 500", drops),
        ("consent_revoked", _GRANTED_EMAIL, revokes),
        ("traits", "profiles", None),
    )
    for kind, source, wanted in steps:
        taken = _scalar(session, f"SELECT count(*) FROM {_CHOSEN}")
        n = count - taken if wanted is None else wanted
        session.execute(
            f"INSERT INTO {_CHOSEN} (profile_id, kind, h, v, r) "
            f"SELECT profile_id, '{kind}', h, CAST(h % 4 AS INTEGER), r FROM ("
            f"  SELECT profile_id, {h} AS h, {r} AS r FROM {source}"
            "   ORDER BY h, profile_id LIMIT ?"
            f") AS top WHERE NOT EXISTS ("
            f"  SELECT 1 FROM {_CHOSEN} AS t WHERE t.profile_id = top.profile_id)"
            " ORDER BY h, profile_id LIMIT ?",
            (n + taken, n),
        )


_GRANTED_EMAIL = "consents WHERE purpose = 'email_marketing' AND granted"


def _mutation_instant(session: Session) -> datetime:
    newest = session.fetchone(
        "SELECT greatest((SELECT max(updated_at) FROM profiles),"
        " (SELECT max(updated_at) FROM consents))"
    )
    latest = max((newest[0] if newest and newest[0] else REFERENCE_AT), REFERENCE_AT)
    return latest.replace(microsecond=0) + timedelta(minutes=1)


def _update_where(kind: str, sets: str, variant: int | None = None) -> str:
    only_variant = "" if variant is None else f" AND m.v = {variant}"
    return (
        f"UPDATE profiles AS p SET {sets} FROM {_CHOSEN} AS m "
        f"WHERE p.profile_id = m.profile_id AND m.kind = '{kind}'{only_variant}"
    )


def _name(pick: str) -> str:
    whens = " ".join(f"WHEN {i} THEN '{name}'" for i, name in enumerate(_REPLACEMENT_NAMES))
    return f"(CASE ({pick}) % {len(_REPLACEMENT_NAMES)} {whens} END)"


def _dollars(cents: str) -> str:
    # Whole cents divided once: the nearest double to the amount on every engine.
    return f"CAST({cents} AS DOUBLE PRECISION) / 100"


_CENTS = "round(p.lifetime_value * 100)"

# One statement per change, so each touches only the columns it changes (cheaper commits).
# `?` is the mutation instant.
_UPDATES = (
    _update_where(
        "traits",
        "orders_count = p.orders_count + 1, last_order_at = ?,"
        f" lifetime_value = {_dollars(f'{_CENTS} + 2000 + m.r % 20000')}",
        variant=0,
    ),
    # times 1.1 plus 25, rounded half up to the cent: floor((11 cents + 5) / 10) + 2500.
    _update_where(
        "traits",
        f"lifetime_value = {_dollars(f'floor(({_CENTS} * 11 + 5) / 10) + 2500')}",
        variant=1,
    ),
    _update_where(
        "traits",
        "plan = CASE p.plan WHEN 'free' THEN 'starter' WHEN 'starter' THEN 'pro'"
        " WHEN 'pro' THEN 'enterprise' WHEN 'enterprise' THEN 'pro' ELSE 'free' END",
        variant=2,
    ),
    _update_where(
        "traits",
        f"first_name = CASE WHEN p.first_name IS NOT DISTINCT FROM {_name('m.r')}"
        f" THEN {_name('m.r + 1')} ELSE {_name('m.r')} END",
        variant=3,
    ),
    _update_where("traits", "last_seen_at = ?, updated_at = ?"),
    _update_where("ltv_drop", f"lifetime_value = {_dollars('10000 + m.r % 40000')}"),
    _update_where("ltv_drop", "updated_at = ?"),
    _update_where("consent_revoked", "updated_at = ?"),
    "UPDATE consents AS c SET granted = false, updated_at = ?, source = 'preference_center'"
    f" FROM {_CHOSEN} AS m WHERE c.profile_id = m.profile_id AND m.kind = 'consent_revoked'"
    " AND c.purpose = 'email_marketing'",
)


def _require_tables(session: Session) -> None:
    found = {
        row[0]
        for row in session.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    }
    missing = [t for t in ("profiles", "consents") if t not in found]
    if missing:
        raise SampleDataMissingError(
            f"the warehouse has no {', '.join(missing)} table; run `switchyard seed` first"
        )


def _scalar(session: Session, sql: str) -> int:
    row = session.fetchone(sql)
    return int(row[0]) if row else 0
