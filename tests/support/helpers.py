"""Helpers every test module may use: where things are, the command line in-process (CliRunner)
and as the installed executable, the one-error-line check, files, and the processes a run
leaves behind."""

from __future__ import annotations

import contextlib
import csv
import io
import multiprocessing
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
import typer
import typer.testing
from typer.testing import Result

from ticketeval.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
REAL_ZIP = ROOT.parent / "shared" / "data" / "incident_event_log.zip"
REAL_ROWS, REAL_INCIDENTS = 141_712, 24_918
DEMO_ROWS = 2_000  # what the `data_dir` fixture's demo cache holds
MARKER = "TICKETEVAL_TEST_MARKER"  # set in a child's environment to find all its descendants
NOBODY = 65534  # the uid and gid a test drops to, as root, to be refused like any user
T = TypeVar("T")


# --- Running the command line ------------------------------------------------------------------


class CliRunner(typer.testing.CliRunner):
    """Typer's CliRunner, but each app's Click command is built once per process, as the
    installed command builds it once per run: Typer's own `invoke` rebuilds it every time
    (about 11 ms for ticketeval's app, some 500 times in the fast loop). A Click command keeps
    no state between invocations. The rest is Typer's `invoke` as it is."""

    _commands: dict[int, tuple[typer.Typer, Any]] = {}  # id(app) -> (app, its Click command)

    def command(self, app: typer.Typer) -> Any:
        kept = self._commands.get(id(app))
        if kept is None or kept[0] is not app:
            kept = self._commands[id(app)] = (app, typer.main.get_command(app))
        return kept[1]

    def invoke(  # type: ignore[override]
        self,
        app: typer.Typer,
        args: str | Sequence[str] | None = None,
        input: bytes | str | None = None,  # noqa: A002 (Typer's name)
        env: dict[str, str | None] | None = None,
        catch_exceptions: bool = True,
        color: bool = False,
        **extra: Any,
    ) -> Result:
        cli = self.command(app)
        exc_info: Any = None
        return_value: Any = None
        exception: BaseException | None = None
        exit_code = 0
        with self.isolation(input=input, env=env, color=color) as outstreams:
            if isinstance(args, str):
                args = shlex.split(args)
            prog_name = extra.pop("prog_name", None) or self.get_default_prog_name(cli)
            try:
                return_value = cli.main(args=args or (), prog_name=prog_name, **extra)
            except SystemExit as error:
                exc_info = sys.exc_info()
                code: Any = 0 if error.code is None else error.code
                if code != 0:
                    exception = error
                if not isinstance(code, int):
                    sys.stdout.write(f"{code}\n")
                    code = 1
                exit_code = code
            except Exception as error:
                if not catch_exceptions:
                    raise
                exception, exit_code, exc_info = error, 1, sys.exc_info()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                stdout, stderr, output = (stream.getvalue() for stream in outstreams)
        return Result(
            runner=self,
            stdout_bytes=stdout,
            stderr_bytes=stderr,
            output_bytes=output,
            return_value=return_value,
            exit_code=exit_code,
            exception=exception,
            exc_info=exc_info,
        )


# Click 8.2 removed `mix_stderr`: `result.stderr` is stderr alone, `result.output` both streams.
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the command line in this process, with the test's environment (plus `env`)."""
    from ticketeval.cli.app import app

    return runner.invoke(app, list(args), env=env)


def ticketeval_executable() -> str:
    """The installed console script beside this interpreter (what users run)."""
    candidate = Path(sys.executable).parent / "ticketeval"
    found = str(candidate) if candidate.exists() else shutil.which("ticketeval")
    assert found, "the ticketeval executable is not installed"
    return found


