"""Sample data: deterministic, messy in the planned proportions, safe next to sync state."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from starter.commands import seed as seed_command
from switchyard.sampledata import (
    BLOCK_SIZE,
    REFERENCE_AT,
    SampleDataMissingError,
    build_block,
    generate,
    iter_blocks,
    mutate_duckdb,
    seed_duckdb,
)
from switchyard.sampledata.vocab import CONSENT_PURPOSES, COUNTRIES, INVALID_PHONES
from switchyard.warehouse.duckdb_lock import (
    WAIT_MESSAGE,
    WarehouseLockedError,
    connect_with_retry,
)

N = 20_000
VALID_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s.]+"
# DuckDB's trim() only strips spaces; padded emails also carry tabs.
NORMALISED_EMAIL = "lower(trim(email, ' ' || chr(9)))"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seeded") / "warehouse.duckdb"
    summary = seed_duckdb(path, N)
    assert summary.profiles == N
    return path


@pytest.fixture(scope="module")
def con(seeded: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(seeded), read_only=True)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5,000 seeded profiles; tests that write copy it first."""
    path = tmp_path_factory.mktemp("small") / "warehouse.duckdb"
    seed_duckdb(path, 5_000)
    return path


def copy_of(path: Path, tmp_path: Path, name: str = "copy.duckdb") -> Path:
    target = tmp_path / name
    shutil.copy(path, target)
    return target


def one(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    row = con.execute(sql).fetchone()
    assert row is not None
    return float(row[0])


def share(con: duckdb.DuckDBPyConnection, condition: str, table: str = "profiles") -> float:
    return one(con, f"SELECT avg(CASE WHEN {condition} THEN 1.0 ELSE 0.0 END) FROM {table}")


def checksums(path: Path) -> dict[str, tuple[int, str]]:
    with duckdb.connect(str(path), read_only=True) as c:
        out = {}
        for table in ("profiles", "consents", "suppressions"):
            row = c.execute(
                "SELECT count(*), md5(string_agg(CAST(t AS VARCHAR), chr(10) "
                f"ORDER BY CAST(t AS VARCHAR))) FROM main.{table} AS t"
            ).fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
        return out


# --- determinism ---------------------------------------------------------------------------


def test_same_arguments_give_identical_tables_and_another_seed_does_not(tmp_path: Path) -> None:
    first, second, other = (tmp_path / f"{n}.duckdb" for n in ("a", "b", "c"))
    seed_duckdb(first, 3_000, seed=42)
    seed_duckdb(second, 3_000, seed=42)
    seed_duckdb(other, 3_000, seed=43)

    assert checksums(first) == checksums(second)
    assert checksums(first)["profiles"][1] != checksums(other)["profiles"][1]


def test_blocks_are_independent_of_how_they_are_generated() -> None:
    total = BLOCK_SIZE + 2_000
    serial = list(iter_blocks(total, seed=5))
    threaded = list(iter_blocks(total, seed=5, ahead=2))
    alone = build_block(total, seed=5, index=1)

    for a, b in zip(serial, threaded, strict=True):
        assert a.profiles.equals(b.profiles) and a.consents.equals(b.consents)
    assert serial[1].profiles.equals(alone.profiles)
    assert serial[1].profiles.num_rows == 2_000
    # A smaller data set with the same seed is a prefix of a larger one.
    prefix = build_block(1_000, seed=5, index=0)
    assert prefix.profiles.equals(serial[0].profiles.slice(0, 1_000))
    assert prefix.suppressions.equals(serial[0].suppressions.slice(0, prefix.suppressions.num_rows))


def test_generate_yields_each_table_per_block_in_load_order() -> None:
    names = [name for name, _ in generate(10, seed=1)]
    assert names == ["profiles", "consents", "suppressions"]


@pytest.mark.parametrize("profiles, seed", [(0, 42), (10, -1)])
def test_generate_rejects_nonsense_arguments(profiles: int, seed: int) -> None:
    with pytest.raises(ValueError):
        next(generate(profiles, seed))


# --- profiles --------------------------------------------------------------------------------


def test_profile_ids_are_unique_and_zero_padded(con: duckdb.DuckDBPyConnection) -> None:
    assert one(con, "SELECT count(DISTINCT profile_id) FROM profiles") == N
    assert share(con, "regexp_full_match(profile_id, 'prf_[0-9]{7}')") == 1.0
    assert one(con, "SELECT min(profile_id) = 'prf_0000001' FROM profiles") == 1.0


def test_email_mess_comes_in_the_planned_shares(con: duckdb.DuckDBPyConnection) -> None:
    valid = f"regexp_full_match({NORMALISED_EMAIL}, '{VALID_EMAIL}')"
    assert share(con, "email IS NULL") == pytest.approx(0.03, abs=0.006)
    assert share(con, f"email IS NOT NULL AND NOT {valid}") == pytest.approx(0.02, abs=0.005)
    assert share(con, "email = 'n/a'") > 0
    # Upper case or padding on an otherwise valid address: the planted 5 % plus dup variants.
    assert 0.04 <= share(con, f"{valid} AND email <> {NORMALISED_EMAIL}") <= 0.07
    assert share(con, "email <> trim(email, ' ' || chr(9))") > 0.01
    assert share(con, r"regexp_matches(email, '[^\x00-\x7F]')") > 0.002


def test_about_one_percent_of_profiles_share_another_profiles_email(
    con: duckdb.DuckDBPyConnection,
) -> None:
    shared = con.execute(
        f"SELECT {NORMALISED_EMAIL} AS e, count(DISTINCT email) AS spellings FROM profiles"
        f" WHERE regexp_full_match({NORMALISED_EMAIL}, '{VALID_EMAIL}')"
        " GROUP BY e HAVING count(*) > 1"
    ).fetchall()
    assert 0.006 * N <= len(shared) <= 0.014 * N
    assert any(spellings > 1 for _, spellings in shared)


def test_phones_mix_formats_nulls_and_junk(con: duckdb.DuckDBPyConnection) -> None:
    junk = ", ".join(f"'{p}'" for p in INVALID_PHONES)
    assert share(con, "phone IS NULL") == pytest.approx(0.10, abs=0.01)
    assert share(con, f"phone IN ({junk})") == pytest.approx(0.02, abs=0.005)
    for pattern in (
        r"\+[1-9][0-9]{9,13}",
        r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}",
        r"[0-9]{3}\.[0-9]{3}\.[0-9]{4}",
        r"\+44 7[0-9]{3} [0-9]{6}",
        r"0049 1[0-9]{2} [0-9]{8}",
    ):
        assert share(con, f"regexp_full_match(phone, '{pattern}')") > 0, pattern


