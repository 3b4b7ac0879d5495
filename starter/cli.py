"""The operator CLI: `switchyard --help` lists what it can do."""

from __future__ import annotations

import os
import sys

import click
import typer

from starter.commands import catalog, demo, schedules, seed, stack, sync

app = typer.Typer(
    name="switchyard",
    help="Durable, contract-governed delivery of audiences and traits to destinations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(catalog.app, name="catalog")
app.add_typer(sync.app, name="sync")
app.add_typer(schedules.app, name="schedules")
seed.register(app)
stack.register(app)
demo.register(app)


def main() -> None:
    """Run the CLI and leave with its exit code, whatever the interpreter does at exit.

    A process that created a Temporal client can crash during interpreter teardown after
    the command succeeded (sdk-python #300); exiting directly keeps the command's own code.
    """
    try:
        code = app(standalone_mode=False) or 0
    except click.exceptions.Exit as exit_:
        code = exit_.exit_code
    except click.exceptions.Abort:
        code = 130
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code) if isinstance(code, int) else 0)
