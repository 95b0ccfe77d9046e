"""The command line: the Typer app, its options, how it reports errors and prints results."""

from ticketeval.cli.app import app

__all__ = ["app"]
