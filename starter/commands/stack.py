"""`switchyard dev`, `worker`, `simulator`: the processes of the embedded stack."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.console import Console

from starter.stack import StackError, embedded_stack
from switchyard.settings import Settings

console = Console()


def dev(
    simulator: Annotated[
        bool, typer.Option(help="Also start the local destination simulator.")
    ] = True,
) -> None:
    """Run the embedded stack until Ctrl-C: Temporal dev server (UI on :8233), simulator, worker.

    The dev server keeps its SQLite file in the state folder (.state/ by default), so
    workflows survive a restart. Logs go to .state/logs/.
    """
    settings = Settings()
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        with embedded_stack(settings, simulator=simulator) as stack:
            console.print(f"Temporal   {settings.temporal.address}  UI {settings.temporal.ui_url}")
            if simulator:
                console.print(f"simulator  {settings.simulator_url}")
            console.print(f"worker     task queue {settings.temporal.task_queue}")
            console.print(f"logs       {settings.state_dir / 'logs'}   (Ctrl-C stops everything)")
            while not stopping.wait(1):
                stack.check_alive()
            console.print("stopping…")
    except StackError as error:
        console.print(f"[red]stack failed:[/red] {error}")
        raise typer.Exit(1) from None


def worker() -> None:
    """Run a worker against the configured Temporal server (more than one may run)."""
    import worker as worker_module

    worker_module.main()


def simulator(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Run every destination simulator on one port (/<kind>/...; the webhook also at /)."""
    from switchyard.simulators import hub

    settings = Settings()
    hub.main(
        ["--host", host or settings.simulator_host, "--port", str(port or settings.simulator_port)]
    )


def register(app: typer.Typer) -> None:
    app.command()(dev)
    app.command()(worker)
    app.command()(simulator)
