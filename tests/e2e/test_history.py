"""ticketeval against a real PostgreSQL history: installed processes at once; in-process, the
server gone mid-run, a wrong password, and the same `history --json` as the default SQLite file.

One PostgreSQL server for the session (tests/postgres.py), a fresh database per test.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.emulator import CloudEmulator
from tests.support.helpers import (
    assert_no_process_left,
    expect_error,
    invoke,
    start_ticketeval,
)
from tests.support.postgres import stopped
from tests.unit.history.test_store import awkward_trials
from tests.unit.pipeline.test_saturn import REGISTER, cloud, cloud_env, home
from ticketeval.history.spool import spool_for, spooled_files
from ticketeval.history.store import read_trials, record_trial, redact_url
from ticketeval.settings import load_settings

pytestmark = pytest.mark.usefixtures("without_dashboard")  # the cluster is not the point here

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

__all__ = ["cloud", "cloud_env", "home"]  # the emulator's fixtures, imported so pytest finds them


EVALUATE = ("evaluate", "--batch-size", "100")


def finish(processes: Sequence[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    """Wait for every process (bounded); their exit codes, stdout and stderr."""
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=240)
        results.append((process.returncode, stdout, stderr))
    return results


def count(url: str) -> tuple[int, int]:
    """COUNT(*) and COUNT(DISTINCT id) of the trials table, asked of the server directly."""
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as connection:
        row = connection.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM trials").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_ten_processes_at_once_record_ten_trials_none_twice(
    data_dir: Path, postgres_url: str, process_marker: str, tmp_path: Path
) -> None:
    """evaluate and run-local at once, six writing to PostgreSQL and four to the default SQLite
    file (one batch of processes for both histories: each process costs its imports)."""
    server = {"TICKETEVAL_HISTORY_URL": postgres_url}
    evaluate = [(*EVALUATE, "--seed", str(seed), "--json") for seed in range(8)]
    run_local = ("run-local", "--batch-size", "100", "--workers", "1", "--threads-per-worker", "1",
                 "--quiet")  # fmt: skip
    # The SQLite run-local runs as cron would: nothing printed on success (cron sends no mail),
    # the trial in the log file. (It was test_hostile_cli's own run-local --quiet.)
    log = tmp_path / "ticketeval.log"
    cron = (*run_local, "--log-file", str(log), "--fail-if-mae-above", "1e12")
    runs = [(command, server) for command in [*evaluate[:5], (*run_local, "--json")]]
    runs += [(command, {}) for command in [*evaluate[5:], cron]]

    results = finish([start_ticketeval([*command], env=env) for command, env in runs])

    sqlite = load_settings().history
    summaries: dict[str, list[dict[str, Any]]] = {postgres_url: [], sqlite: []}
    for (code, stdout, stderr), (command, env) in zip(results, runs, strict=True):
        assert code == 0, stderr
        assert "Traceback" not in stderr, stderr
        if command == cron:
            assert (stdout, stderr) == ("", "")
            stdout = log.read_text().splitlines()[-1].split(" ", 1)[1]
        summary = json.loads(stdout)
        assert summary["data"]["num_obs"] == 100
        history = env.get("TICKETEVAL_HISTORY_URL", sqlite)
        assert summary["recorded"]["history"] == redact_url(history)
        assert summary["recorded"]["spooled"] is False
        summaries[history].append(summary)
    for history, expected in ((postgres_url, 5), (sqlite, 3)):
        runners = sorted(s["runner"] for s in summaries[history])
        assert runners == ["evaluate"] * expected + ["run-local"]
        rows = read_trials(history)
        assert sorted(row.id for row in rows) == sorted(s["id"] for s in summaries[history])
        assert sorted(row.runner for row in rows) == runners
    assert count(postgres_url) == (6, 6)
    listed = invoke("history", "--json")  # the SQLite history, as `history --json` lists it
    assert sorted(row["id"] for row in json.loads(listed.stdout)) == sorted(
        s["id"] for s in summaries[sqlite]
    )
    assert len({row.id for row in read_trials(sqlite)}) == 4
    assert spooled_files(spool_for(data_dir / "spool", postgres_url)) == []
    assert_no_process_left(process_marker)


def test_a_trial_made_while_the_server_is_down_is_spooled_then_sent_first(
    data_dir: Path, postgres_server: PostgresServer, postgres_url: str
) -> None:
    # In-process: the server going away is the point, not the process.
    env = {"TICKETEVAL_HISTORY_URL": postgres_url}
    with stopped(postgres_server):
        down = invoke(*EVALUATE, "--seed", "1", "--json", env=env)

    line = expect_error(down, 7)
    first = json.loads(down.stdout)
    assert f"Trial {first['id']} was not recorded" in line
    assert "cannot reach the history server" in line and "spooled" in line
    assert redact_url(postgres_url) in line
    [spooled] = spooled_files(spool_for(data_dir / "spool", postgres_url))
    assert json.loads(spooled.read_text())["id"] == first["id"]

    waiting = invoke("history", env=env)
    assert waiting.exit_code == 0, waiting.output
    assert "1 trial(s) wait in the spool" in waiting.stderr
    assert read_trials(postgres_url) == []

    back = invoke(*EVALUATE, "--seed", "2", "--json", env=env)
    assert back.exit_code == 0, back.output
    second = json.loads(back.stdout)
    assert "Sent 1 spooled trial(s) first" in back.stderr
    rows = read_trials(postgres_url)
    assert {row.id for row in rows} == {first["id"], second["id"]}
    assert count(postgres_url) == (2, 2)
    assert spooled_files(spool_for(data_dir / "spool", postgres_url)) == []


def test_a_wrong_password_is_one_line_and_never_written_anywhere(
    data_dir: Path, postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    # In-process: what is printed, logged and spooled is the point, not the process.
    wrong = "not-the-password-7f3e"
    url = postgres_url.replace(postgres_server.password, wrong)
    log = tmp_path / "ticketeval.log"
    env = {"TICKETEVAL_HISTORY_URL": url}

    evaluated = invoke(*EVALUATE, "--json", "--log-file", str(log), env=env)
    shown = invoke("history", env=env)

    line = expect_error(evaluated, 7)
    assert "refused the login" in line and "spooled" in line
    read_line = expect_error(shown, 4)
    assert "refused the login" in read_line
    [spooled] = spooled_files(spool_for(data_dir / "spool", url))
    written = [
        evaluated.stdout, evaluated.stderr, shown.stdout, shown.stderr, log.read_text(),
        spooled.read_text(),
    ]  # fmt: skip
    for text in written:
        assert wrong not in text
    assert "postgresql://" not in spooled.read_text()  # the spool holds the summary, not the URL
    assert json.loads(spooled.read_text())["id"] == json.loads(evaluated.stdout)["id"]


def test_postgresql_and_the_default_sqlite_show_the_same_history_json(
    isolated_environment: Path, postgres_url: str
) -> None:
    default = load_settings()
    assert default.history.startswith("sqlite:")
    for trial in awkward_trials():
        for url in (default.history, postgres_url):
            assert record_trial(trial, url, default.spool_dir).recorded

    on_sqlite = invoke("history", "--json")
    on_postgres = invoke("history", "--json", env={"TICKETEVAL_HISTORY_URL": postgres_url})

    assert (on_sqlite.exit_code, on_postgres.exit_code) == (0, 0), on_postgres.output
    assert len(json.loads(on_sqlite.stdout)) == 6
    assert on_postgres.stdout == on_sqlite.stdout


# -- register: where a registered flow's trials go ---------------------------------------------

TEAM_URL = "postgresql://ada:pod-s3cret-91c2@db.example.org:5432/tickets"


def test_register_gives_the_flow_the_team_history_without_its_password(
    cloud: CloudEmulator, cloud_env: dict[str, str]
) -> None:
    # In-process, as tests/unit/pipeline/test_saturn.py registers: a process is not the point.
    result = invoke(*REGISTER, env={**cloud_env, "TICKETEVAL_HISTORY_URL": TEAM_URL})

    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr
    details = json.loads(result.stdout)
    assert details["history"] == "postgresql://ada@db.example.org:5432/tickets"
    [registered] = cloud.flows
    parameters = {p["name"]: p["default"] for p in registered.serialized["parameters"]}
    assert parameters["history-url"] == details["history"]
    # The password is nowhere: not printed, not in Prefect Cloud's copy, not in Saturn's pickle.
    sent = [
        result.stdout,
        result.stderr,
        *(r.body.decode(errors="replace") for r in cloud.received),
    ]
    sent += [content.decode("latin-1") for content in cloud.contents.values()]
    assert all("pod-s3cret-91c2" not in text for text in sent)


@pytest.mark.parametrize("url", [None, "sqlite:////srv/history.sqlite"])
def test_register_warns_when_the_trials_would_stay_on_the_pods_disk(
    cloud: CloudEmulator, cloud_env: dict[str, str], url: str | None
) -> None:
    env = {**cloud_env, **({"TICKETEVAL_HISTORY_URL": url} if url else {})}
    result = invoke(*REGISTER, "--dry-run", env=env)

    assert result.exit_code == 0, result.output
    # One warning (beside the dry run's note that the sizes were not checked).
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert "TICKETEVAL_HISTORY_URL" in line
    details = json.loads(result.stdout)
    assert details["parameters"]["history-url"] is None
    assert details["history"].startswith("the pod's own")
    assert cloud.received == []
