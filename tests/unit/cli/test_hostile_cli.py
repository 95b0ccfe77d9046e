"""The command line under hostile options: cluster options that cannot work, log files, --help,
register's values, flow task retries, a SIGTERM Python ignored."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.helpers import (
    expect_error,
    runner,
)
from ticketeval.cli.app import app
from ticketeval.errors import DataError, ExitCode

# --- Helpers -----------------------------------------------------------------------------------


# --- --address: bounded, whatever is listening -------------------------------------------------


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
            ("--memory-limit shapes the LocalCluster ticketeval starts",),
        ),
        (
            ["--address", "tcp://127.0.0.1:8786", "--workers", "2", "--no-dashboard"],
            ("--workers, --no-dashboard shape the LocalCluster ticketeval starts",),
        ),
        (["--saturn", "--dashboard"], ("--dashboard shapes the LocalCluster",)),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_cluster_options_that_cannot_work_are_refused_before_anything_runs(
    data_dir: Path, arguments: list[str], fragments: tuple[str, ...]
) -> None:
    result = runner.invoke(app, ["run-local", "--batch-size", "50", *arguments])
    assert result.exit_code == ExitCode.USAGE, result.output
    expect_error(result.stderr, None, *fragments, after_notes=True)
    assert result.stdout == ""


def test_a_memory_limit_at_the_minimum_is_accepted() -> None:
    from ticketeval.pipeline.cluster import MIN_MEMORY_LIMIT, ClusterOptions, memory_limit_bytes

    assert memory_limit_bytes("256MiB") == MIN_MEMORY_LIMIT
    assert memory_limit_bytes("auto") is None
    ClusterOptions(memory_limit="2GiB")
    ClusterOptions(address="tcp://127.0.0.1:8786")


# --- Cron: --quiet, --log-file ---------------------------------------------------------------


def test_quiet_still_says_when_the_mae_is_above_the_limit(data_dir: Path) -> None:
    result = runner.invoke(
        app, ["evaluate", "--quiet", "--batch-size", "100", "--fail-if-mae-above", "1"]
    )
    assert result.exit_code == ExitCode.MAE_ABOVE_LIMIT, result.output
    assert result.stdout == ""
    expect_error(result.stderr, None, "is above the limit of 1 s", after_notes=True)


@pytest.mark.parametrize("place", ["missing-directory", "a-directory"])
def test_a_log_file_that_cannot_be_opened_is_refused_first(
    data_dir: Path, tmp_path: Path, place: str
) -> None:
    path = tmp_path / "no" / "such" / "x.log" if place == "missing-directory" else tmp_path
    result = runner.invoke(app, ["evaluate", "--batch-size", "50", "--log-file", str(path)])
    assert result.exit_code == ExitCode.USAGE, result.output
    if place == "missing-directory":
        expect_error(
            result.stderr, None, f"--log-file {path}", "No such file or directory", after_notes=True
        )
    else:  # refused by the output guard, before any open
        expect_error(
            result.stderr, None, str(path), "is a directory", "--log-file", after_notes=True
        )
    assert result.stdout == ""
    assert json.loads(runner.invoke(app, ["history", "--json"]).stdout) == []  # nothing ran


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
    expect_error(result.stderr, None, fragment, after_notes=True)
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


@contextlib.contextmanager
def signals_as_a_command_handles_them(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As handle_sigterm sets them up for a command: Python's own SIGINT handler, ticketeval's
    SIGTERM handler and hook for exceptions Python cannot raise (no signal seen yet)."""
    from ticketeval.cli import runtime as cli_runtime

    monkeypatch.setattr(cli_runtime, "_terminated", threading.Event())
    monkeypatch.setattr(cli_runtime, "_signal_lost", threading.Event())
    previous_hook, sys.unraisablehook = sys.unraisablehook, cli_runtime._unraisable
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, cli_runtime._terminate),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook  # pytest's own, set for the test's call
        for number, handler in previous.items():
            signal.signal(number, handler)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_python_ignored_in_a_finalizer_is_raised_again_where_it_can_be(
    monkeypatch: pytest.MonkeyPatch, signum: signal.Signals
) -> None:
    from ticketeval.cli import runtime as cli_runtime
    from ticketeval.errors import Terminated

    finalized = []

    class Finalized:
        def __del__(self) -> None:
            finalized.append(self)
            signal.raise_signal(signum)  # its handler runs in here: the exception is lost

    expected = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    with signals_as_a_command_handles_them(monkeypatch), pytest.raises(expected):
        Finalized()  # finalized at once, in this frame
        threading.Event().wait(10)  # the signal, sent again, ends this wait: raised here
    assert finalized
    assert cli_runtime._signal_lost.is_set()  # what it cut short may fail later: not shown


class FailsLater:
    """What a lost signal cut short, failing the next time it runs: Dask's garbage collector
    timer, whose start the signal interrupted, asserting that start at the collection's stop
    ("Exception ignored in ... distributed/gc.py ... stop_timing", seen once under run-local's
    one line for SIGTERM). An exception Python cannot raise, as that callback's was."""

    def __del__(self) -> None:
        raise AssertionError("a stop without its start")


@pytest.mark.parametrize("seen", ["_signal_lost", "_terminated"])
def test_what_a_signal_cut_short_fails_later_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], seen: str
) -> None:
    from ticketeval.cli import runtime as cli_runtime

    with signals_as_a_command_handles_them(monkeypatch):
        getattr(cli_runtime, seen).set()  # a signal lost somewhere, or SIGTERM handled
        FailsLater()  # finalized at once
    assert capsys.readouterr().err == ""


def test_an_exception_python_cannot_raise_is_still_shown_when_no_signal_came(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with signals_as_a_command_handles_them(monkeypatch):
        FailsLater()
    assert "a stop without its start" in capsys.readouterr().err
