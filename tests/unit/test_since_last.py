"""`--since-last` follows a stream (the log's source, or a name), not the data's checksum: a
growing export re-fetched to the same path is scored once, incident by incident; recorded ends
never pass the data; the history's stream and population columns, and their migration."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import invoke
from ticketeval.data import parsing
from ticketeval.data.demo import demo_event_log
from ticketeval.history.rows import SCHEMA_VERSION
from ticketeval.history.store import read_trials
from ticketeval.settings import load_settings

pytestmark = pytest.mark.usefixtures("without_dashboard")  # the cluster is not the point here

# The real PostgreSQL server and its per-test databases (fixture postgres_url).


def _split_export(csv: bytes, cut: str) -> tuple[bytes, pd.Timestamp, int]:
    """The events of the incidents closed before `cut` (as CSV), their newest closure, and how
    many events closed at or after it."""
    frame = pd.read_csv(io.BytesIO(csv), dtype=str, keep_default_na=False)
    closed = pd.to_datetime(frame["closed_at"], format="%d/%m/%Y %H:%M", errors="coerce")
    early = (closed < cut).to_numpy()
    return frame[early].to_csv(index=False).encode(), closed[early].max(), int((~early).sum())


def _json(*args: str) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _history_sqlite(data_dir: Path) -> Path:
    return data_dir / "history.sqlite"


def test_a_grown_export_at_the_same_path_is_scored_from_where_the_chain_ended(
    isolated_environment: Path, tmp_path: Path
) -> None:
    csv = demo_event_log(3_000, seed=4)
    part, newest, later = _split_export(csv, "2016-09-01")
    export = tmp_path / "export.csv"
    export.write_bytes(part)
    first = _json("evaluate", "--since-last", "--batch-size", "all", "--source", str(export))
    # The recorded end is the newest closure seen plus a minute, not a bound past the data.
    assert first["period"]["closed_to"] == (newest + pd.Timedelta(minutes=1)).isoformat()
    assert first["source"]["stream"] == str(export.resolve())
    export.write_bytes(csv)  # the export grew: another checksum, the same stream
    assert invoke("fetch", "--source", str(export), "--force").exit_code == 0
    second = _json("evaluate", "--since-last", "--batch-size", "all")
    assert second["source"]["csv_sha256"] != first["source"]["csv_sha256"]
    assert second["data"]["num_obs"] == later
    assert second["period"]["closed_from"] == first["period"]["closed_to"]
    # Again: nothing new, exit 0, nothing recorded.
    before = len(read_trials(load_settings().history))
    again = invoke("evaluate", "--since-last", "--batch-size", "all")
    assert again.exit_code == 0, again.output
    assert "Nothing new for heuristic on" in again.stderr
    assert len(read_trials(load_settings().history)) == before


def test_a_named_stream_continues_across_paths_and_a_closed_from_trial_starts_it(
    isolated_environment: Path, tmp_path: Path
) -> None:
    csv = demo_event_log(3_000, seed=5)
    part, newest, _ = _split_export(csv, "2016-09-01")
    (tmp_path / "monday.csv").write_bytes(part)
    (tmp_path / "tuesday.csv").write_bytes(csv)
    env = {"TICKETEVAL_STREAM": "servicenow-prod"}
    # A trial with only --closed-from ends at the newest closure it saw: the chain's start.
    result = invoke(
        "evaluate", "--closed-from", "2016-06-01", "--batch-size", "all", "--json",
        "--source", str(tmp_path / "monday.csv"), env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ended = json.loads(result.stdout)["period"]["closed_to"]
    assert ended == (newest + pd.Timedelta(minutes=1)).isoformat()
    result = invoke(
        "evaluate", "--since-last", "--batch-size", "all", "--json",
        "--source", str(tmp_path / "tuesday.csv"), env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["period"]["closed_from"] == ended
    assert summary["source"]["stream"] == "servicenow-prod"
    # Another stream has its own chain: from the beginning.
    other = _json("evaluate", "--since-last", "--batch-size", "all", "--stream", "other")
    assert other["period"]["closed_from"] is None
    assert other["data"]["num_obs"] == 3_000


def test_trials_recorded_before_streams_are_matched_by_checksum_with_a_note(
    data_dir: Path,
) -> None:
    first = _json("evaluate", "--closed-from", "2016-06-01", "--batch-size", "all")
    with contextlib.closing(sqlite3.connect(_history_sqlite(data_dir))) as connection:
        with connection:
            connection.execute("UPDATE trials SET stream = NULL")
    result = invoke("evaluate", "--since-last", "--batch-size", "all")
    assert result.exit_code == 0, result.output
    assert "Nothing new" in result.stderr and "recorded before streams" in result.stderr
    assert first["period"]["closed_to"] in result.stderr


def test_a_version_2_history_gains_the_stream_and_population_columns(data_dir: Path) -> None:
    _json("evaluate", "--batch-size", "100")
    _json("evaluate", "--closed-from", "2016-06-01", "--batch-size", "all")
    path = _history_sqlite(data_dir)
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("ALTER TABLE trials DROP COLUMN stream")
        connection.execute("ALTER TABLE trials DROP COLUMN population")
        connection.execute("UPDATE ticketeval_meta SET value = '2'")
    rows = read_trials(load_settings().history)
    assert [row.population for row in rows] == ["sample", "period"]
    assert [row.stream for row in rows] == [None, None]
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("SELECT value FROM ticketeval_meta").fetchone() == (
            str(SCHEMA_VERSION),
        )


@pytest.mark.e2e
@pytest.mark.realdata
def test_a_growing_real_log_is_scored_once_after_a_backtest(
    real_zip: Path, isolated_environment: Path, tmp_path: Path
) -> None:
    # The part: the events of the incidents closed before 2016-04-20, fetched to one path.
    with zipfile.ZipFile(real_zip) as archive:
        csv = archive.read(parsing.CSV_NAME)
    part, newest, later = _split_export(csv, "2016-04-20")
    assert str(newest) == "2016-04-19 23:07:00" and later == 72_007
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(parsing.CSV_NAME, part)
    assert invoke("fetch", "--source", str(export)).exit_code == 0
    backtest = _json("backtest", "--every", "month", "--quiet")
    assert sum(row["events"] for row in backtest["periods"]) == 69_705
    assert backtest["periods"][-1]["closed_to"] == "2016-04-19T23:08:00"
    export.write_bytes(real_zip.read_bytes())  # the grown export, at the same path
    assert invoke("fetch", "--source", str(export), "--force").exit_code == 0
    summary = _json("evaluate", "--since-last", "--batch-size", "all")
    assert summary["data"]["num_obs"] == 72_007
    assert summary["data"]["metrics"]["MAE"] == pytest.approx(846_847.54, abs=0.01)
    assert summary["period"]["closed_from"] == "2016-04-19T23:08:00"
    before = len(read_trials(load_settings().history))
    again = invoke("evaluate", "--since-last", "--batch-size", "all")
    assert again.exit_code == 0 and "Nothing new" in again.stderr
    assert len(read_trials(load_settings().history)) == before


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_both_backends_migrate_version_2_to_3(
    backend: str, data_dir: Path, request: pytest.FixtureRequest
) -> None:
    from ticketeval.history.store import record_trial
    from ticketeval.settings import sqlite_url

    url = (
        sqlite_url(data_dir / "h.sqlite")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    trial = _json("evaluate", "--batch-size", "all", "--closed-from", "2016-06-01")
    trial.pop("recorded")
    record_trial(trial, url, data_dir / "spool")
    statements = [
        "ALTER TABLE trials DROP COLUMN stream",
        "ALTER TABLE trials DROP COLUMN population",
        "ALTER TABLE trials DROP COLUMN data_shift",
        "ALTER TABLE trials DROP COLUMN incidents_before_end",
        "UPDATE ticketeval_meta SET value = '2'",
    ]
    if backend == "sqlite":
        with contextlib.closing(sqlite3.connect(data_dir / "h.sqlite")) as connection:
            with connection:
                for statement in statements:
                    connection.execute(statement)
    else:
        import psycopg

        with psycopg.connect(url) as connection:
            for statement in statements:
                connection.execute(statement)
    (row,) = read_trials(url)
    assert (row.stream, row.population, row.data_shift) == (None, "period", None)
    # Written again after the migration: the new columns filled.
    trial["id"] = "after-the-migration"
    record_trial(trial, url, data_dir / "spool")
    (after,) = [row for row in read_trials(url) if row.id == "after-the-migration"]
    assert after.stream == trial["source"]["stream"] and after.population == "period"


def test_an_empty_stream_name_is_refused(data_dir: Path) -> None:
    result = invoke("evaluate", "--since-last", "--stream", " ")
    assert result.exit_code == 2 and "--stream needs a name" in result.stderr


@pytest.mark.e2e
def test_run_local_continues_the_same_chain(isolated_environment: Path, tmp_path: Path) -> None:
    csv = demo_event_log(2_000, seed=6)
    part, _, later = _split_export(csv, "2016-09-01")
    export = tmp_path / "export.csv"
    export.write_bytes(part)
    first = _json("run-local", "--since-last", "--batch-size", "all", "--source", str(export))
    assert first["source"]["stream"] == str(export.resolve())
    export.write_bytes(csv)
    assert invoke("fetch", "--source", str(export), "--force").exit_code == 0
    second = _json("evaluate", "--since-last", "--batch-size", "all")
    assert second["data"]["num_obs"] == later
    assert second["period"]["closed_from"] == first["period"]["closed_to"]


def test_tickets_that_arrive_late_are_reported_not_scored(
    isolated_environment: Path, tmp_path: Path
) -> None:
    csv = demo_event_log(3_000, seed=7)
    frame = pd.read_csv(io.BytesIO(csv), dtype=str, keep_default_na=False)
    closed = pd.to_datetime(frame["closed_at"], format="%d/%m/%Y %H:%M", errors="coerce")
    early = closed < "2016-09-01"
    # One incident closed before the cut is missing from the first export: it arrives late.
    held_back = frame.loc[early, "number"].iloc[0]
    first_export = frame[early & (frame["number"] != held_back)]
    export = tmp_path / "export.csv"
    export.write_bytes(first_export.to_csv(index=False).encode())
    _json("evaluate", "--since-last", "--batch-size", "all", "--source", str(export))
    export.write_bytes(csv)
    assert invoke("fetch", "--source", str(export), "--force").exit_code == 0
    result = invoke("evaluate", "--since-last", "--batch-size", "all", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["num_obs"] == int((~early).sum())
    assert "1 incident(s) closed before" in result.stderr and "(late)" in result.stderr
