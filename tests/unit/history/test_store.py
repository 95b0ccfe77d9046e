"""The trial history on SQLite (and PostgreSQL, marked e2e): schema, migration, spool."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.helpers import expect_error
from ticketeval.errors import (
    HistoryError,
    SummaryError,
    UsageError,
)
from ticketeval.history import legacy as history_legacy
from ticketeval.history import rows as history_rows
from ticketeval.history import sql as history_sql
from ticketeval.history import urls as history_urls
from ticketeval.history.rows import SCHEMA_VERSION, rows_from_summary
from ticketeval.history.spool import spool_trial
from ticketeval.history.store import (
    HistoryRow,
    flag_regressions,
    open_history,
    pending_spool,
    read_trials,
    record_trial,
    redact_url,
)
from ticketeval.settings import load_settings, sqlite_url

if TYPE_CHECKING:
    pass

# The real PostgreSQL server and its per-test databases (fixtures postgres_server, postgres_url).

SHA = "fd184bbfd62329cfe093e99da2ea7071905f2ead91900b448eb2635870821bef"


def summary(
    mae: float | None = 100.0,
    timestamp: str = "2026-01-01T00:00:00+00:00",
    *,
    trial_id: str | None = None,
    model: str = "heuristic",
    **extra: Any,
) -> dict[str, Any]:
    """A summary of today's shape (as `core.summarize` writes it), plus any newer keys."""
    metrics = {"MAE": mae, "MedAE": 50.5, "MSE": 2.5e10, "R2": -0.17, "RMSE": 158113.88}
    return {
        "id": trial_id or str(uuid.uuid4()),
        "timestamp": timestamp,
        "data": {
            "num_obs": 1000,
            "num_scored": 990,
            "num_dropped": 10,
            "metrics": metrics,
            "target": {"mean": 1.0, "median": 2.0, "min": 0.0, "max": 9.0},
            "baseline": {"MAE": 122624.8, "skill": -0.25},
            "by_priority": {"1 - Critical": {"num_obs": 15, **metrics}},
        },
        "model": model,
        "seed": 42,
        "batch_size": 1000,
        "runner": "evaluate",
        "source": {"name": "demo", "csv_sha256": SHA, "matches_uci": False, "rows": 20000},
        **extra,
    }


@pytest.fixture
def sqlite_history(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "histories" / "history.sqlite")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty history on each backend."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "history.sqlite")
    return request.getfixturevalue("postgres_url")


# --- URLs ----------------------------------------------------------------------------------------


