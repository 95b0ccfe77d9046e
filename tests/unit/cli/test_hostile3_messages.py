"""Issue 21, unclear messages: usage errors in one line, the right words for an empty filter, a
short or empty trial id, a binary file, corrupt spool files, matplotlib's config directory, the
legacy history, SQLite URLs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.helpers import expect_error, invoke
from ticketeval.data.cache import cache_path
from ticketeval.history.spool import spool_for
from ticketeval.settings import load_settings

EVALUATE = ("evaluate", "--batch-size", "100", "--seed", "1")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("backtest", "--reference", "abc"), "--reference"),
        (("history", "--last", "0"), "--last"),
        (("evaluate", "--no-such-option"), "--no-such-option"),
    ],
)
def test_typer_usage_errors_are_one_line(
    data_dir: Path, args: tuple[str, ...], option: str
) -> None:
    line = expect_error(invoke(*args), 2, option, "--help")
    assert "╭" not in line


def test_history_of_an_unknown_model_says_so(data_dir: Path) -> None:
    assert invoke(*EVALUATE).exit_code == 0
    result = invoke("history", "--model", "nosuch")
    assert result.exit_code == 0
    assert "No trial of model 'nosuch'" in result.stderr
    assert "No trials recorded yet" not in result.stderr


@pytest.mark.parametrize("prefix", ["", "abc", "  "])
def test_an_empty_or_short_trial_id_is_refused(data_dir: Path, prefix: str) -> None:
    assert invoke(*EVALUATE).exit_code == 0
    expect_error(invoke("report", "--trial", prefix), 2, "--trial", "at least 4")


@pytest.mark.parametrize(
    "content",
    [b"\0" * 200_000, b"number,incident_state\n" + b"\0" * 200_000],
    ids=["nul-bytes", "header-then-nul-bytes"],
)
def test_a_file_of_nul_bytes_is_not_a_csv(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "log.csv"
    source.write_bytes(content)
    expect_error(invoke("fetch", "--source", str(source)), 3, "is not a CSV", "binary")


def test_fetching_a_parquet_file_shows_no_binary(data_dir: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "events.parquet"
    shutil.copy(cache_path(data_dir), parquet)
    line = expect_error(invoke("fetch", "--source", str(parquet)), 3, "not a CSV", "Parquet")
    assert line.isprintable()


def test_corrupt_spool_files_are_said_once(data_dir: Path) -> None:
    spool = spool_for(data_dir / "spool", load_settings().history)
    spool.mkdir(parents=True)
    (spool / "20260101T000000000000Z-broken.json").write_text("{not json")
    first = invoke(*EVALUATE)
    assert first.exit_code == 0, first.output
    assert "1 unreadable spool file(s) set aside as *.rejected" in first.stderr
    assert (spool / "20260101T000000000000Z-broken.rejected").exists()
    again = invoke(*EVALUATE)
    assert "rejected" not in again.stderr


def test_a_legacy_history_is_moved_by_history_too(data_dir: Path, tmp_path: Path) -> None:
    recorded = invoke(*EVALUATE, "--json")  # the history in the data (cache) directory
    assert recorded.exit_code == 0
    new_home = tmp_path / "new-history-dir"
    result = invoke("history", "--json", env={"TICKETEVAL_HISTORY_DIR": str(new_home)})
    assert result.exit_code == 0, result.output
    assert [row["id"] for row in json.loads(result.stdout)] == [json.loads(recorded.stdout)["id"]]
    assert "Moved the trial history" in result.stderr
    assert (new_home / "history.sqlite").exists()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("sqlite:///relative.db", "filesystem root"),
        ("sqlite:////nonexistent-h3/dir/x.db", "does not exist"),
    ],
)
def test_a_sqlite_url_that_cannot_be_meant_is_refused(
    data_dir: Path, url: str, fragment: str
) -> None:
    expect_error(
        invoke(*EVALUATE, env={"TICKETEVAL_HISTORY_URL": url}),
        2,
        "TICKETEVAL_HISTORY_URL",
        fragment,
    )
    assert not Path("/relative.db").exists() and not Path("/nonexistent-h3").exists()
