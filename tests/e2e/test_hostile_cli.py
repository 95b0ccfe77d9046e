"""The process under hostile conditions: addresses that never answer, a worker paused for memory,
SIGTERM and Ctrl-C, output off a terminal, completion, a failing flow task (cron's --quiet:
tests/e2e/test_history.py)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.helpers import (
    SIGNAL_EXITS,
    expect_error,
    full_tmpfs,
    ignore_sigint,
    invoke,
    processes_marked,
    restore_default_sigint,
    run_ticketeval,
    runner,
    ticketeval_executable,
)
from ticketeval.cli.app import app
from ticketeval.errors import ExitCode

BOUND = 60  # seconds: what a command that must not hang gets before the test gives up on it


class Silent(threading.Thread):
    """A loopback TCP server that accepts connections and then says nothing (or `says`)."""

    def __init__(self, says: bytes = b"") -> None:
        super().__init__(daemon=True)
        self.says = says
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        self.accepted: list[socket.socket] = []

    def run(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.accepted.append(connection)
            if self.says:
                connection.sendall(self.says)

    def close(self) -> None:
        self.server.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_server(request: pytest.FixtureRequest) -> Iterator[Silent]:
    server = Silent(getattr(request, "param", b""))
    server.start()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("silent_server", "fragments"),
    [
        (b"", ("did not answer as a Dask scheduler within 2 s", "check the host and port")),
        (b"SSH-2.0-OpenSSH_9.6\r\n" * 8, ("does not speak Dask's protocol",)),
        (b"\x10" + b"\x00" * 7 + b"garbage" * 20, ("does not speak Dask's protocol",)),
    ],
    indirect=["silent_server"],
    ids=["says-nothing", "ssh-banner", "dask-like-frame-of-garbage"],
)
def test_an_address_that_is_not_a_dask_scheduler_is_refused_within_the_bound(
    data_dir: Path, silent_server: Silent, fragments: tuple[str, ...]
) -> None:
    # Dask's own Client waits forever on a server that accepts and says nothing: the run must
    # answer by itself, well before the bound (here 2 s rather than the default 10 s).
    result = run_ticketeval(
        "run-local", "--batch-size", "50", "--address", silent_server.address, timeout=BOUND,
        env={"TICKETEVAL_SCHEDULER_TIMEOUT": "2"},
    )  # fmt: skip
    assert result.returncode == ExitCode.NETWORK, result.stderr
    expect_error(result.stderr, None, silent_server.address, *fragments, after_notes=True)
    assert silent_server.accepted  # it did get that far: the port was open
    assert result.stdout == ""


HOG = """
import numpy as np
import psutil

held = []