def test_phone_formats_fit_their_national_number_length() -> None:
    for country in COUNTRIES:
        assert country.phone_formats[0] == "+" + country.calling_code + "N" * country.phone_length
        for template in country.phone_formats:
            assert template.count("N") == country.phone_length, (country.code, template)


def test_other_identifiers_and_names(con: duckdb.DuckDBPyConnection) -> None:
    assert share(con, "user_id IS NULL") == pytest.approx(0.05, abs=0.008)
    assert share(con, "crm_id IS NULL") == pytest.approx(0.40, abs=0.02)
    assert share(con, "crm_id IS NULL OR regexp_full_match(crm_id, '003[0-9A-Za-z]{15}')") == 1
    assert share(con, "first_name IS NULL") == pytest.approx(0.02, abs=0.005)
    assert 0.002 <= share(con, "length(first_name) > 80 OR length(last_name) > 80") <= 0.009
    names = {
        row[0]
        for row in con.execute(
            "SELECT first_name FROM profiles UNION SELECT last_name FROM profiles"
        ).fetchall()
    }
    assert {"José", "Zoë", "Łukasz", "Anne-Marie", "Müller", "李", "Nguyễn", "O'Brien"} <= names


def test_traits_have_the_planned_distribution(con: duckdb.DuckDBPyConnection) -> None:
    assert share(con, "plan = 'free'") == pytest.approx(0.55, abs=0.02)
    assert share(con, "plan = 'enterprise'") == pytest.approx(0.07, abs=0.01)
    assert share(con, "plan IS NULL") == pytest.approx(0.005, abs=0.003)
    assert 0.25 <= share(con, "lifetime_value >= 500") <= 0.30
    assert share(con, "lifetime_value >= 0 AND round(lifetime_value, 2) = lifetime_value") == 1
    assert one(con, "SELECT corr(lifetime_value, orders_count) FROM profiles") > 0.5
    assert share(con, "churn_risk BETWEEN 0 AND 1") == 1
    assert 0.001 <= share(con, "is_employee") <= 0.006
    pairs = {(c.code, city) for c in COUNTRIES for city in c.cities}
    assert set(con.execute("SELECT DISTINCT country, city FROM profiles").fetchall()) <= pairs


