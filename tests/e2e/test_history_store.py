"""The trial history on a real PostgreSQL server, and many processes writing at once."""

from __future__ import annotations

import json
import logging
import multiprocessing
import sys
import traceback
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import expect_error
from tests.support.postgres import PostgresServer, stopped
from tests.unit.history.test_store import any_url, awkward_trials, summary
from ticketeval.errors import HistoryUnreachable
from ticketeval.history import store as history
from ticketeval.history.store import (
    HistoryRow,
    open_history,
    pending_spool,
    read_trials,
    record_trial,
)
from ticketeval.settings import sqlite_url

__all__ = ["any_url"]  # a fixture of the unit tests, imported so pytest finds it


def as_json(rows: list[HistoryRow]) -> str:
    """The rows as `ticketeval history --json` prints them (without the flags)."""
    return json.dumps([asdict(row) for row in rows], allow_nan=False)


def test_reading_an_empty_database_creates_nothing_until_the_first_append(
    postgres_url: str,
) -> None:
    import psycopg

    assert read_trials(postgres_url) == []
    with open_history(postgres_url, create=False) as store:
        with psycopg.connect(postgres_url) as connection:
            tables = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'"
            assert connection.execute(tables).fetchone() == (0,)
        assert store.append(summary(trial_id="first")) == 1
    assert [row.id for row in read_trials(postgres_url)] == ["first"]


def test_the_same_trials_read_back_identically_from_sqlite_and_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite = sqlite_url(tmp_path / "history.sqlite")
    for url in (sqlite, postgres_url):
        with open_history(url) as store:
            for trial in awkward_trials():
                store.append(trial)
    from_sqlite, from_postgres = read_trials(sqlite), read_trials(postgres_url)
    assert from_sqlite == from_postgres
    assert as_json(from_sqlite) == as_json(from_postgres)
    assert as_json(read_trials(sqlite, last=3)) == as_json(read_trials(postgres_url, last=3))
    assert [(row.id, row.model) for row in from_sqlite] == [
        ("multi", "Zeta"), ("multi", "alpha"), ("B-trial", "a-model"), ("a-trial", "B-model"),
        ("a-trial", "b-model"), ("é", "heuristic"),
    ]  # fmt: skip
    decoded = json.loads(as_json(from_postgres))
    assert decoded[4]["seed"] == 2**64 - 1 and decoded[1]["MAE_low"] == 99.0
    assert isinstance(decoded[2]["num_obs"], int) and decoded[3]["MAE"] is None


SHARED_ID = "the-same-trial-from-every-process"


def write_concurrently(url: str, spool_dir: str, index: int, start: Any) -> None:
    start.wait()
    own = summary(float(index), f"2026-01-01T00:00:{index:02d}+00:00", trial_id=f"own-{index}")
    outcomes = [
        record_trial(own, url, Path(spool_dir)),
        record_trial(own, url, Path(spool_dir)),  # a retried task writes the same trial again
        record_trial(summary(1.0, trial_id=SHARED_ID), url, Path(spool_dir)),
    ]
    sys.exit(0 if all(outcome.recorded for outcome in outcomes) else 3)


def test_eight_processes_writing_at_once_leave_every_trial_exactly_once(
    any_url: str, tmp_path: Path
) -> None:
    # Forked, not spawned: a spawned child imports this module (psycopg, pandas, ticketeval)
    # again, about a second of CPU each. Each child opens its own connection all the same.
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [
        context.Process(
            target=write_concurrently, args=(any_url, str(tmp_path / "spool"), i, start)
        )
        for i in range(8)
    ]
    for worker in workers:
        worker.start()
    start.set()  # the history does not exist yet: all eight create it at once, too
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * 8
    ids = [row.id for row in read_trials(any_url)]
    assert sorted(ids) == sorted([f"own-{i}" for i in range(8)] + [SHARED_ID])
    assert pending_spool(tmp_path / "spool") == 0


def test_a_trial_is_spooled_while_the_server_is_down_and_sent_first_once_it_is_back(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    first, second = summary(1.0, trial_id="while-down"), summary(2.0, trial_id="after")
    with open_history(postgres_url):
        pass  # the history exists before the outage
    with stopped(postgres_server):
        outcome = record_trial(first, postgres_url, spool)
        assert outcome.spooled and not outcome.recorded
        assert "cannot reach the history server" in expect_error(
            outcome.reason or "", None, prefix=""
        )
        assert postgres_server.password not in outcome.message and "***" in outcome.message
        assert pending_spool(spool) == outcome.pending == 1
        with pytest.raises(HistoryUnreachable):
            read_trials(postgres_url)
        postgres_server.start()
    outcome = record_trial(second, postgres_url, spool)
    assert outcome.recorded and outcome.sent_from_spool == 1 and outcome.pending == 0
    assert "Sent 1 spooled trial" in outcome.message
    assert pending_spool(spool) == 0 and not list(spool.iterdir())
    import psycopg

    with psycopg.connect(postgres_url) as connection:
        # Commit order: the spooled trial's transaction came first.
        order = connection.execute("SELECT id FROM trials ORDER BY xmin::text::bigint").fetchall()
    assert order == [("while-down",), ("after",)]


def test_the_wrong_password_is_one_line_and_never_shown(
    postgres_server: PostgresServer,
    postgres_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wrong-" + uuid.uuid4().hex
    url = postgres_url.replace(f":{postgres_server.password}@", f":{secret}@")
    assert secret in url
    with pytest.raises(HistoryUnreachable) as caught:
        open_history(url)
    message = expect_error(caught.value, None, prefix="")
    assert "refused the login" in message and "password authentication failed" in message
    assert "ada:***@127.0.0.1" in message
    printed = "".join(traceback.format_exception(caught.value))
    outcome = record_trial(summary(), url, tmp_path / "spool")
    assert outcome.spooled
    for text in (message, printed, outcome.message, repr(outcome), caplog.text):
        assert secret not in text
    assert secret not in (tmp_path / "spool").joinpath(outcome.spool_file.name).read_text()  # type: ignore[union-attr]


def test_a_local_history_is_copied_to_a_server_once(tmp_path: Path, postgres_url: str) -> None:
    local = sqlite_url(tmp_path / "h.sqlite")
    with open_history(local) as store:
        for trial in awkward_trials():
            store.append(trial)
    assert history.copy_history(local, postgres_url)["added"] == 6
    assert history.copy_history(local, postgres_url)["added"] == 0
    assert as_json(read_trials(postgres_url)) == as_json(read_trials(local))
