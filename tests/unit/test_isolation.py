"""The suite never reads or writes the real user's directories: HOME and the XDG directories are
temporary from before the first fixture runs (tests/conftest.py's pytest_configure), so even a
module-scoped fixture, which runs outside the per-test `isolated_environment`, records its trial
in a temporary history, never in the real one. The real directories are only looked at with
`stat` (names, sizes, modification times), never opened: opening the real SQLite history, even
read-only, would write its shared-memory file.)"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import real_dirs_state, real_user_dirs
from tests.support.helpers import invoke


@pytest.fixture(scope="module")
def trial_of_a_module_fixture() -> Iterator[tuple[dict, dict]]:
    """A trial recorded by a module-scoped fixture with the default directories: it runs
    before any test's `isolated_environment`, so only pytest_configure's HOME protects it.
    With the real directories' state from before it ran."""
    before = real_dirs_state()
    with pytest.MonkeyPatch.context() as scoped:
        for name in [name for name in os.environ if name.startswith("TICKETEVAL_")]:
            scoped.delenv(name)  # whatever an earlier test's fixture left: the defaults here
        fetched = invoke("fetch", "--source", "demo", "--demo-events", "500")
        assert fetched.exit_code == 0, fetched.output
        arguments = ("evaluate", "--source", "demo", "--batch-size", "100", "--seed", "1", "--json")
        result = invoke(*arguments)
        assert result.exit_code == 0, result.output
        yield dict(json.loads(result.stdout)), before


def test_home_and_the_xdg_directories_are_temporary() -> None:
    import platformdirs

    home = Path(os.environ["HOME"])
    assert home.is_relative_to(tempfile.gettempdir()) and home.name.startswith("ticketeval-tests")
    for name in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        assert Path(os.environ[name]).is_relative_to(home), name
    real = real_user_dirs()
    assert platformdirs.user_data_dir("ticketeval", appauthor=False) != real["data"]
    assert platformdirs.user_cache_dir("ticketeval", appauthor=False) != real["cache"]
    assert not Path(real["data"]).is_relative_to(home)


def test_a_module_fixtures_trial_lands_in_the_temporary_home(
    trial_of_a_module_fixture: tuple[dict, dict],
) -> None:
    summary, real_before = trial_of_a_module_fixture
    history = summary["recorded"]["history"]
    assert history.startswith("sqlite:///"), history
    assert Path(history.removeprefix("sqlite:///")).is_relative_to(os.environ["HOME"]), history
    assert real_dirs_state() == real_before


def test_a_command_with_the_default_directories_leaves_the_real_ones_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TICKETEVAL_DATA_DIR")
    monkeypatch.delenv("TICKETEVAL_HISTORY_DIR")
    real_before = real_dirs_state()
    result = invoke("evaluate", "--source", "demo", "--batch-size", "100", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    history = summary["recorded"]["history"]
    assert Path(history.removeprefix("sqlite:///")).is_relative_to(os.environ["HOME"]), history
    assert real_dirs_state() == real_before
