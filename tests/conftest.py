"""Shared fixtures: an isolated environment for every test, and small demo data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Rich reads the width when ticketeval.cli creates its consoles: fix it so wrapping cannot
# break assertions on the output.
os.environ["COLUMNS"] = "200"

ROOT = Path(__file__).resolve().parent.parent
REAL_ZIP = ROOT.parent / "shared" / "data" / "incident_event_log.zip"
REAL_ROWS, REAL_INCIDENTS = 141_712, 24_918

# Variables a developer may have exported that would leak into the tests.
OWN_VARIABLES = (
    "PREFECT_CLOUD_PROJECT_NAME", "SATURN_USERNAME", "PREFECT_USER_TOKEN", "BASE_URL",
    "SATURN_BASE_URL", "SATURN_TOKEN", "PREFECT__LOGGING__LEVEL",
)  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data directory and working directory (no stray .env)."""
    for name in OWN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith(("TICKETEVAL_", "PREFECT__")):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("TICKETEVAL_DATA_DIR", str(data_dir))
    # The history, spool and results beside the cache, as one directory per test.
    monkeypatch.setenv("TICKETEVAL_HISTORY_DIR", str(data_dir))
    # Download retries are real, their backoff is not what a test waits for.
    monkeypatch.setenv("TICKETEVAL_RETRY_BACKOFF", "0")
    monkeypatch.chdir(tmp_path)
    return data_dir


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding a small demo cache (2,000 events), built once."""
    from ticketeval import cache

    data_dir = tmp_path_factory.mktemp("demo-cache")
    cache.fetch("demo", data_dir=data_dir, demo_events=2_000)
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
