"""Serving a simulator: as its own process (`serve`) or on a background thread for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.types import ASGIApp


def uvicorn_config(app: ASGIApp, host: str, port: int, **overrides: object) -> uvicorn.Config:
    """Lean serving: no access log; httptools and uvloop when installed, else h11 and asyncio."""
    options: dict[str, object] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "http": "auto",
        "loop": "auto",
        "lifespan": "on",
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve in the foreground until interrupted (the simulators' `python -m` entry points)."""
    uvicorn.Server(uvicorn_config(app, host, port)).run()


@contextmanager
def run_in_thread(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    health_path: str | None = "/healthz",
    startup_timeout: float = 10.0,
) -> Iterator[str]:
    """Serve `app` with uvicorn on a daemon thread; yields the base URL once it answers.

    `port=0` picks a free port. The socket is bound here, before the thread starts, so there is
    no window in which another process can take the port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    base_url = (
        f"http://[{host}]:{bound_port}"
        if family == socket.AF_INET6
        else (f"http://{host}:{bound_port}")
    )
    # A request parked in a simulated timeout must not hold up the test's teardown.
    server = uvicorn.Server(uvicorn_config(app, host, bound_port, timeout_graceful_shutdown=1))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"simulator:{bound_port}", daemon=True
    )
    thread.start()
    try:
        _wait_until_up(server, thread, base_url, health_path, startup_timeout)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        sock.close()


def _wait_until_up(
    server: uvicorn.Server,
    thread: threading.Thread,
    base_url: str,
    health_path: str | None,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"simulator at {base_url} exited during startup")
        if time.monotonic() > deadline:
            raise TimeoutError(f"simulator at {base_url} did not start within {timeout}s")
        time.sleep(0.005)
    if health_path is not None:
        response = httpx.get(base_url + health_path, timeout=timeout)
        response.raise_for_status()
