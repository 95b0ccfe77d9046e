"""Fixtures for the tests on the real UCI file: the file parsed once per test run, a copy of
that cache as a test's data directory, and the one as-of evaluation several tests check.

Parsing the file, or evaluating it as of a date, takes seconds of CPU: a test pays it only when
the parse or that computation is what it checks. The xdist workers of a run share them: the
first to need one builds it under a lock, the others read what it left (pytest-xdist's documented
pattern, with the standard library's flock instead of filelock)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import invoke


def _isolated(directory: Path) -> dict[str, str]:
    """The environment of a command run by a session fixture: its cache and history there."""
    return {"TICKETEVAL_DATA_DIR": str(directory), "TICKETEVAL_HISTORY_DIR": str(directory)}


@contextlib.contextmanager
def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A directory for `name` that every xdist worker of this run shares, held under a lock
    while the block runs: the first worker builds what it holds, the others find it there."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's, above each worker's own
    directory = base / name
    directory.mkdir(exist_ok=True)
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield directory


@pytest.fixture(scope="session")
def real_fetch(real_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`fetch` of the real file into a directory of the run's (its FetchResult, as the fetch
    that parsed it returned it): the cache the other fixtures copy. Read-only for the tests."""
    from ticketeval.data import cache

    with once_per_run(tmp_path_factory, "real-cache") as directory:
        kept = directory / "fetch-result.pickle"
        if kept.exists():
            return pickle.loads(kept.read_bytes())
        result = cache.fetch(str(real_zip), data_dir=directory)
        kept.write_bytes(pickle.dumps(result))
        return result


@pytest.fixture
def real_data_dir(real_fetch: Any, isolated_environment: Path) -> Path:
    """This test's data directory, holding a copy of the real file's cache: what `ticketeval
    fetch --source <the real file>` leaves (a later fetch of the same file reuses it)."""
    isolated_environment.mkdir(exist_ok=True)
    shutil.copy2(real_fetch.cache.path, isolated_environment)
    return isolated_environment


@pytest.fixture(scope="session")
def real_as_of_2016_05_01(
    real_fetch: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """`ticketeval evaluate --as-of 2016-05-01 --json` on the real file, once: its summary."""
    with once_per_run(tmp_path_factory, "real-as-of") as directory:
        kept = directory / "summary.json"
        if kept.exists():
            return dict(json.loads(kept.read_text()))
        shutil.copy2(real_fetch.cache.path, directory)
        before = dict(os.environ)  # what the command changes in os.environ is put back
        try:
            result = invoke("evaluate", "--as-of", "2016-05-01", "--json", env=_isolated(directory))
        finally:
            os.environ.clear()
            os.environ.update(before)
        assert result.exit_code == 0, result.output
        kept.write_text(result.stdout)
        return dict(json.loads(result.stdout))
