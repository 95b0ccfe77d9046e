"""Issue 21: Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or SIGTERM to the
group (systemd's KillMode=control-group) while a task runs: the CLI's one line, no worker
traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from tests.support.helpers import SIGNAL_EXITS, restore_default_sigint, start_ticketeval

SLEEPING_MODEL = """
import os
import time
from pathlib import Path


def model(batch):
    (Path(os.environ["SLEEP_DIR"]) / "started").write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)


def marker(batch):
    # Says a worker is scoring, then scores: the signal lands while Dask's loop runs.
    from ticketeval.scoring.models import heuristic_model

    (Path(os.environ["SLEEP_DIR"]) / "started").write_text(str(os.getpid()))
    return heuristic_model(batch)
"""


@pytest.mark.parametrize(
    "command",
    [
        # run-local with Dask's dashboard (the default), the backtests without it, as cron
        # runs them: both ways of closing a cluster, at a cluster's start-up less.
        ["run-local", "--batch-size", "100", "--model", "sleeper:model"],
        ["backtest", "--every", "week", "--model", "sleeper:model", "--no-dashboard"],
        ["backtest", "--every", "1d", "--model", "sleeper:marker", "--no-dashboard"],
    ],
    ids=["run-local-in-a-task", "backtest-in-a-task", "backtest-between-tasks"],
)
@pytest.mark.parametrize(("signum", "code", "line"), SIGNAL_EXITS)
def test_a_signal_to_the_group_during_a_task_prints_no_worker_traceback(
    data_dir: Path,
    model_dir: Path,
    tmp_path: Path,
    command: list[str],
    signum: int,
    code: int,
    line: str,
) -> None:
    # The worker is forked from ticketeval's process: it inherits the CLI's signal handlers,
    # whose exception, raised inside Dask's event loop, printed a 30-line traceback.
    (model_dir / "sleeper.py").write_text(SLEEPING_MODEL)
    started = tmp_path / "started"
    process = start_ticketeval(
        command,
        env={"SLEEP_DIR": str(tmp_path)},
        start_new_session=True,
        preexec_fn=restore_default_sigint,
    )
    try:
        for _ in range(3000):  # bounded: about two minutes of polling
            # With its pid in it: the file exists a moment before the pid is written.
            if (started.exists() and started.read_text()) or process.poll() is not None:
                break
            time.sleep(0.04)
        assert started.exists(), process.communicate(timeout=60)
        os.killpg(process.pid, signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == line, stderr
    assert (
        not psutil.pid_exists(int(started.read_text()))
        or psutil.Process(int(started.read_text())).status() == psutil.STATUS_ZOMBIE
    )
