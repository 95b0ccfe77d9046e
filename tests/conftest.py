"""Shared fixtures and helpers: an isolated environment for every test, small demo data, the
command line in-process (CliRunner) and as the installed executable, and what both print."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest
from click.testing import Result
from typer.testing import CliRunner

# Rich reads the width when ticketeval.cli.app creates its consoles: fix it so wrapping cannot
# break assertions on the output.
os.environ["COLUMNS"] = "200"

ROOT = Path(__file__).resolve().parent.parent
REAL_ZIP = ROOT.parent / "shared" / "data" / "incident_event_log.zip"
REAL_ROWS, REAL_INCIDENTS = 141_712, 24_918
DEMO_ROWS = 2_000  # what the `data_dir` fixture's demo cache holds
MARKER = "TICKETEVAL_TEST_MARKER"  # set in a child's environment to find all its descendants

# Variables a developer may have exported that would leak into the tests.
OWN_VARIABLES = (
    "PREFECT_CLOUD_PROJECT_NAME", "SATURN_USERNAME", "PREFECT_USER_TOKEN", "BASE_URL",
    "SATURN_BASE_URL", "SATURN_TOKEN", "PREFECT__LOGGING__LEVEL",
)  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data directory and working directory (no stray .env).

    Commands run in-process change os.environ themselves (Prefect's log level, Arrow's memory
    pool, register's Prefect Cloud variables): whatever a test leaves is removed afterwards."""
    for name in OWN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith(("TICKETEVAL_", "PREFECT__")):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("TICKETEVAL_DATA_DIR", str(data_dir))
    # The history, spool and results beside the cache, as one directory per test.
    monkeypatch.setenv("TICKETEVAL_HISTORY_DIR", str(data_dir))
    # Download retries are real, their backoff is not what a test waits for. A test that
    # starts a process with an environment of its own must carry this variable too.
    monkeypatch.setenv("TICKETEVAL_RETRY_BACKOFF", "0")
    monkeypatch.chdir(tmp_path)
    prepared = dict(os.environ)
    yield data_dir
    os.environ.clear()
    os.environ.update(prepared)  # then monkeypatch puts back what it changed


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding a small demo cache (2,000 events), built once."""
    from ticketeval.data import cache

    data_dir = tmp_path_factory.mktemp("demo-cache")
    cache.fetch("demo", data_dir=data_dir, demo_events=DEMO_ROWS)
    # Also as the data the commands read without --source: demo data is otherwise kept apart.
    shutil.copy(cache.cache_path(data_dir, demo=True), cache.cache_path(data_dir))
    return data_dir


@pytest.fixture
def data_dir(isolated_environment: Path, demo_cache: Path) -> Path:
    """This test's data directory, starting with a copy of the demo cache."""
    shutil.copytree(demo_cache, isolated_environment)
    return isolated_environment


@pytest.fixture
def real_zip() -> Path:
    if not REAL_ZIP.exists():
        pytest.skip(f"the real UCI file is not at {REAL_ZIP}")
    return REAL_ZIP


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on PYTHONPATH (and sys.path) for small model modules a test writes."""
    directory = tmp_path / "models"
    directory.mkdir()
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.syspath_prepend(str(directory))
    yield directory


# --- Running the command line ------------------------------------------------------------------

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


def expect_error(
    result: subprocess.CompletedProcess[str] | Result, code: int, *fragments: str
) -> str:
    """The command failed with `code` and said so in one line naming `fragments`, without a
    traceback (from the executable, or from CliRunner: no exception escaped the CLI)."""
    if isinstance(result, subprocess.CompletedProcess):
        returncode, stderr = result.returncode, result.stderr
    else:
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
        returncode, stderr = result.exit_code, result.stderr
    assert returncode == code, (returncode, stderr)
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("Error: "), line
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


@pytest.fixture
def process_marker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A marker in the environment that ticketeval and every process it starts inherit, so that
    anything left behind can be found afterwards (and is killed, whatever the outcome)."""
    marker = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, marker)
    yield marker
    for process in processes_marked(marker):
        process.kill()


def processes_marked(marker: str) -> list[psutil.Process]:
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
