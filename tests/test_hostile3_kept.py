"""Issue 21, trials kept: a spooled trial goes only to the history it was meant for; a computed
trial is always printed, whatever could not keep it (exit 8); a failed backtest leaves no
per-event results of trials never recorded; a spooled backtest exits 7 in one line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ticketeval.data.cache import read_cache_info
from ticketeval.errors import ExitCode
from ticketeval.history.spool import spooled_files
from ticketeval.history.spools import spool_for

from .conftest import expect_error, invoke

# Nothing listens on port 1 of the loopback: the connection is refused at once.
UNREACHABLE = "postgresql://ada@127.0.0.1:1/te"
EVALUATE = ("evaluate", "--batch-size", "100", "--seed", "1")


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("Error: ")]


# --- 3. a spool per history --------------------------------------------------------------------


def test_a_trial_spooled_for_one_history_is_never_sent_to_another(data_dir: Path) -> None:
    spooled = invoke(*EVALUATE, "--json", env={"TICKETEVAL_HISTORY_URL": UNREACHABLE})
    assert spooled.exit_code == ExitCode.SPOOLED, spooled.output
    first = json.loads(spooled.stdout)["id"]
    assert len(spooled_files(spool_for(data_dir / "spool", UNREACHABLE))) == 1

    recorded = invoke(*EVALUATE, "--json")  # the default history, B
    assert recorded.exit_code == 0, recorded.output
    assert "Sent" not in recorded.stderr
    rows = json.loads(invoke("history", "--json").stdout)
    assert [row["id"] for row in rows] == [json.loads(recorded.stdout)["id"]]
    assert first not in {row["id"] for row in rows}

    listed = invoke("history")
    assert f"1 trial(s) wait in the spool for {UNREACHABLE}" in listed.stderr
    # The same history with a password (changed or not) has the same spool.
    with_password = UNREACHABLE.replace("ada@", "ada:s3cret@")
    assert spool_for(data_dir / "spool", with_password) == spool_for(
        data_dir / "spool", UNREACHABLE
    )


# --- 4. a computed trial is always printed -----------------------------------------------------


def test_a_history_dir_naming_a_file_still_prints_the_trial(data_dir: Path, tmp_path: Path) -> None:
    in_the_way = tmp_path / "not-a-dir"
    in_the_way.write_text("x")
    env = {"TICKETEVAL_HISTORY_DIR": str(in_the_way)}
    result = invoke(*EVALUATE, "--json", env=env)
    assert result.exit_code == ExitCode.NOT_KEPT, result.output
    summary = json.loads(result.stdout)
    assert summary["data"]["metrics"]["MAE"] > 0 and summary["recorded"]["kept"] is False
    [line] = error_lines(result.stderr)
    assert summary["id"] in line and "keep that output" in line
    assert "Per-event results not kept" in result.stderr
    assert in_the_way.read_text() == "x"

    table = invoke(*EVALUATE, env=env)
    assert table.exit_code == ExitCode.NOT_KEPT
    assert "MAE" in table.stdout and len(error_lines(table.stderr)) == 1


@contextlib.contextmanager
def full_tmpfs(path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs at `path`, filled to the last byte (root only)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with contextlib.suppress(OSError), open(path / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_full_disk_under_the_history_prints_the_trial(data_dir: Path, tmp_path: Path) -> None:
    with full_tmpfs(tmp_path / "full") as full:
        result = invoke(*EVALUATE, "--json", env={"TICKETEVAL_HISTORY_DIR": str(full)})
        assert result.exit_code == ExitCode.NOT_KEPT, result.output
        summary = json.loads(result.stdout)
        assert summary["data"]["num_obs"] == 100
        assert "Per-event results not kept" in result.stderr
        [line] = error_lines(result.stderr)
        assert summary["id"] in line


def test_an_unwritable_report_is_refused_before_scoring(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    expect_error(invoke(*EVALUATE, "--report", "afile/r.html"), 2, "--report")
    assert json.loads(invoke("history", "--json").stdout) == []


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


@pytest.mark.e2e
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


@pytest.mark.e2e
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
