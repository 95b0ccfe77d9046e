"""Hostile input where the process is the point (a FIFO, a model printing to stdout), and the
real file's cache reused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.helpers import invoke, run_ticketeval, snapshot
from ticketeval.errors import ExitCode


def test_fetch_refuses_a_fifo_instead_of_waiting_for_a_writer(
    data_dir: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "log.csv"
    os.mkfifo(fifo)
    before = snapshot(data_dir)
    # The process is the point: a read that blocks would hang here until the timeout fails it.
    result = run_ticketeval("fetch", "--source", str(fifo), timeout=120)
    assert result.returncode == ExitCode.DATA, result.stderr
    assert result.stderr.strip() == (
        f"Error: {fifo} is a named pipe (FIFO): give a regular .zip or .csv file of the event "
        "log, or 'demo'."
    )
    assert snapshot(data_dir) == before


def test_a_printing_model_leaves_stdout_valid_json(data_dir: Path, model_dir: Path) -> None:
    (model_dir / "chatty.py").write_text(
        "print('loading chatty')\n\n"
        "def model(batch):\n    print('predicting', len(batch))\n"
        "    return [3600.0] * len(batch)\n"
    )
    result = run_ticketeval(
        "evaluate", "--source", "demo", "--batch-size", "10", "--model", "chatty:model", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "chatty:model"
    assert "loading chatty" in result.stderr and "predicting 10" in result.stderr


@pytest.mark.usefixtures("real_data_dir")
def test_a_plain_fetch_reuses_a_cache_of_ucis_data() -> None:
    # The cache `fetch --source` left from the real file (copied: test_core.py checks the parse).
    # Offline (no URL is reachable from the tests): only a reuse can succeed.
    again = invoke("fetch", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["reused"] is True
