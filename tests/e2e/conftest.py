"""End-to-end fixtures: a real Temporal dev server, the webhook simulator over HTTP, workers
as separate processes (so tests can kill them), and a fresh warehouse per test on each
engine (DuckDB file, Postgres database)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from starter.stack import stop_process
from switchyard.settings import DeliverySettings, Settings, TemporalSettings
from switchyard.simulators.hub import create_app
from switchyard.simulators.server import run_in_thread
from switchyard.warehouse.base import Session
from switchyard.warehouse.factory import open_warehouse
from tests.conftest import BIN, REPO
from workflows import search_attributes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search_attributes.ALL,
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    # Every destination's simulator, as `switchyard dev` serves them (the webhook at the root).
    with run_in_thread(create_app()) as url:
        # The example catalog's URLs read these variables; child workers inherit them.
        os.environ["SWITCHYARD_WEBHOOK_URL"] = url
        os.environ["SWITCHYARD_SIMULATOR_URL"] = url
        yield url


class Simulator:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def configure(self, **config: Any) -> None:
        self.http.put("/_sim/config", json=config).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_sim/stats").json())

    def records(self, hook: str) -> dict[str, dict[str, Any]]:
        return dict(self.http.get(f"/_sim/hooks/{hook}/records").json()["records"])


@pytest.fixture
def simulator(simulator_url: str) -> Iterator[Simulator]:
    sim = Simulator(simulator_url)
    sim.http.post("/_sim/reset").raise_for_status()
    yield sim
    sim.http.close()


@pytest.fixture
def settings(
    tmp_path: Path, dev_env: WorkflowEnvironment, simulator_url: str, warehouse_url: str
) -> Settings:
    """Settings for one test: its own catalog copy, task queue and warehouse (once per
    engine, through `warehouse_url`)."""
    catalog = tmp_path / "catalog"
    shutil.copytree(REPO / "examples" / "catalog", catalog)
    return Settings(
        state_dir=tmp_path / "state",
        catalog_dir=catalog,
        warehouse=warehouse_url,
        temporal=TemporalSettings(
            address=dev_env.client.service_client.config.target_host,
            task_queue=f"e2e-{uuid.uuid4()}",
        ),
        delivery=DeliverySettings(chunk_size=2_000, window=2, heartbeat_timeout_seconds=3),
    )


@contextlib.contextmanager
def session_of(settings: Settings) -> Iterator[Session]:
    """A session on the test's warehouse, from the test process (DuckDB: between runs)."""
    warehouse = open_warehouse(settings.warehouse_url)
    try:
        with warehouse.session() as session:
            yield session
    finally:
        warehouse.close()


def set_batch_size(settings: Settings, size: int, destination: str = "crm_webhook") -> None:
    """Smaller batches than the example's 1,000, so a test run has many of them."""
    path = settings.catalog_dir / "destinations" / f"{destination}.yaml"
    text = path.read_text()
    assert "batch_size: 1000" in text
    path.write_text(text.replace("batch_size: 1000", f"batch_size: {size}"))


def delivered_keys(settings: Settings, sync: str = "high_value_to_crm") -> set[str]:
    """The keys in the sync's delivered state, which must hold each key once."""
    with session_of(settings) as session:
        rows = session.fetchall("SELECT key FROM switchyard.delivered WHERE sync_id = ?", (sync,))
    keys = {r[0] for r in rows}
    assert len(keys) == len(rows), f"{len(rows) - len(keys)} keys acknowledged twice in state"
    return keys


@pytest.fixture
def client(dev_env: WorkflowEnvironment) -> Client:
    return dev_env.client


@dataclass
class Workers:
    """Worker processes started for one test; every one is stopped afterwards."""

    settings: Settings
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=REPO,
            env={**os.environ, **self.settings.as_env()},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            stop_process(process, timeout=10)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(settings, tmp_path)
    yield pool
    pool.stop_all()