def test_timestamps_lie_in_the_three_years_before_the_reference(
    con: duckdb.DuckDBPyConnection,
) -> None:
    row = con.execute(
        "SELECT min(signup_at), max(greatest(signup_at, last_order_at, last_seen_at, updated_at))"
        " FROM profiles"
    ).fetchone()
    assert row is not None
    assert REFERENCE_AT - timedelta(days=3 * 365) <= row[0] and row[1] < REFERENCE_AT
    assert share(con, "(last_order_at IS NULL) = (orders_count = 0)") == 1
    assert share(con, "last_seen_at >= signup_at AND updated_at >= last_seen_at") == 1
    newest_consent = con.execute("SELECT max(updated_at) FROM consents").fetchone()
    assert newest_consent is not None and newest_consent[0] < REFERENCE_AT


# --- consents and suppressions -------------------------------------------------------------


def test_consent_coverage_per_purpose(con: duckdb.DuckDBPyConnection) -> None:
    for purpose, rate in CONSENT_PURPOSES:
        granted = one(
            con,
            f"SELECT count(*) FILTER (WHERE granted) FROM consents WHERE purpose = '{purpose}'",
        )
        assert granted / N == pytest.approx(rate * 0.97, abs=0.02), purpose
    none = one(con, "SELECT count(*) FROM profiles ANTI JOIN consents USING (profile_id)")
    assert none / N == pytest.approx(0.03, abs=0.006)
    assert one(
        con, "SELECT count(*) FROM (SELECT DISTINCT profile_id, purpose FROM consents)"
    ) == one(con, "SELECT count(*) FROM consents")
    # Not granted is sometimes an explicit false row, sometimes no row at all: fewer sms rows
    # than profiles with consent records, yet some of them say false.
    assert one(con, "SELECT count(*) FROM consents WHERE NOT granted") > 0
    sms_rows = one(con, "SELECT count(*) FROM consents WHERE purpose = 'sms_marketing'")
    assert sms_rows < 0.9 * N


def test_suppressions_use_normalised_identifiers(con: duckdb.DuckDBPyConnection) -> None:
    count = one(con, "SELECT count(*) FROM suppressions")
    assert 0.006 * N <= count <= 0.014 * N
    kinds = dict(
        con.execute("SELECT identifier_type, count(*) FROM suppressions GROUP BY ALL").fetchall()
    )
    assert set(kinds) == {"email", "phone", "profile_id"} and kinds["email"] > count / 2
    assert (
        share(
            con,
            "reason IN ('unsubscribed', 'hard_bounce', 'legal_hold', 'do_not_contact')",
            "suppressions",
        )
        == 1
    )
    unmatched = one(
        con,
        "SELECT count(*) FROM suppressions s WHERE identifier_type = 'email' AND ("
        " identifier <> lower(trim(identifier)) OR identifier NOT IN"
        f" (SELECT {NORMALISED_EMAIL} FROM profiles WHERE email IS NOT NULL))",
    )
    assert unmatched == 0
    assert share(con, "identifier_type <> 'phone' OR identifier LIKE '+%'", "suppressions") == 1


# --- writing into a warehouse shared with sync state ---------------------------------------


def test_reseeding_replaces_only_the_sample_tables(small: Path, tmp_path: Path) -> None:
    path = copy_of(small, tmp_path)
    with duckdb.connect(str(path)) as c:
        c.execute("CREATE SCHEMA switchyard")
        c.execute("CREATE TABLE switchyard.delivered (sync_id VARCHAR, profile_id VARCHAR)")
        c.execute("INSERT INTO switchyard.delivered VALUES ('s1', 'prf_0000001')")

    summary = seed_duckdb(path, 800, seed=3)

    assert summary.rows["profiles"] == 800
    with duckdb.connect(str(path), read_only=True) as c:
        assert c.execute("SELECT * FROM switchyard.delivered").fetchall() == [("s1", "prf_0000001")]
        assert one(c, "SELECT count(*) FROM profiles") == 800


def test_a_failed_seed_leaves_the_previous_tables(small: Path, tmp_path: Path) -> None:
    path = copy_of(small, tmp_path)

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seed_duckdb(path, 900, progress=interrupt)

    with duckdb.connect(str(path), read_only=True) as c:
        assert one(c, "SELECT count(*) FROM profiles") == 5_000
        tables = c.execute("SELECT table_name FROM information_schema.tables").fetchall()
    assert sorted(t for (t,) in tables) == ["consents", "profiles", "suppressions"]


# --- mutation --------------------------------------------------------------------------------


