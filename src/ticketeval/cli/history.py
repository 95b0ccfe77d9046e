"""`ticketeval history-copy`: the trials of one history copied into another.

A plain function with its arguments; `app.py` adds it to the app.
"""

import json
from typing import Annotated

import typer

from ticketeval import core
from ticketeval.cli.options import JsonOption
from ticketeval.cli.render import Reporter
from ticketeval.cli.runtime import reported_errors, settings_for


def history_copy(
    source: Annotated[
        str,
        typer.Argument(
            help="The history to copy: a SQLite file's path, or a history URL.",
            show_default=False,
        ),
    ],
    target: Annotated[
        str | None,
        typer.Argument(
            help="The history to copy into: a SQLite file's path, or a history URL. "
            "[default: TICKETEVAL_HISTORY_URL, else this machine's history]",
            show_default=False,
        ),
    ] = None,
    *,
    json_output: JsonOption = False,
) -> None:
    """Copy every trial of one history into another, e.g. this machine's into a team's server.

    Copying again adds nothing.

    \b
    Example (with TICKETEVAL_HISTORY_URL set):
      ticketeval history-copy ~/.local/share/ticketeval/history.sqlite
    """
    reporter = Reporter()
    with reported_errors(reporter):
        copied = core.copy_history(settings_for(None), source, target)
        if json_output:
            print(json.dumps(copied))
            return
        print(f"Copied {copied['added']} trial(s) from {copied['from']} to {copied['to']}.")
