"""Issue 21, trials kept: a spooled trial goes only to the history it was meant for; a computed
trial is always printed, whatever could not keep it (exit 8); an unusable --report is refused
before any scoring. (A full disk and backtests: tests/e2e/test_hostile3_kept.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.helpers import expect_error, invoke
from ticketeval.errors import ExitCode
from ticketeval.history.spool import spool_for, spooled_files

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


def test_an_unwritable_report_is_refused_before_scoring(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    expect_error(invoke(*EVALUATE, "--report", "afile/r.html"), 2, "--report")
    assert json.loads(invoke("history", "--json").stdout) == []
