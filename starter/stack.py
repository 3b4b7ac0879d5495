"""The embedded stack: Temporal dev server, destination simulator and worker, as child processes.

Started in dependency order, each checked for readiness, stopped in reverse order. The
dev server keeps its SQLite file in the state folder, so workflows survive a restart.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from switchyard.settings import Settings
from workflows import search_attributes

BIN = Path(sys.executable).parent
PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    pass


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    settings: Settings
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        logs = self.settings.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        process = subprocess.Popen(
            argv,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.settings.as_env(), **(env or {})},
            # Own process group: a Ctrl-C in the terminal reaches us, and we stop children
            # in order rather than all at once.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def stop(self, timeout: float = 15) -> None:
        for child in reversed(self.children):
            stop_process(child.process, timeout)
        self.children.clear()

    def check_alive(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                raise StackError(
                    f"{child.name} exited with code {child.process.returncode}; see {child.log}"
                )


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM us if the stack's process dies without cleaning up."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def wait_for_port(child: Child, host: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if child.process.poll() is not None:
            raise StackError(f"{child.name} exited early; see {child.log}")
        if time.monotonic() > deadline:
            raise StackError(f"{child.name} did not open {host}:{port} in {timeout:.0f}s")
        time.sleep(0.2)


def temporal_argv(settings: Settings) -> list[str]:
    host, port = settings.temporal.address.rsplit(":", 1)
    ui_port = settings.temporal.ui_url.rsplit(":", 1)[1]
    argv = [
        str(BIN / "temporal"),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        port,
        "--ui-port",
        ui_port,
        "--db-filename",
        str(settings.state_dir / "temporal.db"),
        "--namespace",
        settings.temporal.namespace,
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",
    ]
    for key in search_attributes.ALL:
        argv += ["--search-attribute", f"{key.name}=Keyword"]
    return argv


def start_temporal(stack: Stack) -> None:
    settings = stack.settings
    host, port = settings.temporal.address.rsplit(":", 1)
    if port_open(host, int(port)):
        raise StackError(f"something already listens on {settings.temporal.address}")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    child = stack.start("temporal", temporal_argv(settings))
    wait_for_port(child, host, int(port))


def start_simulator(stack: Stack) -> None:
    settings = stack.settings
    if port_open(settings.simulator_host, settings.simulator_port):
        raise StackError(f"something already listens on {settings.simulator_url}")
    argv = [
        sys.executable,
        "-m",
        "switchyard.simulators.hub",
        "--host",
        settings.simulator_host,
        "--port",
        str(settings.simulator_port),
    ]
    child = stack.start("simulator", argv)
    wait_for_port(child, settings.simulator_host, settings.simulator_port)


def start_worker(stack: Stack) -> Child:
    return stack.start("worker", [sys.executable, "-m", "worker"])


@contextlib.contextmanager
def embedded_stack(settings: Settings, simulator: bool = True) -> Iterator[Stack]:
    stack = Stack(settings)
    # A plain SIGTERM would end us without running `finally`; make it unwind like Ctrl-C.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if in_main and previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        start_temporal(stack)
        if simulator:
            start_simulator(stack)
        start_worker(stack)
        yield stack
    finally:
        stack.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