def test_urls_are_parsed_and_passwords_redacted() -> None:
    assert redact_url("postgresql://ada:pa%40ss@db.example:5432/trials") == (
        "postgresql://ada:***@db.example:5432/trials"
    )
    assert redact_url("postgres://ada@db/trials?password=x&sslmode=require") == (
        "postgres://ada@db/trials?password=***&sslmode=require"
    )
    assert redact_url("sqlite:///srv/h.sqlite") == "sqlite:///srv/h.sqlite"
    assert history_urls.parse_history_url("sqlite:///srv/h.sqlite").path == Path("/srv/h.sqlite")
    assert history_urls.parse_history_url(sqlite_url(Path("/a b/h.sqlite"))).path == Path(
        "/a b/h.sqlite"
    )
    assert history_urls.parse_history_url("postgres://ada:pw@db/x").backend == "postgresql"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://ada:hunter2@db/x",
        "sqlite://relative/h.sqlite",
        "sqlite:relative.sqlite",
        "/plain/path.sqlite",
        "postgresql://ada:hunter2@db:notaport/x",
    ],
)
def test_a_bad_url_is_one_usage_line_without_the_password(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        open_history(url)
    assert "hunter2" not in expect_error(caught.value, None, prefix="")
    assert "sqlite:///absolute/path.sqlite" in str(caught.value) or "port" in str(caught.value)


# --- Summaries to rows ---------------------------------------------------------------------------


def test_todays_summary_makes_one_row_with_nulls_for_what_it_lacks() -> None:
    trial = summary(seed=2**64 - 1)
    (row,) = rows_from_summary(trial)
    assert row["model"] == "heuristic" and row["seed"] == str(2**64 - 1)
    assert (row["num_obs"], row["num_scored"], row["mae"], row["r2"]) == (1000, 990, 100.0, -0.17)
    assert (row["data_sha256"], row["source"], row["baseline_mae"]) == (SHA, "demo", 122624.8)
    for absent in ("mae_low", "closed_from", "run_id", "period_label", "results_path", "alert"):
        assert row[absent] is None
    assert json.loads(row["summary"]) == trial


def test_a_summary_of_several_models_makes_one_row_each_with_the_newer_keys() -> None:
    block = summary()["data"]
    other = {**block, "metrics": {**block["metrics"], "MAE": 7.0}}
    other["metrics_ci"] = {"MAE": [6.0, 8.0], "MedAE": [1.0, 2.0], "RMSE": [3.0, 4.0]}
    trial = summary(
        models={"heuristic": block, "pkg.mod:two_days": other},
        period={"closed_from": "2016-03-01", "closed_to": "2016-03-08T00:00:00+02:00"},
        run_id="run-1",
        period_label="2016-W09",
        results_path="/srv/results/x.parquet",
        alert={"flagged": True, "reason": "MAE interval above the reference"},
        timestamp="2026-01-01T02:00:00+02:00",
    )
    rows = rows_from_summary(trial)
    assert [row["model"] for row in rows] == ["heuristic", "pkg.mod:two_days"]
    assert rows[1]["mae"] == 7.0 and (rows[1]["mae_low"], rows[1]["rmse_high"]) == (6.0, 4.0)
    assert rows[0]["mae_low"] is None
    assert {row["timestamp"] for row in rows} == {"2026-01-01T00:00:00+00:00"}
    assert rows[0]["closed_to"] == "2016-03-07T22:00:00+00:00"
    assert (rows[0]["run_id"], rows[0]["period_label"], rows[0]["alert"]) == (
        "run-1",
        "2016-W09",
        1,
    )


def test_a_summary_without_id_or_data_is_refused_not_spooled(tmp_path: Path) -> None:
    with pytest.raises(SummaryError):
        rows_from_summary({"timestamp": "2026-01-01T00:00:00+00:00"})
    broken = summary()
    del broken["data"]
    with pytest.raises(SummaryError):
        record_trial(broken, sqlite_url(tmp_path / "h.sqlite"), tmp_path / "spool")
    assert pending_spool(tmp_path / "spool") == 0


# --- Writing and reading -------------------------------------------------------------------------


def test_append_is_idempotent_and_reads_filter_and_order(any_url: str) -> None:
    trials = [
        summary(120.0, "2026-01-02T00:00:00+00:00", trial_id="b"),
        summary(100.0, "2026-01-01T00:00:00+00:00", trial_id="a", run_id="r1"),
        summary(90.0, "2026-01-03T00:00:00+00:00", trial_id="c", model="other", run_id="r1"),
    ]
    with open_history(any_url) as store:
        assert [store.append(trial) for trial in trials] == [1, 1, 1]
        assert store.append(trials[0]) == 0  # a retried write adds nothing and does not fail
    rows = read_trials(any_url)
    assert [(row.id, row.MAE) for row in rows] == [("a", 100.0), ("b", 120.0), ("c", 90.0)]
    assert [row.id for row in read_trials(any_url, last=2)] == ["b", "c"]
    assert [row.id for row in read_trials(any_url, model="heuristic")] == ["a", "b"]
    assert [row.id for row in read_trials(any_url, run_id="r1", last=1)] == ["c"]
    assert read_trials(any_url, model="nobody") == []


def test_reading_a_missing_sqlite_history_creates_nothing(tmp_path: Path) -> None:
    assert read_trials(sqlite_url(tmp_path / "none.sqlite")) == []
    assert not (tmp_path / "none.sqlite").exists()


def awkward_trials() -> list[dict[str, Any]]:
    """Trials whose order and values differ between careless backends: same timestamps with
    ids and models that sort differently by locale than by code point, a seed past 2**63,
    integral floats, nulls, non-ASCII, several models in one trial."""
    at = "2026-03-01T10:00:00+00:00"
    block = summary()["data"]
    return [
        summary(1.0, at, trial_id="a-trial", model="b-model", seed=2**64 - 1),
        summary(2.0, at, trial_id="B-trial", model="a-model", seed=0),
        summary(None, at, trial_id="a-trial", model="B-model"),
        summary(3.25, "2026-03-01T12:00:00+02:00", trial_id="é", run_id="r"),
        summary(
            1e-300,
            "2026-02-28T23:59:59.123456+00:00",
            trial_id="multi",
            models={"Zeta": block, "alpha": {**block, "metrics_ci": {"MAE": [99, 101]}}},
            alert={"flagged": False},
            period={"closed_from": "2016-03-01", "closed_to": None},
        ),
    ]


# --- Many writers at once ------------------------------------------------------------------------


# --- The server goes away ------------------------------------------------------------------------


def test_a_spool_file_already_recorded_is_sent_again_harmlessly(tmp_path: Path) -> None:
    url, spool = sqlite_url(tmp_path / "h.sqlite"), tmp_path / "spool"
    trial = summary(trial_id="twice")
    record_trial(trial, url, spool)
    spool_trial(trial, spool)  # a crash between the commit and the delete
    (spool / "garbage.json").write_text("{not json")
    outcome = record_trial(summary(trial_id="next"), url, spool)
    assert outcome.recorded and outcome.sent_from_spool == 1
    assert [row.id for row in read_trials(url)].count("twice") == 1
    assert pending_spool(spool) == 0 and (spool / "garbage.rejected").exists()
    assert "set aside" in outcome.message


# --- Files written by today's release, and files that are not histories --------------------------

# Today's code (ticketeval.core at the time of the split), copied verbatim: the files it wrote
# are what users have.
CURRENT_HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    runner TEXT,
    model TEXT,
    batch_size INTEGER,
    seed INTEGER,
    num_obs INTEGER,
    mae REAL,
    medae REAL,
    mse REAL,
    r2 REAL,
    rmse REAL,
    summary TEXT NOT NULL
)
"""


def append_with_current_code(path: Path, summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=60.0)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(CURRENT_HISTORY_SCHEMA)
        metrics = summary["data"]["metrics"]
        row = (
            summary["id"], summary["timestamp"], summary.get("runner"), summary.get("model"),
            summary.get("batch_size"), summary.get("seed"), summary["data"]["num_obs"],
            metrics.get("MAE"), metrics.get("MedAE"), metrics.get("MSE"), metrics.get("R2"),
            metrics.get("RMSE"), json.dumps(summary),
        )  # fmt: skip
        with connection:
            connection.execute("INSERT INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
    finally:
        connection.close()


@pytest.fixture
def current_file(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A history written by the current release: three trials, one with a NaN-free null."""
    path = tmp_path / "old" / "history.sqlite"
    trials = [
        summary(100.0, "2026-01-01T06:30:00+00:00"),
        summary(None, "2026-01-02T06:30:00+00:00", model="my_models:two_days"),
        summary(90.0, "2026-01-03T06:30:00+00:00"),
    ]
    for trial in trials:
        append_with_current_code(path, trial)
    return path, trials


