"""The operator CLI: `switchyard --help` lists what it can do."""

from __future__ import annotations

import typer

from starter.commands import catalog

app = typer.Typer(
    name="switchyard",
    help="Durable, contract-governed delivery of audiences and traits to destinations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(catalog.app, name="catalog")


def main() -> None:
    app()
