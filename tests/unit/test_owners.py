"""One owner per concern: the SQLite history URL built in one place (a `#` in a directory name
stays part of the path), and `ticketeval history-copy`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.support.helpers import runner
from ticketeval.cli.app import app
from ticketeval.errors import ExitCode
from ticketeval.history.urls import parse_history_url
from ticketeval.settings import load_settings, sqlite_url


def trial_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM trials ORDER BY id")]


@pytest.mark.parametrize("name", ["hist#1", "a?b", "100%", "with space"])
def test_sqlite_url_keeps_every_character_of_the_path(tmp_path: Path, name: str) -> None:
    path = tmp_path / name / "history.sqlite"
    assert parse_history_url(sqlite_url(path)).path == path.resolve()


def test_the_history_is_where_the_summary_says_in_a_directory_named_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history_dir = tmp_path / "hist#1"
    monkeypatch.setenv("TICKETEVAL_HISTORY_DIR", str(history_dir))
    monkeypatch.setenv("TICKETEVAL_DATA_DIR", str(tmp_path / "data"))
    result = runner.invoke(
        app, ["evaluate", "--source", "demo", "--batch-size", "50", "--seed", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    file = history_dir / "history.sqlite"
    assert trial_ids(file) == [summary["id"]]
    assert parse_history_url(summary["recorded"]["history"]).path == file.resolve()
    assert not (tmp_path / "hist").exists()  # the old bug: `#1/...` read as a fragment
    assert load_settings().results_dir == history_dir / "results"


def test_history_copy_copies_once_into_the_configured_history(tmp_path: Path) -> None:
    evaluated = runner.invoke(app, ["evaluate", "--source", "demo", "--batch-size", "50"])
    assert evaluated.exit_code == 0, evaluated.output
    here = Path(load_settings().history_dir) / "history.sqlite"
    team = tmp_path / "team#1.sqlite"
    env = {"TICKETEVAL_HISTORY_URL": sqlite_url(team)}
    copied = runner.invoke(app, ["history-copy", str(here), "--json"], env=env)
    assert copied.exit_code == 0, copied.output
    assert json.loads(copied.stdout)["added"] == 1
    assert trial_ids(team) == trial_ids(here)
    again = runner.invoke(app, ["history-copy", str(here), str(team)])
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("Copied 0 trial(s) from sqlite:///")


def test_history_copy_of_a_missing_history_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["history-copy", str(tmp_path / "none.sqlite")])
    assert result.exit_code == ExitCode.DATA, result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none.sqlite").exists()
