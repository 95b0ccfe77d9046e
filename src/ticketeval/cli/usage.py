"""Usage errors (a bad option value, an unknown option, a missing argument) in one line, like
every other error, instead of Click's multi-line box: a TyperGroup whose `main` runs Typer's in
non-standalone mode (Click's public switch) and prints the usage error itself."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup


def _fail(message: str, code: int) -> NoReturn:
    from rich.text import Text

    from ticketeval.cli.render import stderr

    stderr.print(Text.assemble(("Error: ", "bold red"), " ".join(message.split())))
    sys.exit(code)


class OneLineErrorsGroup(TyperGroup):
    """The app's group: Click's usage errors become `Error: ...` on one line, exit code 2."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(
                args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
            )
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as error:  # Click's own errors derive from it in Typer
            if type(error).__name__ == "NoArgsIsHelpError":
                error.show()  # type: ignore[attr-defined]  # `ticketeval` alone: the help
                sys.exit(error.exit_code)
            context = getattr(error, "ctx", None)  # a usage error knows its command
            hint = f" (see `{context.command_path} --help`)" if context is not None else ""
            _fail(f"{error.format_message().rstrip('.')}{hint}.", error.exit_code)
        except typer.Abort:
            _fail("aborted.", 1)
        sys.exit(code if isinstance(code, int) else 0)
