"""The README documents every command, every exit code, and starts with the two commands."""

from __future__ import annotations

import re

import typer.main

from tests.support.helpers import ROOT
from ticketeval.cli.app import app
from ticketeval.errors import ExitCode

README = (ROOT / "README.md").read_text()


def test_every_command_is_in_the_readme() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert {"fetch", "evaluate", "run-local", "history", "describe-sizes", "register"} <= set(
        commands
    )
    for name in commands:
        assert f"ticketeval {name}" in README, name


def test_every_exit_code_is_in_the_readmes_table() -> None:
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", README, flags=re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}


def test_the_readme_starts_with_install_and_run_then_test() -> None:
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert first_block[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e")
    assert "ticketeval evaluate --batch-size 1000 --source demo" in first_block[0]
    assert first_block[1] == ".venv/bin/python -m pytest"


def test_ci_runs_the_readmes_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    install = first_block[0].split(" && ")[1]
    assert install in ci
    assert first_block[1] in ci
