"""Fixtures for the tests on the real UCI file: the file parsed once per test process, a copy of
that cache as a test's data directory, and the one as-of evaluation several tests check.

Parsing the file, or evaluating it as of a date, takes seconds of CPU: a test pays it only when
the parse or that computation is what it checks. Without filelock, each xdist worker builds its
own (two parses a run instead of one a test)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import invoke


def _isolated(directory: Path) -> dict[str, str]:
    """The environment of a command run by a session fixture: its cache and history there."""
    return {"TICKETEVAL_DATA_DIR": str(directory), "TICKETEVAL_HISTORY_DIR": str(directory)}


@pytest.fixture(scope="session")
def real_fetch(real_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`fetch` of the real file into a directory of the session's (its FetchResult): the
    cache the other fixtures copy. Read-only for the tests."""
    from ticketeval.data import cache

    return cache.fetch(str(real_zip), data_dir=tmp_path_factory.mktemp("real-cache"))


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
    directory = tmp_path_factory.mktemp("real-as-of")
    shutil.copy2(real_fetch.cache.path, directory)
    before = dict(os.environ)  # what the command changes in os.environ is put back
    try:
        result = invoke("evaluate", "--as-of", "2016-05-01", "--json", env=_isolated(directory))
    finally:
        os.environ.clear()
        os.environ.update(before)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))
