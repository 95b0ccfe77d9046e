"""The installed executable: `python -m ticketeval`, and the quick start as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import run_ticketeval, table_value
from ticketeval import __version__
from ticketeval.history import store as history
from ticketeval.settings import load_settings


def test_python_dash_m_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ticketeval", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ticketeval {__version__}"


def test_the_installed_executable_runs_the_readmes_quick_start(isolated_environment: Path) -> None:
    """Exit code 0 from the installed executable, with the README's first command."""
    result = run_ticketeval("evaluate", "--batch-size", "1000", "--source", "demo")
    assert result.returncode == 0, result.stderr
    assert "Fetched 20,000 events of" in result.stderr
    assert table_value(result.stdout, "num_obs") == "1,000"
    # Not a terminal: no colour codes in what cron would mail.
    assert "\x1b[" not in result.stdout + result.stderr
    as_json = run_ticketeval(
        "evaluate", "--batch-size", "100", "--seed", "5", "--json", "--source", "demo"
    )
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert (summary["data"]["num_obs"], summary["seed"]) == (100, 5)
    recorded = history.read_trials(load_settings().history)
    assert [row.num_obs for row in recorded] == [1000, 100]
