"""Issue 21, trials kept, end to end: a full disk under the history still prints the trial (exit 8;
a root-only tmpfs); a failed backtest leaves no per-event results of trials never recorded; a
spooled backtest exits 7 in one line (both on a Dask cluster)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from tests.support.helpers import full_tmpfs, invoke
from ticketeval.data.cache import read_cache_info
from ticketeval.errors import ExitCode
from ticketeval.history.spool import spool_for, spooled_files

pytestmark = pytest.mark.usefixtures("without_dashboard")  # the cluster is not the point here

# Nothing listens on port 1 of the loopback: the connection is refused at once.
UNREACHABLE = "postgresql://ada@127.0.0.1:1/te"
EVALUATE = ("evaluate", "--batch-size", "100", "--seed", "1")


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("Error: ")]


# --- 4. a computed trial is always printed, on a full disk ------------------------------------


def test_a_full_disk_under_the_history_prints_the_trial(data_dir: Path, tmp_path: Path) -> None:
    with full_tmpfs(tmp_path / "full") as full:
        result = invoke(*EVALUATE, "--json", env={"TICKETEVAL_HISTORY_DIR": str(full)})
        assert result.exit_code == ExitCode.NOT_KEPT, result.output
        summary = json.loads(result.stdout)
        assert summary["data"]["num_obs"] == 100
        assert "Per-event results not kept" in result.stderr
        [line] = error_lines(result.stderr)
        assert summary["id"] in line


# --- 5 and 6. backtests ------------------------------------------------------------------------

FAILING_LATE = """
import os

import numpy as np
import pandas as pd


def model(batch):
    if batch["sys_updated_at"].max() > pd.Timestamp(os.environ["FAIL_AFTER"]):
        raise RuntimeError("a late period fails")
    return np.full(len(batch), 3600.0)
"""


def test_a_failed_backtest_leaves_no_results_and_evicts_none(
    data_dir: Path, model_dir: Path
) -> None:
    assert invoke(*EVALUATE, env={"TICKETEVAL_RESULTS_KEEP": "2"}).exit_code == 0
    [kept] = list((data_dir / "results").glob("*.parquet"))
    info = read_cache_info(data_dir)
    assert info is not None and info.first_event and info.last_event
    first, last = pd.Timestamp(info.first_event), pd.Timestamp(info.last_event)
    (model_dir / "late.py").write_text(FAILING_LATE)
    result = invoke(
        "backtest",
        "--every",
        "30d",
        "--model",
        "late:model",
        "--workers",
        "1",
        env={"FAIL_AFTER": str(first + (last - first) / 2), "TICKETEVAL_RESULTS_KEEP": "2"},
    )
    assert result.exit_code != 0, result.output
    assert list((data_dir / "results").glob("*.parquet")) == [kept]


def test_a_backtest_whose_history_is_unreachable_exits_7_in_one_line(data_dir: Path) -> None:
    result = invoke(
        "backtest",
        "--every",
        "month",
        "--workers",
        "1",
        "--json",
        env={"TICKETEVAL_HISTORY_URL": UNREACHABLE, "TICKETEVAL_RESULTS_KEEP": "0"},
    )
    assert result.exit_code == ExitCode.SPOOLED, result.output
    spooled = json.loads(result.stdout)["recorded"]["spooled"]
    assert spooled > 0
    [line] = error_lines(result.stderr)
    assert f"{spooled} of" in line and "spool" in line
    assert len(spooled_files(spool_for(data_dir / "spool", UNREACHABLE))) == spooled
    assert os.environ.get("TICKETEVAL_HISTORY_URL") is None
