"""The benchmark's own embedded stack: dev server, simulator and workers on free ports.

Built from `starter.stack` so the benchmark starts processes exactly as `switchyard dev`
does, but never on 7233 / 8787 and never in `.state/` itself, so it can run beside a
developer's stack. Workers are started and stopped one by one: each measurement that cares
about memory gets a fresh one.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from starter.stack import Child, Stack, start_simulator, start_temporal, stop_process
from switchyard.settings import Settings, TemporalSettings

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
# The bench catalog's webhook URLs read this, so they follow the simulator's free port.
WEBHOOK_URL_ENV = "SWITCHYARD_BENCH_WEBHOOK_URL"


def free_port(host: str = "127.0.0.1") -> int:
    # Bound and released at once: a tiny race with other processes, acceptable on a dev box,
    # and the dev server's own start-up check refuses a port that got taken meanwhile.
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def bench_settings(state_dir: Path, warehouse: Path) -> Settings:
    """Settings for the bench stack; delivery tuning still comes from SWITCHYARD_DELIVERY__*."""
    host = "127.0.0.1"
    return Settings(
        state_dir=state_dir,
        catalog_dir=CATALOG_DIR,
        warehouse=str(warehouse),
        temporal=TemporalSettings(
            address=f"{host}:{free_port(host)}",
            ui_url=f"http://{host}:{free_port(host)}",
            task_queue="switchyard-bench",
        ),
        simulator_host=host,
        simulator_port=free_port(host),
    )


@dataclass
class Worker:
    child: Child
    task_queue: str

    @property
    def pid(self) -> int:
        return self.child.process.pid


class BenchStack:
    """Temporal + simulator for the whole benchmark; workers come and go."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = Stack(settings)
        self._workers = 0

    def start(self) -> None:
        start_temporal(self._stack)
        start_simulator(self._stack)

    def stop(self) -> None:
        self._stack.stop()

    def start_worker(self, warehouse: Path, label: str) -> tuple[Worker, Settings]:
        """A fresh worker process on its own task queue, so no other worker takes its tasks.

        Returns the worker and the settings a starter must use to reach it.
        """
        self._workers += 1
        queue = f"switchyard-bench-{self._workers}-{label}"
        settings = self.settings.model_copy(
            update={
                "warehouse": str(warehouse),
                "temporal": self.settings.temporal.model_copy(update={"task_queue": queue}),
            }
        )
        child = self._stack.start(
            f"worker-{label}", [sys.executable, "-m", "worker"], env=settings.as_env()
        )
        worker = Worker(child, queue)
        _wait_for_polling(worker)
        return worker, settings

    def stop_worker(self, worker: Worker) -> None:
        stop_process(worker.child.process)
        if worker.child in self._stack.children:
            self._stack.children.remove(worker.child)

    def check_alive(self) -> None:
        self._stack.check_alive()

    def pids(self) -> list[int]:
        return [child.process.pid for child in self._stack.children]

    def pid_of(self, name: str) -> int | None:
        return next((c.process.pid for c in self._stack.children if c.name == name), None)


def _wait_for_polling(worker: Worker, timeout: float = 60) -> None:
    """Until the worker logs that it polls: a run started earlier would wait for it anyway,
    but inside the measured time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.child.process.poll() is not None:
            raise RuntimeError(f"worker exited early; see {worker.child.log}")
        if worker.child.log.exists() and "worker polling" in worker.child.log.read_text(
            errors="replace"
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker did not start polling in {timeout:.0f}s; see {worker.child.log}")
