"""`switchyard dev`: the embedded stack starts, keeps workflows across restarts, stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from starter.stack import port_open
from switchyard.settings import Settings, TemporalSettings
from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_dev(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "starter", "dev"],
        cwd=REPO,
        env={**os.environ, **settings.as_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_until(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def worker_log_says_polling(settings: Settings) -> bool:
    log = settings.state_dir / "logs" / "worker.log"
    return log.exists() and "worker polling" in log.read_text()


async def test_dev_starts_everything_survives_a_restart_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    temporal_port, ui_port, sim_port = free_port(), free_port(), free_port()
    settings = Settings(
        state_dir=tmp_path / "state",
        temporal=TemporalSettings(
            address=f"127.0.0.1:{temporal_port}",
            ui_url=f"http://127.0.0.1:{ui_port}",
            task_queue="dev-stack-test",
        ),
        simulator_port=sim_port,
    )
    dev = start_dev(settings)
    try:
        await asyncio.to_thread(wait_until, lambda: worker_log_says_polling(settings))
        assert port_open("127.0.0.1", sim_port) and port_open("127.0.0.1", ui_port)
        client = await Client.connect(settings.temporal.address)
        # A workflow nobody polls for stays open: it must still be there after a restart.
        await client.start_workflow("Parked", id="parked", task_queue="nobody-polls-this")
        dev.send_signal(signal.SIGINT)
        assert dev.wait(60) == 0
        for port in (temporal_port, sim_port, ui_port):
            assert not port_open("127.0.0.1", port), f"port {port} still open after Ctrl-C"
        assert (settings.state_dir / "temporal.db").exists()

        dev = start_dev(settings)
        await asyncio.to_thread(wait_until, lambda: port_open("127.0.0.1", temporal_port))
        client = await Client.connect(settings.temporal.address)
        description = await client.get_workflow_handle("parked").describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
            dev.wait(60)
