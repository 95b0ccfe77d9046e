"""The nightly trial as a Saturn job, end to end, against the loopback Jobs emulator: deploy
(twice: nothing changes), start (the emulated pod runs `ticketeval run-local --saturn
--since-last` with its own HOME, attaches to the job's Dask cluster, fetches the data from
TICKETEVAL_DATA_URL and records the trial in a real PostgreSQL through the job's secret), start
again (nothing new), status and logs of both runs, stop, delete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import expect_error, invoke, run_ticketeval, zip_of
from tests.support.jobs_emulator import JobsEmulator, running_jobs_emulator
from tests.support.loopback import LoopbackServer, loopback, serve
from ticketeval.data import demo, parsing
from ticketeval.history.store import read_trials

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.e2e
__all__ = ["loopback"]  # the fixture, imported so pytest finds it here

SATURN_TOKEN = "saturn-token-e2e-31f0"
NAME = "ticketeval-nightly"
DEPLOY = ("job", "deploy", "--workers", "3", "--worker-size", "xlarge", "--scheduler-size",
          "medium", "--instance-size", "large", "--schedule", "30 6 * * *", "--json")  # fmt: skip


@pytest.fixture
def saturn(tmp_path: Path) -> Iterator[JobsEmulator]:
    # No download backoff in the pods; nothing else of the test's environment reaches them. The
    # emulator stops every pod still running when it stops (each in its own process group).
    pod_env = {"TICKETEVAL_RETRY_BACKOFF": "0"}
    with running_jobs_emulator(
        saturn_token=SATURN_TOKEN, pods_dir=tmp_path / "pods", pod_env=pod_env
    ) as emulator:
        yield emulator


@pytest.fixture
def data_server(loopback: type[LoopbackServer]) -> Iterator[LoopbackServer]:
    """Where the pods download the event log from (TICKETEVAL_DATA_URL): 1,500 demo events."""
    body = zip_of({parsing.CSV_NAME: demo.demo_event_log(1_500, seed=3)})
    with loopback([serve(body)]) as server:
        yield server


def test_a_deployed_job_records_its_trial_in_postgresql_and_then_finds_nothing_new(
    saturn: JobsEmulator,
    data_server: LoopbackServer,
    postgres_server: PostgresServer,
    postgres_url: str,
    isolated_environment: Path,
) -> None:
    env = {
        "SATURN_BASE_URL": saturn.base_url,
        "SATURN_TOKEN": SATURN_TOKEN,
        "TICKETEVAL_HISTORY_URL": postgres_url,
        "TICKETEVAL_DATA_URL": data_server.url("/incident_event_log.zip"),
    }
    outputs: list[str] = []

    def run(*arguments: str) -> str:
        result = invoke(*arguments, env=env)
        outputs.extend([result.stdout, result.stderr])
        assert result.exit_code == 0, result.output
        return result.stdout

    # Deploy: the secret holds the history's URL; the recipe only names it.
    first = json.loads(run(*DEPLOY))
    job = saturn.job_named(NAME)
    assert (first["created"], first["changed"], first["id"]) == (True, True, job.id)
    assert first["url"] == f"{saturn.base_url}/dash/resources/job/{job.id}"
    assert saturn.secret_value("ticketeval-history-url") == postgres_url
    assert postgres_url not in json.dumps(job.recipe)
    assert job.recipe["spec"]["environment_variables"] == {
        "TICKETEVAL_DATA_URL": env["TICKETEVAL_DATA_URL"]
    }
    assert (job.cron, job.scheduled) == ("30 6 * * *", True)

    # Deploy again: nothing changes, and nothing that would change anything is sent.
    sent_before = len(saturn.received)
    stored = json.dumps(job.recipe)
    second = json.loads(run(*DEPLOY))
    assert (second["created"], second["changed"], second["id"]) == (False, False, job.id)
    again = [(r.method, r.path) for r in saturn.received[sent_before:]]
    assert ("PUT", "/api/recipes") not in again
    assert not [request for request in again if request[1].endswith("/schedule")]
    assert json.dumps(saturn.job_named(NAME).recipe) == stored and len(saturn.jobs) == 1

    # Start: the pod runs run-local --saturn --since-last on the job's cluster.
    run("job", "start")
    saturn.wait_for_runs(job)
    [first_run] = job.runs
    assert first_run.exit_code == 0, first_run.log()
    [trial] = read_trials(postgres_url)
    assert (trial.runner, trial.model) == ("saturn-job", "heuristic")
    assert trial.num_obs is not None and trial.num_obs > 0
    [cluster] = saturn.cluster_requests
    assert (cluster["job"], cluster["num_workers"]) == (NAME, 3)
    assert cluster["worker"]["instance_type"] == "xlarge"
    assert saturn.closed_clusters == ["dask-1"]  # closed as the run ended
    assert data_server.requests  # the pod's data came from TICKETEVAL_DATA_URL
    assert first_run.home.is_relative_to(saturn.pods_dir)
    assert not (isolated_environment / "history.sqlite").exists()

    # Start again: nothing closed since, so nothing new is scored or recorded.
    run("job", "start")
    saturn.wait_for_runs(job)
    second_run = job.runs[1]
    assert second_run.exit_code == 0, second_run.log()
    assert "Nothing new for heuristic" in second_run.log()
    assert len(read_trials(postgres_url)) == 1

    # Status and logs show both runs.
    status = json.loads(run("job", "status", "--json"))
    assert [r["run"] for r in status["runs"]] == [second_run.pod_name, first_run.pod_name]
    assert [r["exit_code"] for r in status["runs"]] == [0, 0]
    assert all(r["start"] and r["end"] for r in status["runs"])
    assert status["schedule"] == "30 6 * * *"
    table = run("job", "status")
    assert first_run.pod_name in table and second_run.pod_name in table
    every = run("job", "logs", "--all")
    assert every.index("MAE") < every.index("Nothing new for heuristic")
    last = run("job", "logs")
    assert "Nothing new for heuristic" in last and "MAE" not in last
    as_json = json.loads(run("job", "logs", "--all", "--json"))
    assert [entry["run"] for entry in as_json] == [first_run.pod_name, second_run.pod_name]
    assert "MAE" in as_json[0]["logs"] and "Nothing new" in as_json[1]["logs"]

    # A running job is not deleted; stop, then delete.
    run("job", "start")
    busy = invoke("job", "delete", env=env)
    expect_error(busy, 6, "stop it first")
    run("job", "stop")
    stopped = job.runs[2]
    assert stopped.finished.is_set() and stopped.exit_code != 0
    assert json.loads(run("job", "status", "--json"))["runs"][0]["exit_code"] == stopped.exit_code
    run("job", "delete")
    assert saturn.jobs == {} and saturn.deleted_jobs == [job.id]
    gone = invoke("job", "status", env=env)
    expect_error(gone, 6, f"no job named {NAME!r}")

    # Nothing secret anywhere: not the token, not the database's password, in any output or log.
    logs = [run_.log() for run_ in job.runs]
    for text in [*outputs, *logs, gone.stderr, busy.stderr]:
        assert SATURN_TOKEN not in text
        assert postgres_server.password not in text


def test_logs_follow_reads_a_run_until_it_ends(
    saturn: JobsEmulator, data_server: LoopbackServer, postgres_url: str
) -> None:
    """`job start`, then the installed executable's `job logs --follow`, as a user runs it,
    which returns once the run has ended, with the whole trial in what it printed."""
    env = {
        "SATURN_BASE_URL": saturn.base_url,
        "SATURN_TOKEN": SATURN_TOKEN,
        "TICKETEVAL_HISTORY_URL": postgres_url,
        "TICKETEVAL_DATA_URL": data_server.url("/incident_event_log.zip"),
    }
    deployed = invoke("job", "deploy", "--schedule", "@daily", env=env)
    assert deployed.exit_code == 0, deployed.output
    started = invoke("job", "start", env=env)
    assert started.exit_code == 0, started.output

    followed = run_ticketeval("job", "logs", "--follow", env=env)

    assert followed.returncode == 0, followed.stderr
    [run_] = saturn.job_named(NAME).runs
    assert run_.finished.is_set() and run_.exit_code == 0, run_.log()
    assert "MAE" in followed.stdout
    assert run_.pod_name in followed.stderr
    assert len(read_trials(postgres_url)) == 1