def test_a_history_written_by_the_current_release_is_migrated_keeping_every_trial(
    current_file: tuple[Path, list[dict[str, Any]]],
) -> None:
    path, trials = current_file
    rows = read_trials(sqlite_url(path))
    assert [row.id for row in rows] == [trial["id"] for trial in trials]
    assert [row.MAE for row in rows] == [100.0, None, 90.0]
    assert rows[1].model == "my_models:two_days" and rows[0].seed == 42
    # New columns, derived from each trial's summary JSON.
    assert {(row.num_scored, row.data_sha256, row.source, row.skill) for row in rows} == {
        (990, SHA, "demo", -0.25)
    }
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("SELECT value FROM ticketeval_meta").fetchall() == [
            (str(SCHEMA_VERSION),)
        ]
        stored = connection.execute("SELECT summary FROM trials ORDER BY timestamp").fetchall()
        assert [json.loads(text) for (text,) in stored] == trials
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    record_trial(summary(80.0, "2026-01-04T06:30:00+00:00"), sqlite_url(path), path.parent)
    assert len(read_trials(sqlite_url(path))) == 4


def test_a_failed_migration_leaves_the_old_file_as_it_was(
    current_file: tuple[Path, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, trials = current_file
    calls = []

    def failing_on_the_third(record: Any) -> list[dict[str, Any]]:
        calls.append(record)
        if len(calls) == 3:
            raise OSError("disk went away")
        return original(record)

    original = history_rows.rows_from_v1
    monkeypatch.setattr(history_sql, "rows_from_v1", failing_on_the_third)
    with pytest.raises(HistoryError, match="disk went away"):
        open_history(sqlite_url(path))
    with contextlib.closing(sqlite3.connect(path)) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
        assert tables == {"trials", "sqlite_autoindex_trials_1"}
        assert connection.execute("SELECT COUNT(*) FROM trials").fetchone() == (3,)
    monkeypatch.undo()
    assert len(read_trials(sqlite_url(path))) == 3


def test_a_history_from_a_newer_release_is_refused_in_one_line(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "h.sqlite")
    record_trial(summary(), url, tmp_path / "spool")
    with contextlib.closing(sqlite3.connect(tmp_path / "h.sqlite")) as connection, connection:
        connection.execute("UPDATE ticketeval_meta SET value = '99'")
    with pytest.raises(HistoryError) as caught:
        read_trials(url)
    assert "newer ticketeval (schema 99" in expect_error(caught.value, None, prefix="")
    outcome = record_trial(summary(), url, tmp_path / "spool")
    assert outcome.spooled and "newer ticketeval" in outcome.message


def make_truncated(path: Path) -> None:
    with open_history(sqlite_url(path)) as store:
        # A fixture's file, not a durability test: no fsync per appended trial.
        store.connection.execute("PRAGMA synchronous = OFF")
        for day in range(300):
            store.append(summary(float(day), f"2026-01-01T00:00:{day % 60:02d}+00:00"))
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 3)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_bytes(os.urandom(8192)), "not a SQLite database or is corrupt"),
        (make_truncated, "not a SQLite database or is corrupt"),
        (
            lambda p: sqlite3.connect(p).execute("CREATE TABLE trials (id TEXT, verdict TEXT)"),
            "has a 'trials' table that is not a ticketeval history (columns: id, verdict)",
        ),
        (
            lambda p: sqlite3.connect(p).execute("CREATE TABLE invoices (number INTEGER)"),
            "is a SQLite database but not a ticketeval history (tables: invoices)",
        ),
    ],
    ids=["random-bytes", "truncated", "foreign-trials-table", "other-tables"],
)
def test_a_file_that_is_not_a_usable_history_is_one_line(
    tmp_path: Path, make: Any, expected: str
) -> None:
    path = tmp_path / "h.sqlite"
    make(path)
    before = path.read_bytes()
    with pytest.raises(HistoryError) as caught:
        read_trials(sqlite_url(path))
    assert expected in expect_error(caught.value, None, prefix="")
    outcome = record_trial(summary(), sqlite_url(path), tmp_path / "spool")
    assert outcome.spooled and expected in outcome.message
    assert path.read_bytes() == before  # nothing written into someone else's file