def _snapshot(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, bool]]:
    """Profiles by id, and email_marketing consent by profile id."""
    with duckdb.connect(str(path), read_only=True) as c:
        cursor = c.execute("SELECT * FROM profiles")
        columns = [d[0] for d in cursor.description or ()]
        profiles = {row[0]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}
        email = dict(
            c.execute(
                "SELECT profile_id, granted FROM consents WHERE purpose = 'email_marketing'"
            ).fetchall()
        )
    return profiles, email


def test_mutate_changes_exactly_count_profiles_in_the_described_ways(
    small: Path, tmp_path: Path
) -> None:
    path = copy_of(small, tmp_path)
    before, email_before = _snapshot(path)

    summary = mutate_duckdb(path, 200, seed=7)

    after, email_after = _snapshot(path)
    assert summary.total == 200 and len(set(summary.profile_ids)) == 200
    assert (
        len(summary.traits_changed),
        len(summary.ltv_dropped),
        len(summary.consent_revoked),
    ) == (140, 30, 30)
    assert {pid for pid in before if before[pid] != after[pid]} == set(summary.profile_ids)
    assert {pid for pid in email_before if email_before[pid] != email_after[pid]} == set(
        summary.consent_revoked
    )
    mapped = ("lifetime_value", "plan", "first_name", "orders_count")
    for pid in summary.traits_changed:
        assert any(before[pid][f] != after[pid][f] for f in mapped), pid
    for pid in summary.ltv_dropped:
        assert before[pid]["lifetime_value"] >= 500 > after[pid]["lifetime_value"]
    for pid in summary.consent_revoked:
        assert email_before[pid] is True and email_after[pid] is False
    newest_before = max(p["updated_at"] for p in before.values())
    assert summary.mutated_at > newest_before
    assert all(after[pid]["updated_at"] == summary.mutated_at for pid in summary.profile_ids)


def test_mutate_is_deterministic_per_state_and_seed(small: Path, tmp_path: Path) -> None:
    first, second = copy_of(small, tmp_path, "1.duckdb"), copy_of(small, tmp_path, "2.duckdb")

    a = mutate_duckdb(first, 50, seed=11)
    b = mutate_duckdb(second, 50, seed=11)
    assert a == b
    assert checksums(first) == checksums(second)

    c = mutate_duckdb(second, 50, seed=12)
    assert set(c.profile_ids) != set(a.profile_ids) and c.mutated_at > b.mutated_at


def test_mutate_refuses_what_it_cannot_do(small: Path, tmp_path: Path) -> None:
    with pytest.raises(SampleDataMissingError):
        mutate_duckdb(tmp_path / "absent.duckdb", 10)
    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    with pytest.raises(SampleDataMissingError):
        mutate_duckdb(tmp_path / "empty.duckdb", 10)
    with pytest.raises(ValueError):
        mutate_duckdb(small, 0)
    with pytest.raises(ValueError, match="exceeds"):
        mutate_duckdb(copy_of(small, tmp_path), 5_001)


# --- the warehouse lock ----------------------------------------------------------------------

_HOLD_LOCK = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""


def test_connect_waits_for_the_lock_then_gives_up_clearly(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        told: list[str] = []
        with pytest.raises(WarehouseLockedError, match=f"PID {holder.pid}"):
            connect_with_retry(path, timeout_s=0.3, on_wait=told.append, poll_s=0.05)
        assert told == [WAIT_MESSAGE]

        release = threading.Timer(0.3, holder.stdin.close)
        release.start()
        connect_with_retry(path, timeout_s=10, on_wait=told.append, poll_s=0.05).close()
        release.join()
        assert told == [WAIT_MESSAGE, WAIT_MESSAGE]
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()


# --- CLI -------------------------------------------------------------------------------------


def test_cli_seeds_and_mutates_a_warehouse(tmp_path: Path) -> None:
    app = typer.Typer()
    seed_command.register(app)
    runner = CliRunner()
    path = tmp_path / "nested" / "warehouse.duckdb"

    seeded = runner.invoke(app, ["seed", "--profiles", "300", "--warehouse", str(path)])
    mutated = runner.invoke(app, ["mutate", "--count", "10", "--warehouse", str(path)])
    refused = runner.invoke(app, ["seed", "--profiles", "0", "--warehouse", str(path)])
    missing = runner.invoke(app, ["mutate", "--warehouse", str(tmp_path / "none.duckdb")])

    assert seeded.exit_code == 0, seeded.output
    assert "profiles 300" in seeded.output and path.exists()
    assert mutated.exit_code == 0 and "mutated 10 profiles" in mutated.output
    assert refused.exit_code == 2
    assert missing.exit_code == 1 and "seed" in missing.output
