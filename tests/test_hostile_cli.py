"""The process and the command line under hostile conditions: addresses that never answer, memory
limits that cannot work, SIGTERM and Ctrl-C, cron's --quiet and --log-file, output off a
terminal, --help, register's options, and a flow task that fails.

Every failure must be one line naming what is wrong and what to do, with its documented exit
code (README, errors.ExitCode), nothing half-written and no process left behind. Real parts: the
installed executable, loopback TCP servers, a real LocalCluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from ticketeval.cli.app import app
from ticketeval.errors import DataError, ExitCode

from .conftest import run_ticketeval, ticketeval_executable

runner = CliRunner()
MARKER = "TICKETEVAL_HOSTILE_MARKER"  # in a child's environment, to find all its descendants
BOUND = 60  # seconds: what a command that must not hang gets before the test gives up on it


# --- Helpers -----------------------------------------------------------------------------------


def one_error_line(stderr: str, *fragments: str) -> str:
    """stderr ends with exactly one `Error: ` line naming `fragments`, and has no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.strip().splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, stderr
    assert stderr.strip().splitlines()[-1] == errors[0], stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


@pytest.fixture
def marked() -> Iterator[tuple[dict[str, str], str]]:
    """The test's environment plus a unique marker every descendant process inherits."""
    marker = uuid.uuid4().hex
    yield {**os.environ, MARKER: marker}, marker
    for process in processes_marked(marker):  # whatever the test's outcome
        process.kill()