def model(batch):
    # Fill this worker to 88% of its 512 MiB limit: above Dask's pause threshold (80%), below
    # the one at which the nanny restarts it (95%).
    missing = int(0.88 * 512 * 2**20) - psutil.Process().memory_info().rss
    if missing > 0:
        held.append(np.ones(missing // 8))
    return np.full(len(batch), 86_400.0)
"""


@pytest.mark.usefixtures("without_dashboard")  # as cron runs it
def test_a_worker_paused_for_memory_ends_the_run_in_one_line(
    data_dir: Path, model_dir: Path, process_marker: str
) -> None:
    marker, env = process_marker, dict(os.environ)
    (model_dir / "hog.py").write_text(HOG)
    result = subprocess.run(
        [ticketeval_executable(), "run-local", "--batch-size", "50", "--model", "hog:model"]
        + ["--memory-limit", "512MiB"],
        capture_output=True,
        text=True,
        env=env,
        timeout=BOUND * 2,
        stdin=subprocess.DEVNULL,
        # SIGINT ignored, as in a job a shell started in the background: the watch ends the run
        # all the same (it waited forever).
        preexec_fn=ignore_sigint,
    )
    assert result.returncode == ExitCode.USAGE, result.stderr
    expect_error(
        result.stderr,
        None,
        "the Dask worker paused",
        "--memory-limit 512MiB",
        "give it more",
        after_notes=True,
    )
    assert result.stdout == ""
    _, alive = psutil.wait_procs(processes_marked(marker), timeout=30)
    assert not alive, [process.cmdline() for process in alive]


@pytest.mark.parametrize(("signum", "code", "line"), SIGNAL_EXITS)
def test_a_signal_during_run_local_closes_the_cluster_and_says_so(
    data_dir: Path,
    process_marker: str,
    signum: signal.Signals,
    code: ExitCode,
    line: str,
) -> None:
    marker, env = process_marker, dict(os.environ)
    process = subprocess.Popen(
        [ticketeval_executable(), "run-local", "--batch-size", "200"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=restore_default_sigint,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None

    def read() -> None:
        assert process.stderr is not None
        for text in process.stderr:
            lines.put(text.rstrip("\n"))
        lines.put("")  # end of stream

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        # The scheduler line comes once the cluster is up: the moment to stop the run.
        while not (seen and seen[-1].startswith("Dask scheduler tcp://")):
            seen.append(lines.get(timeout=BOUND))
            assert seen[-1] or process.poll() is None, seen
        assert seen[-1].endswith("/status")  # with the dashboard's link
        assert processes_marked(marker)  # the cluster's processes, to be stopped
        process.send_signal(signum)
        process.wait(timeout=BOUND)  # stderr is the reader thread's alone
        assert process.stdout is not None
        stdout = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    while (text := lines.get(timeout=BOUND)) != "":
        seen.append(text)
    after = seen[seen.index(next(x for x in seen if x.startswith("Dask scheduler"))) + 1 :]
    assert process.returncode == code, seen
    assert not any("Traceback" in text for text in seen), seen
    assert after == [line], seen
    assert stdout == ""  # no half-written table
    _, alive = psutil.wait_procs(processes_marked(marker), timeout=30)
    assert not alive, [process.cmdline() for process in alive]


# cron's --quiet (nothing printed on success, the trial in the log file and the history): one
# of the processes of tests/e2e/test_history.py::
# test_ten_processes_at_once_record_ten_trials_none_twice.


def test_off_a_terminal_tables_are_never_cut_whatever_columns_says(
    data_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "ticketeval.log"
    result = run_ticketeval(
        "evaluate", "--batch-size", "100", "--seed", "3", "--log-file", str(log),
        env={"COLUMNS": "40"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(log.read_text().splitlines()[-1].split(" ", 1)[1])
    assert "…" not in result.stdout
    assert f"Trial {summary['id']}" in result.stdout
    assert f" {summary['data']['metrics']['MSE']:,.0f} " in result.stdout
    history = run_ticketeval("history", env={"COLUMNS": "40"})
    assert "…" not in history.stdout
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", history.stdout), history.stdout


def test_shell_completion_is_offered() -> None:
    listed = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in listed.stdout
    assert "--show-completion" in listed.stdout
    # Typer finds the shell from the parent processes (a test runner has none it knows) unless
    # told to take it as the option's value, as its own tests do.
    script = run_ticketeval(
        "--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    )
    assert script.returncode == 0, script.stderr
    assert "complete" in script.stdout and "ticketeval" in script.stdout


def explode() -> None:
    raise RuntimeError("a bug, not a condition")


def failing_flow(**_: object) -> object:
    from prefect import Flow, task

    with Flow("failing") as built:
        task(explode, name="explode")()
    return built


@pytest.mark.usefixtures("without_dashboard")
def test_a_flow_task_failing_unexpectedly_exits_1_naming_it(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The flow runs on a real LocalCluster: its worker imports this module to run `explode`.
    from ticketeval.pipeline import flow

    monkeypatch.setattr(flow, "build_flow", failing_flow)
    result = runner.invoke(app, ["run-local", "--batch-size", "50", "--workers", "1"])
    assert result.exit_code == ExitCode.FAILED, result.output
    expect_error(
        result.stderr,
        None,
        "task 'explode' failed",
        "RuntimeError: a bug, not a condition",
        after_notes=True,
    )
    assert result.stdout == ""


def test_a_log_file_that_fails_later_is_said_once_and_the_trial_is_kept(
    data_dir: Path, tmp_path: Path
) -> None:
    # A regular file on a full file system (a device such as /dev/full is refused up front).
    with full_tmpfs(tmp_path / "full") as full:
        log = full / "run.log"
        result = run_ticketeval(
            "evaluate", "--quiet", "--batch-size", "50", "--log-file", str(log), "--json"
        )
    assert result.returncode == 0, result.stderr
    expect_error(
        result.stderr,
        None,
        f"--log-file {log}",
        "No space left on device",
        "history",
        after_notes=True,
    )
    trial = json.loads(result.stdout)
    listed = invoke("history", "--json")  # in-process: what was recorded is the point
    assert [row["id"] for row in json.loads(listed.stdout)] == [trial["id"]]
