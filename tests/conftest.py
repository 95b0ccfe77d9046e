"""The suite's fixtures and hooks: every test (and every module- or session-scoped fixture) runs
under a temporary HOME and XDG directories, every test gets its own data directory, small demo
data, and tests under tests/e2e are marked `e2e` (`python -m pytest -m "not e2e"`: the fast loop).

The helpers are in tests/support/helpers.py (re-exported here for tests written against this
module); the real servers the tests start are in tests/support/."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Bytecode is cached during the suite's run whatever PYTHONDONTWRITEBYTECODE says (before the
# modules below are imported; the xdist workers and every process a test starts inherit it).
# Without a cache each worker rewrites the asserts of every test module again (measured: 1.7 s of
# CPU a worker, each time) and each process compiles ticketeval again. The caches go to
# __pycache__ beside the sources (git-ignored), as Python's default puts them.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

from tests.support.helpers import (  # noqa: E402, F401  (after the bytecode setting; re-exported)
    DEMO_ROWS,
    MARKER,
    REAL_INCIDENTS,
    REAL_ROWS,
    REAL_ZIP,
    ROOT,
    assert_no_process_left,
    csv_bytes,
    csv_rows,
    expect_error,
    invoke,
    processes_marked,
    run_ticketeval,
    runner,
    snapshot,
    start_ticketeval,
    table_value,
    ticketeval_executable,
    zip_of,
)

pytest_plugins = ("tests.support.postgres", "tests.support.loopback", "tests.support.realdata")

# Rich reads the width when ticketeval.cli.app creates its consoles: fix it so wrapping cannot
# break assertions on the output.
os.environ["COLUMNS"] = "200"

E2E = Path(__file__).resolve().parent / "e2e"

# Variables a developer may have exported that would leak into the tests.
OWN_VARIABLES = (
    "PREFECT_CLOUD_PROJECT_NAME", "SATURN_USERNAME", "PREFECT_USER_TOKEN", "BASE_URL",
    "SATURN_BASE_URL", "SATURN_TOKEN", "PREFECT__LOGGING__LEVEL",
)  # fmt: skip
USER_DIRS = ("HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME")
# The real user's ticketeval directories, as the first pytest process found them (xdist workers
# inherit the variable, and the redirected HOME with it): the suite must leave them as they are.
REAL_DIRS_VARIABLE = "TESTS_REAL_TICKETEVAL_DIRS"


def real_user_dirs() -> dict[str, str]:
    """The real user's ticketeval data and cache directories (platformdirs, as ticketeval finds
    them), recorded before the suite redirects HOME."""
    import platformdirs

    if REAL_DIRS_VARIABLE not in os.environ:
        os.environ[REAL_DIRS_VARIABLE] = json.dumps(
            {
                "data": platformdirs.user_data_dir("ticketeval", appauthor=False),
                "cache": platformdirs.user_cache_dir("ticketeval", appauthor=False),
            }
        )
    return dict(json.loads(os.environ[REAL_DIRS_VARIABLE]))


def directory_state(directory: Path) -> dict[str, tuple[int, int]]:
    """Every entry under a directory, with its size and modification time (nanoseconds)."""
    if not directory.exists():
        return {}
    state = {".": (0, directory.stat().st_mtime_ns)}
    for path in sorted(directory.rglob("*")):
        with_stat = path.lstat()
        state[str(path.relative_to(directory))] = (with_stat.st_size, with_stat.st_mtime_ns)
    return state


def real_dirs_state() -> dict[str, dict[str, tuple[int, int]]]:
    return {name: directory_state(Path(path)) for name, path in real_user_dirs().items()}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before any fixture runs, whatever its scope: HOME and the XDG directories point into a
    temporary directory, and no TICKETEVAL_ variable of the developer's is seen."""
    config.stash[real_state_key] = real_dirs_state()
    home = Path(tempfile.mkdtemp(prefix="ticketeval-tests-home-"))
    config.stash[home_key] = home
    os.environ["HOME"] = str(home)
    for name, relative in zip(
        USER_DIRS[1:], (".local/share", ".cache", ".config", ".local/state"), strict=True
    ):
        os.environ[name] = str(home / relative)
    for name in list(os.environ):
        if name.startswith(("TICKETEVAL_", "PREFECT__")) or name in OWN_VARIABLES:
            del os.environ[name]


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(home_key, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Say so when the real user's directories changed during the run (checked once, by the
    process that started it). Another program may have written there meanwhile, so this is a
    warning; tests/unit/test_isolation.py checks them around the commands it runs."""
    if hasattr(session.config, "workerinput"):
        return
    before = session.config.stash.get(real_state_key, None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if before is not None and real_dirs_state() != before and reporter is not None:
        reporter.write_line(
            f"warning: the real user directories {real_user_dirs()} changed during the run",
            yellow=True,
        )


# Fixtures that make a test end-to-end wherever it is (a test added outside tests/e2e included).
E2E_FIXTURES = {"postgres_server", "postgres_url", "real_zip", "process_marker"}


def fast_loop(config: pytest.Config) -> bool:
    return " ".join(config.option.markexpr.split()) == "not e2e"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The fast loop (`-m "not e2e"`) does not import tests/e2e only to deselect all of it (each
    worker paid about 0.4 s for it). Any other marker expression collects everything."""
    if fast_loop(config) and collection_path.resolve() == E2E:
        return True
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`--numprocesses=auto` (pyproject): one worker per CPU for the fast loop, which computes;
    one more when tests/e2e runs, whose tests also wait on the processes, clusters and servers
    they start (on 2 CPUs, measured: the whole suite 136 s with 2 workers, 126 s with 3 or 4;
    the fast loop 29 s with 2, 32 s with 3)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cpus or 1) + (0 if fast_loop(config) else 1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.is_relative_to(E2E) or fixtures & E2E_FIXTURES:
            item.add_marker(pytest.mark.e2e)


real_state_key = pytest.StashKey[dict[str, dict[str, tuple[int, int]]]]()
home_key = pytest.StashKey[Path]()


# --- Fixtures ----------------------------------------------------------------------------------


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


@pytest.fixture
def without_dashboard(isolated_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run-local and backtest without Dask's dashboard, as a cron job runs them
    (TICKETEVAL_DASHBOARD=false): for tests where the cluster is not the point, it saves about
    1 s of CPU per cluster. The dashboard's own tests, and run-local's signal tests, keep the
    default."""
    monkeypatch.setenv("TICKETEVAL_DASHBOARD", "false")


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding a small demo cache (2,000 events), built once."""
    from ticketeval.data import cache

    data_dir = tmp_path_factory.mktemp("demo-cache")
    cache.fetch("demo", data_dir=data_dir, demo_events=DEMO_ROWS)
    # Also as the data the commands read without --source: demo data is otherwise kept apart.
    shutil.copy(cache.cache_path(data_dir, demo=True), cache.cache_path(data_dir))
    return data_dir


@pytest.fixture(scope="session")
def demo_csv() -> bytes:
    """The demo event log as CSV (2,000 events), as a user's file would hold it."""
    from ticketeval.data import demo

    return demo.demo_event_log(DEMO_ROWS, seed=3)


@pytest.fixture(scope="session")
def demo_training(demo_cache: Path) -> Any:
    """A small model trained on the session's demo cache before its 70% point, once."""
    from ticketeval.scoring.training import train_from_cache

    return train_from_cache(demo_cache, train_fraction=0.7, seed=0)


@pytest.fixture(scope="session")
def demo_model(demo_training: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`demo_training` saved as a model file."""
    from ticketeval.scoring.model_file import save_model

    return Path(save_model(demo_training, tmp_path_factory.mktemp("model") / "demo.skops"))


@pytest.fixture
def data_dir(isolated_environment: Path, demo_cache: Path) -> Path:
    """This test's data directory, starting with a copy of the demo cache."""
    shutil.copytree(demo_cache, isolated_environment)
    return isolated_environment


@pytest.fixture(scope="session")  # session: the real file's cache is parsed once (realdata.py)
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


@pytest.fixture
def process_marker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A marker in the environment that ticketeval and every process it starts inherit, so that
    anything left behind can be found afterwards (and is killed, whatever the outcome)."""
    marker = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, marker)
    yield marker
    for process in processes_marked(marker):
        process.kill()