def processes_marked(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == marker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


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


# --- --address: bounded, whatever is listening -------------------------------------------------


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
    one_error_line(result.stderr, silent_server.address, *fragments)
    assert silent_server.accepted  # it did get that far: the port was open
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (["--address", "tcp://localhost:99999"], ("--address 'tcp://localhost:99999'",)),
        (["--address", "tcp://[::1"], ("--address 'tcp://[::1'",)),
        (["--address", "tls://host:8786"], ("tcp://host:8786",)),
        (["--memory-limit", "nonsense"], ("--memory-limit 'nonsense' is not a size",)),
        (["--memory-limit", "-5"], ("--memory-limit '-5' is not a size",)),
        (["--memory-limit", "1KiB"], ("--memory-limit 1KiB is below the minimum of 256 MiB",)),
        (["--memory-limit", "255MiB"], ("below the minimum",)),
        (
            ["--address", "tcp://127.0.0.1:8786", "--memory-limit", "2GiB"],
            ("--memory-limit shape the LocalCluster ticketeval starts",),
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_cluster_options_that_cannot_work_are_refused_before_anything_runs(
    data_dir: Path, arguments: list[str], fragments: tuple[str, ...]
) -> None:
    result = runner.invoke(app, ["run-local", "--batch-size", "50", *arguments])
    assert result.exit_code == ExitCode.USAGE, result.output
    one_error_line(result.stderr, *fragments)
    assert result.stdout == ""


def test_a_memory_limit_at_the_minimum_is_accepted() -> None:
    from ticketeval.pipeline.cluster import MIN_MEMORY_LIMIT, ClusterOptions, memory_limit_bytes

    assert memory_limit_bytes("256MiB") == MIN_MEMORY_LIMIT
    assert memory_limit_bytes("auto") is None
    ClusterOptions(memory_limit="2GiB")
    ClusterOptions(address="tcp://127.0.0.1:8786")


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


def test_a_worker_paused_for_memory_ends_the_run_in_one_line(
    data_dir: Path, model_dir: Path, marked: tuple[dict[str, str], str]
) -> None:
    env, marker = marked
    (model_dir / "hog.py").write_text(HOG)
    result = subprocess.run(
        [ticketeval_executable(), "run-local", "--batch-size", "50", "--model", "hog:model"]
        + ["--memory-limit", "512MiB"],
        capture_output=True,
        text=True,
        env=env,
        timeout=BOUND * 2,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == ExitCode.USAGE, result.stderr
    one_error_line(result.stderr, "the Dask worker paused", "--memory-limit 512MiB", "give it more")
    assert result.stdout == ""
    _, alive = psutil.wait_procs(processes_marked(marker), timeout=30)
    assert not alive, [process.cmdline() for process in alive]


# --- Signals -----------------------------------------------------------------------------------


def restore_default_sigint() -> None:
    # A child of a shell started in the background ignores SIGINT; a test runner may too.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("signum", "code", "line"),
    [
        (signal.SIGTERM, ExitCode.TERMINATED, "Error: terminated."),
        (signal.SIGINT, ExitCode.INTERRUPTED, "Error: interrupted."),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_during_run_local_closes_the_cluster_and_says_so(
    data_dir: Path,
    marked: tuple[dict[str, str], str],
    signum: signal.Signals,
    code: ExitCode,
    line: str,
) -> None:
    env, marker = marked
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
    assert after == [line], seen
    assert stdout == ""  # no half-written table
    _, alive = psutil.wait_procs(processes_marked(marker), timeout=30)
    assert not alive, [process.cmdline() for process in alive]


# --- Cron: --quiet, --log-file, output off a terminal ------------------------------------------


def test_quiet_prints_nothing_on_success_and_the_log_keeps_the_trial(
    data_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "ticketeval.log"
    result = run_ticketeval(
        "run-local", "--quiet", "--batch-size", "100", "--log-file", str(log),
        "--fail-if-mae-above", "1e12",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")  # cron sends no mail
    summary = json.loads(log.read_text().splitlines()[-1].split(" ", 1)[1])
    assert summary["data"]["num_obs"] == 100
    listed = run_ticketeval("history", "--json")
    assert [row["id"] for row in json.loads(listed.stdout)] == [summary["id"]]


def test_quiet_still_says_when_the_mae_is_above_the_limit(data_dir: Path) -> None:
    result = run_ticketeval(
        "evaluate", "--quiet", "--batch-size", "100", "--fail-if-mae-above", "1"
    )
    assert result.returncode == ExitCode.MAE_ABOVE_LIMIT, result.stderr
    assert result.stdout == ""
    one_error_line(result.stderr, "is above the limit of 1 s")


@pytest.mark.parametrize("place", ["missing-directory", "a-directory"])
def test_a_log_file_that_cannot_be_opened_is_refused_first(
    data_dir: Path, tmp_path: Path, place: str
) -> None:
    path = tmp_path / "no" / "such" / "x.log" if place == "missing-directory" else tmp_path
    result = runner.invoke(app, ["evaluate", "--batch-size", "50", "--log-file", str(path)])
    assert result.exit_code == ExitCode.USAGE, result.output
    if place == "missing-directory":
        one_error_line(result.stderr, f"--log-file {path}", "No such file or directory")
    else:  # refused by the output guard, before any open
        one_error_line(result.stderr, str(path), "is a directory", "--log-file")
    assert result.stdout == ""
    assert json.loads(runner.invoke(app, ["history", "--json"]).stdout) == []  # nothing ran


def test_a_log_file_that_fails_later_is_said_once_and_the_trial_is_kept(
    data_dir: Path, tmp_path: Path
) -> None:
    # A regular file on a full file system (a device such as /dev/full is refused up front).
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with contextlib.suppress(OSError), open(full / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        log = full / "run.log"
        result = run_ticketeval(
            "evaluate", "--quiet", "--batch-size", "50", "--log-file", str(log), "--json"
        )
    finally:
        subprocess.run(["umount", str(full)], check=True)
    assert result.returncode == 0, result.stderr
    one_error_line(result.stderr, f"--log-file {log}", "No space left on device", "history")
    trial = json.loads(result.stdout)
    listed = run_ticketeval("history", "--json")
    assert [row["id"] for row in json.loads(listed.stdout)] == [trial["id"]]


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


# --- --help and completion ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["evaluate"], ["run-local"], ["register"]])
def test_help_shows_no_value_after_a_flag(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout
    assert "--help" in result.stdout
    if command:
        assert re.search(r"--json\s+Print JSON", result.stdout), result.stdout
        assert "<int>" in result.stdout or "<str>" in result.stdout  # values keep their type


def test_shell_completion_is_offered() -> None:
    listed = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in listed.stdout
    assert "--show-completion" in listed.stdout
    script = run_ticketeval("--show-completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "complete" in script.stdout and "ticketeval" in script.stdout


def test_help_imports_none_of_the_heavy_libraries() -> None:
    heavy = {"prefect", "dask", "distributed", "pandas", "pyarrow", "sklearn"}
    code = (
        "import sys\n"
        "from ticketeval.cli.app import app\n"
        "try:\n    app(['--help'], prog_name='ticketeval')\n"
        "except SystemExit:\n    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(heavy)!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=BOUND
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# --- register ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--batch-size", "-7"], "--batch-size must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--schedule-hours", "nan"], "--schedule-hours must be a positive number"),
        (["--schedule-hours", "inf"], "--schedule-hours must be a positive number"),
        (["--schedule-hours", "-1"], "--schedule-hours must be a positive number"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_register_refuses_values_that_cannot_work(arguments: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["register", "--dry-run", "--project", "p", *arguments])
    assert result.exit_code == ExitCode.USAGE, result.output
    one_error_line(result.stderr, fragment)
    assert result.stdout == ""


def test_a_dry_run_says_the_sizes_were_not_checked() -> None:
    result = runner.invoke(
        app, ["register", "--dry-run", "--project", "p", "--worker-size", "huge", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cluster_kwargs"]["worker_size"] == "huge"
    assert "not checked against Saturn Cloud" in result.stderr
    # No size and a team history: nothing to say.
    team = {"TICKETEVAL_HISTORY_URL": "postgresql://ada@db.example.org/ticketeval"}
    plain = runner.invoke(app, ["register", "--dry-run", "--project", "p", "--json"], env=team)
    assert plain.exit_code == 0 and plain.stderr == "", plain.output


# --- Flow tasks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "attempts"), [(DataError("no data here."), 1), (OSError("flaky disk"), 3)]
)
def test_only_errors_that_may_pass_are_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception, attempts: int
) -> None:
    from prefect.executors import LocalExecutor

    from ticketeval.pipeline import flow

    calls = []

    def failing(settings: object, source: object = None) -> None:
        calls.append(settings)
        raise error

    monkeypatch.setattr(flow, "ensure_cache", failing)
    built = flow.build_flow(name="f", batch_size=10, data_dir=tmp_path)
    batch_task = built.get_tasks(name="get_ticket_data_batch")[0]
    batch_task.retry_delay = timedelta(0)  # the retries are the point, not their wait
    state = built.run(executor=LocalExecutor())
    task_state = state.result[batch_task]
    assert task_state.is_failed()
    assert isinstance(task_state.result, type(error))
    assert len(calls) == attempts


def explode() -> None:
    raise RuntimeError("a bug, not a condition")


def failing_flow(**_: object) -> object:
    from prefect import Flow, task

    with Flow("failing") as built:
        task(explode, name="explode")()
    return built


def test_a_flow_task_failing_unexpectedly_exits_1_naming_it(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The flow runs on a real LocalCluster: its worker imports this module to run `explode`.
    from ticketeval.pipeline import flow

    monkeypatch.setattr(flow, "build_flow", failing_flow)
    result = runner.invoke(app, ["run-local", "--batch-size", "50", "--workers", "1"])
    assert result.exit_code == ExitCode.FAILED, result.output
    one_error_line(result.stderr, "task 'explode' failed", "RuntimeError: a bug, not a condition")
    assert result.stdout == ""


def test_a_sigterm_whose_exception_python_ignored_still_ends_with_143(
    isolated_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A signal that lands in a garbage-collector callback (as Dask's has) raises where Python
    # only reports "Exception ignored": the work goes on, but the job was asked to stop.
    from ticketeval.cli import runtime as cli_runtime

    monkeypatch.setattr(cli_runtime, "_terminated", threading.Event())
    cli_runtime._terminated.set()
    result = runner.invoke(app, ["history"])
    assert result.exit_code == ExitCode.TERMINATED
    assert result.stderr.strip().splitlines()[-1] == "Error: terminated."
