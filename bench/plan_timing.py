"""Time the planning steps (fetch, validate, consent, diff) directly, without Temporal.

    .venv/bin/python -m bench.plan_timing [--engine duckdb|postgres] [--profiles N] [--reps R]

Each repetition starts from the same seeded profiles and an empty sync state, then plans
three runs of the benchmark's full sync: the first (everything is new), a run with nothing
changed, and a run after 1 % of profiles were mutated. Between runs every planned row is
acknowledged and committed, as a delivery that went through would leave the state. Much
quicker than `make bench` and free of delivery noise, so before/after comparisons of the
planning SQL can alternate several times on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from switchyard.catalog.loader import load_catalog
from switchyard.catalog.models import SyncPlan
from switchyard.pipeline import commit, consent, diff, snapshot, validate
from switchyard.runs import PlanInput, RunRef
from switchyard.sampledata import mutate_warehouse, seed_warehouse
from switchyard.warehouse.base import Session, Warehouse
from switchyard.warehouse.factory import open_warehouse

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
SYNC = "bench_full"
CHUNK_SIZE = 20_000
PG_ADMIN = os.environ.get("SWITCHYARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
STEPS = ("fetch", "validate", "consent", "diff")


def bench_plan() -> SyncPlan:
    env = {**os.environ, "SWITCHYARD_BENCH_WEBHOOK_URL": "http://127.0.0.1:9"}
    return load_catalog(CATALOG_DIR, env).plan_for(SYNC)


def plan_once(session: Session, plan: SyncPlan, run: RunRef) -> dict[str, Any]:
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("fetch", lambda: snapshot.snapshot_audience(session, run, plan)),
        ("validate", lambda: validate.validate_snapshot(session, run, plan)),
        ("consent", lambda: consent.filter_consent(session, run, plan)),
        (
            "diff",
            lambda: diff.plan_changes(
                session, PlanInput(run=run, plan=plan, full_resync=False, chunk_size=CHUNK_SIZE)
            ),
        ),
    ]
    timings: dict[str, Any] = {}
    for name, step in steps:
        start = time.perf_counter()
        result = step()
        timings[name] = time.perf_counter() - start
        if name == "diff":
            timings["to_send"] = result.to_send
    timings["plan"] = sum(timings[s] for s in STEPS)
    return timings


def acknowledge_all(session: Session, run: RunRef) -> None:
    """What a delivery that got everything through leaves behind, then commit."""
    session.execute(
        f"""INSERT INTO switchyard.acked_batches
        (run_id, chunk, batch, accepted, rejected, worker, acked_at)
        SELECT ?, chunk, batch, count(*), 0, 'timing', current_timestamp
        FROM switchyard.chg_{run.tag} WHERE chunk IS NOT NULL GROUP BY chunk, batch""",
        (run.run_id,),
    )
    commit.commit_delivered(session, run)
    for stage in ("snap", "val", "elig", "chg"):
        session.execute(f"DROP TABLE IF EXISTS switchyard.{stage}_{run.tag}")
        session.execute(f"DROP VIEW IF EXISTS switchyard.{stage}_{run.tag}")


def scenario(url: str, plan: SyncPlan, changed: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    warehouse: Warehouse = open_warehouse(url, memory_limit="1GB")
    try:
        for label in ("full", "no_change", "incremental"):
            if label == "incremental":
                warehouse.close()
                mutate_warehouse(url, changed)
                warehouse = open_warehouse(url, memory_limit="1GB")
            run = RunRef(run_id=f"timing-{label}", sync=plan.sync.name)
            with warehouse.session() as session:
                results[label] = plan_once(session, plan, run)
                acknowledge_all(session, run)
    finally:
        warehouse.close()
    return results


@contextmanager
def seeded_copies(engine: str, profiles: int, cache: Path) -> Iterator[Callable[[], Any]]:
    """A factory of fresh warehouses holding the same seeded profiles."""
    cache.mkdir(parents=True, exist_ok=True)
    if engine == "duckdb":
        seeded = cache / f"seed_{profiles}.duckdb"
        if not seeded.exists():
            seed_warehouse(str(seeded), profiles)
        work = Path(tempfile.mkdtemp(prefix="sy_plan_timing_"))

        @contextmanager
        def copy() -> Iterator[str]:
            target = work / "warehouse.duckdb"
            shutil.copyfile(seeded, target)
            try:
                yield str(target)
            finally:
                target.unlink(missing_ok=True)

        try:
            yield copy
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    template = f"sy_plan_timing_seed_{profiles}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        exists = admin.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (template,)
        ).fetchone()
        if not exists or not exists[0]:
            admin.execute(f'CREATE DATABASE "{template}"')
            seed_warehouse(_pg_url(template), profiles)

    @contextmanager
    def clone() -> Iterator[str]:
        name = f"sy_plan_timing_{os.getpid()}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            yield _pg_url(name)
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    yield clone


def _pg_url(database: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("duckdb", "postgres"), default="duckdb")
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sy_timing")
    parser.add_argument("--json", action="store_true", help="print every repetition as JSON")
    args = parser.parse_args()
    plan = bench_plan()
    reps: list[dict[str, dict[str, Any]]] = []
    with seeded_copies(args.engine, args.profiles, args.cache) as fresh:
        for _ in range(args.reps):
            with fresh() as url:
                reps.append(scenario(url, plan, args.profiles // 100))
    if args.json:
        print(json.dumps(reps))
    print(f"{args.engine}, {args.profiles:,} profiles, median of {args.reps} (seconds)")
    print(f"{'run':<12}" + "".join(f"{s:>10}" for s in (*STEPS, "plan")) + f"{'to_send':>10}")
    for label in ("full", "no_change", "incremental"):
        cells = [statistics.median(r[label][s] for r in reps) for s in (*STEPS, "plan")]
        sent = reps[0][label]["to_send"]
        print(f"{label:<12}" + "".join(f"{c:>10.2f}" for c in cells) + f"{sent:>10,}")


if __name__ == "__main__":
    main()