def run_ticketeval(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed executable with the test's environment (plus `env`)."""
    return subprocess.run(
        [ticketeval_executable(), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_ticketeval(
    arguments: Sequence[str], env: dict[str, str] | None = None, **options: object
) -> subprocess.Popen[str]:
    """Start the installed executable with the test's environment (plus `env`)."""
    return subprocess.Popen(
        [ticketeval_executable(), *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **options,  # type: ignore[call-overload]
    )


def expect_error(
    outcome: subprocess.CompletedProcess[str] | Result | str | BaseException,
    code: int | None,
    *fragments: str,
    after_notes: bool = False,
    prefix: str = "Error: ",
) -> str:
    """The one error line of a failure, checked and returned.

    `outcome` is a finished process or CliRunner result (its exit code must be `code`, and no
    exception may have escaped the CLI), a process's stderr (`code` None), or an exception
    (`code` None: its message must be one line). stderr holds exactly one line, `prefix...`,
    naming every fragment; with `after_notes`, notes may come first (a fetch on the way, a
    cluster's dashboard) and the error must be the one and last `Error: ` line. Never a
    traceback."""
    if isinstance(outcome, subprocess.CompletedProcess):
        returncode, stderr = outcome.returncode, outcome.stderr
        assert "Traceback" not in outcome.stdout, outcome.stdout
    elif isinstance(outcome, BaseException):
        returncode, stderr, prefix = None, str(outcome), ""
    elif isinstance(outcome, str):
        returncode, stderr = None, outcome
    else:  # a CliRunner result
        exception = outcome.exception
        assert exception is None or isinstance(exception, SystemExit), outcome.exc_info
        assert "Traceback" not in outcome.output, outcome.output
        returncode, stderr = outcome.exit_code, outcome.stderr
    if code is not None:
        assert returncode == code, (returncode, stderr)
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    if after_notes:
        errors = [line for line in lines if line.startswith(prefix)]
        assert errors == lines[-1:], lines
    else:
        assert len(lines) == 1, lines
    line = lines[-1]
    assert line.startswith(prefix), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def table_value(output: str, label: str) -> str:
    """The value in the row of a Rich table whose first cell is `label`."""
    match = re.search(rf"^\W*{re.escape(label)}\s*│\s*(.*?)\s*│", output, flags=re.MULTILINE)
    assert match, (label, output)
    return match[1]


# --- Files -------------------------------------------------------------------------------------


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file of a directory (recursively), name → bytes."""
    if not directory.exists():
        return {}
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def csv_bytes(rows: Sequence[Sequence[str]], *, line_end: str = "\n") -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator=line_end).writerows(rows)
    return out.getvalue().encode("utf-8")


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


# --- Processes a run leaves behind -------------------------------------------------------------


def processes_marked(marker: str) -> list[psutil.Process]:
    """Every process (but this one) whose environment carries `marker` under MARKER."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get(MARKER) == marker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def assert_no_process_left(marker: str) -> None:
    """No process started by the run is still alive (waiting a bounded time for exits)."""
    _, alive = psutil.wait_procs(processes_marked(marker), timeout=30)
    for process in alive:  # do not leak them into the next test
        process.kill()
    assert not alive, [process.cmdline() for process in alive]


# --- As a user without root's rights -------------------------------------------------------------


def _as_nobody(queue: Any, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        queue.put(("returned", function(*args)))
    except BaseException as error:  # reported to the parent, which fails the test with it
        queue.put(("raised", f"{type(error).__name__}: {error}"))


def as_unprivileged(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` as a user that file modes apply to: as root (CI runs as root, and
    root writes into read-only directories), in a forked child that dropped to `nobody`;
    otherwise in this process. What it returns must pickle."""
    if os.geteuid() != 0:
        return function(*args)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_as_nobody, args=(queue, function, args))
    child.start()
    try:
        kind, value = queue.get(timeout=120)
    finally:
        child.join(timeout=60)
    assert kind == "returned", value
    return value  # type: ignore[no-any-return]


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


# --- Signals ------------------------------------------------------------------------------------

# Each signal ticketeval ends on: its exit code and its one line (parametrize signum, code, line).
SIGNAL_EXITS = [
    pytest.param(signal.SIGINT, ExitCode.INTERRUPTED, "Error: interrupted.", id="SIGINT"),
    pytest.param(signal.SIGTERM, ExitCode.TERMINATED, "Error: terminated.", id="SIGTERM"),
]


def restore_default_sigint() -> None:
    """A child's preexec_fn: a child of a shell started in the background ignores SIGINT, and a
    test runner may too; Ctrl-C must reach it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ignore_sigint() -> None:
    """A child's preexec_fn: SIGINT ignored, as in a job a shell started in the background."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