def as_nobody(queue: Any, url: str, spool: str) -> None:
    """In a forked child: drop root (which writes anything) and use the history."""
    os.setgid(65534)
    os.setuid(65534)
    results: dict[str, Any] = {"rows": None, "write_error": None}
    try:
        results["rows"] = [row.id for row in read_trials(url)]
        try:
            with open_history(url) as store:
                store.append(summary())
        except HistoryError as error:
            results["write_error"] = str(error)
        results["outcome"] = record_trial(summary(), url, Path(spool)).message
    except Exception as error:  # reported to the parent, which asserts on it
        results["unexpected"] = f"{type(error).__name__}: {error}"
    queue.put(results)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy"])
@pytest.mark.parametrize("directory_writable", [False, True], ids=["read-only-dir", "file-only"])
def test_a_read_only_history_is_read_but_not_written(
    directory_writable: bool, legacy: bool
) -> None:
    base = Path(tempfile.mkdtemp())  # pytest's tmp dirs are private to root
    try:
        base.chmod(0o755)
        path = base / "history.sqlite"
        url = sqlite_url(path)
        for day in (1, 2):
            trial = summary(trial_id=f"t{day}", timestamp=f"2026-01-0{day}T00:00:00+00:00")
            if legacy:  # a file of today's release, which cannot be migrated: read as it is
                append_with_current_code(path, trial)
            else:
                record_trial(trial, url, base / "unused")
        path.chmod(0o444)
        if directory_writable:
            base.chmod(0o777)
        spool = base / "spool"
        spool.mkdir()
        shutil.chown(spool, 65534, 65534)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=as_nobody, args=(queue, url, str(spool)))
        child.start()
        results = queue.get(timeout=60)
        child.join(timeout=60)
        assert "unexpected" not in results, results
        assert results["rows"] == ["t1", "t2"]
        assert "is read-only: trials can be read but not recorded" in expect_error(
            results["write_error"], None, prefix=""
        )
        assert "is spooled in" in results["outcome"] and "read-only" in results["outcome"]
        assert pending_spool(spool) == 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_history_locked_too_long_spools_the_trial(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "h.sqlite")
    record_trial(summary(), url, tmp_path / "spool")
    with contextlib.closing(sqlite3.connect(tmp_path / "h.sqlite", isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        outcome = record_trial(summary(), url, tmp_path / "spool", busy_timeout=0.05)
        other.execute("ROLLBACK")
    assert outcome.spooled and "stayed locked by another process for more than 0.05 s" in (
        outcome.message
    )
    assert record_trial(summary(), url, tmp_path / "spool").sent_from_spool == 1
    assert len(read_trials(url)) == 3


def test_the_busy_timeout_reaches_the_driver(any_url: str) -> None:
    with open_history(any_url, busy_timeout=12.5) as store:
        if store.backend == "sqlite":
            setting = store.connection.execute("PRAGMA busy_timeout").fetchone()[0]
        else:
            setting = store.connection.execute("SHOW lock_timeout").fetchone()[0]
    assert str(setting) in ("12500", "12500ms")


def test_a_full_disk_spools_the_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = sqlite_url(tmp_path / "h.sqlite")
    record_trial(summary(), url, tmp_path / "spool")
    connect = history_sql.HistoryStore._connect_sqlite

    def full(self: history_sql.HistoryStore, create: bool) -> Any:
        # SQLite's own limit makes it fail exactly as on a full disk (SQLITE_FULL).
        connection = connect(self, create)
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")
        return connection

    monkeypatch.setattr(history_sql.HistoryStore, "_connect_sqlite", full)
    big = summary(notes="x" * 100_000)
    outcome = record_trial(big, url, tmp_path / "spool")
    assert outcome.spooled and "the disk holding the history" in expect_error(
        outcome.message, None, prefix=""
    )
    monkeypatch.undo()
    assert record_trial(summary(), url, tmp_path / "spool").sent_from_spool == 1
    assert len(read_trials(url)) == 3


# --- Places --------------------------------------------------------------------------------------


def test_the_default_history_is_in_the_data_directory_not_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TICKETEVAL_HISTORY_DIR", raising=False)
    monkeypatch.delenv("TICKETEVAL_HISTORY_PATH", raising=False)
    monkeypatch.delenv("TICKETEVAL_HISTORY_URL", raising=False)
    settings = load_settings()
    assert settings.history == sqlite_url(tmp_path / "share" / "ticketeval" / "history.sqlite")
    assert settings.spool_dir == tmp_path / "share" / "ticketeval" / "spool"


def crash_after_commit(path: str) -> None:
    """Append with today's code but die before closing: the trial is only in the -wal."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    with connection:
        connection.execute(
            "INSERT INTO trials (id, timestamp, model, summary) VALUES (?, ?, ?, ?)",
            ("in-the-wal", "2026-01-09T00:00:00+00:00", "heuristic", json.dumps(summary())),
        )
    os._exit(0)


def test_the_history_in_the_cache_directory_is_moved_once(
    current_file: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    old, trials = current_file
    crasher = multiprocessing.get_context("fork").Process(
        target=crash_after_commit, args=(str(old),)
    )
    crasher.start()
    crasher.join(timeout=60)
    assert old.with_name("history.sqlite-wal").stat().st_size > 0
    data_dir = tmp_path / "data-home"
    message = history_legacy.move_legacy_history(old.parent, data_dir)
    assert message and str(old) in message and str(data_dir / "history.sqlite") in message
    for leftover in ("history.sqlite", "history.sqlite-wal", "history.sqlite-shm"):
        assert not old.with_name(leftover).exists()
    moved = read_trials(sqlite_url(data_dir / "history.sqlite"))
    assert len(moved) == len(trials) + 1 and moved[-1].id == "in-the-wal"
    append_with_current_code(old, summary())  # an old release wrote there again meanwhile
    assert history_legacy.move_legacy_history(old.parent, data_dir) is None
    assert old.exists()


# --- The regression flag -------------------------------------------------------------------------


def row(
    mae: float | None,
    interval: tuple[float, float] | None = None,
    *,
    model: str = "m",
    data: str | None = "d1",
) -> HistoryRow:
    base = rows_from_summary(summary(mae, model=model))[0]
    low, high = interval or (None, None)
    return HistoryRow.from_row({**base, "mae_low": low, "mae_high": high, "data_sha256": data})


def test_a_trial_is_flagged_only_when_its_interval_lies_above_every_earlier_one() -> None:
    rows = [
        row(100, (90, 110)),
        row(105, (95, 115)),  # overlaps: noise
        row(118, (112, 124)),  # starts below the second's upper bound (115): not flagged
        row(300, (250, 350), data="d2"),  # other data: nothing to compare with
        row(300, (250, 350), model="other"),  # another model: nothing to compare with
        row(140, (125, 155)),  # entirely above 90-110, 95-115 and 112-124 (not d2's 350)
        row(None),
    ]
    assert flag_regressions(rows) == [False, False, False, False, False, True, False]
    # With a window of one, only the previous comparable trial is the reference.
    assert flag_regressions(rows[:3], window=1) == [False, False, False]


def test_trials_without_intervals_fall_back_to_the_median_rule() -> None:
    maes = [100.0, 120.0, 80.0, 124.0, 126.0, None]
    rows = [row(mae) for mae in maes]
    # Medians of the earlier trials: -, 100, 110, 100, 110; 126 > 110 * 1.25 is false.
    assert flag_regressions(rows, threshold=0.25) == [False] * 6
    assert flag_regressions(rows, threshold=0.2) == [False, False, False, True, False, False]
    # A trial whose data is unknown is never compared.
    assert flag_regressions([row(1.0, data=None), row(9.0, data=None)]) == [False, False]
