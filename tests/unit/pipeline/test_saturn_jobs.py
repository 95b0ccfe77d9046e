"""`ticketeval job`: the recipe against Saturn's JobRecipe schema, and each refusal as one line,
against the loopback Jobs emulator (tests/jobs_emulator.py). No job runs here: see
tests/test_jobs_e2e.py for the runs."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import expect_error, invoke
from tests.support.jobs_emulator import (
    SIZES,
    JobsEmulator,
    job_recipe_validator,
    running_jobs_emulator,
)

SATURN_TOKEN = "saturn-token-jobs-7d1e"
TEAM_PASSWORD = "team-s3cret-4f2a"
TEAM_URL = f"postgresql://ada:{TEAM_PASSWORD}@db.example.org:5432/tickets"
ACCEPTANCE = ("job", "deploy", "--workers", "3", "--worker-size", "xlarge",
              "--schedule", "30 6 * * *", "--dry-run", "--json")  # fmt: skip


@pytest.fixture
def saturn(tmp_path: Path) -> Iterator[JobsEmulator]:
    with running_jobs_emulator(saturn_token=SATURN_TOKEN, pods_dir=tmp_path / "pods") as emulator:
        yield emulator


@pytest.fixture
def saturn_env(saturn: JobsEmulator) -> dict[str, str]:
    return {"SATURN_BASE_URL": saturn.base_url, "SATURN_TOKEN": SATURN_TOKEN}


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        assert SATURN_TOKEN not in output
        assert TEAM_PASSWORD not in output


# -- the recipe ----------------------------------------------------------------------------------


def test_the_dry_run_recipe_validates_against_saturns_job_recipe_schema(
    saturn: JobsEmulator, saturn_env: dict[str, str]
) -> None:
    """The issue's acceptance: the recipe `--dry-run --json` prints is a valid JobRecipe (the
    schema of saturn-client 2026.2.1's API, tests/support/schemas), with the cluster,
    schedule and the
    history secret asked for; nothing is sent, and the history's URL is nowhere in it."""
    result = invoke(*ACCEPTANCE, env={**saturn_env, "TICKETEVAL_HISTORY_URL": TEAM_URL})

    assert result.exit_code == 0, result.output
    recipe = json.loads(result.stdout)
    assert list(job_recipe_validator().iter_errors(recipe)) == []
    spec = recipe["spec"]
    assert recipe["type"] == "job"
    assert spec["dask_cluster"]["num_workers"] == 3
    assert spec["dask_cluster"]["worker"]["instance_type"] == "xlarge"
    assert spec["schedule"] == "30 6 * * *"
    assert spec["secrets"] == [
        {"name": "ticketeval-history-url", "attachment_type": "environment_variable",
         "location": "TICKETEVAL_HISTORY_URL"}
    ]  # fmt: skip
    assert spec["command"] == "ticketeval run-local --saturn --since-last"
    assert "TICKETEVAL_HISTORY_URL" not in spec["environment_variables"]
    assert "db.example.org" not in result.stdout
    assert_no_secret(result.stdout, result.stderr)
    assert saturn.received == []


def test_the_schema_copy_refuses_what_saturn_requires() -> None:
    """The schema kept in the tests is not a stub: a recipe without the worker's size or the
    command fails it (so the acceptance test above could fail)."""
    result = invoke(*ACCEPTANCE)
    recipe = json.loads(result.stdout)
    del recipe["spec"]["dask_cluster"]["worker"]["instance_type"]
    del recipe["spec"]["command"]

    messages = sorted(error.message for error in job_recipe_validator().iter_errors(recipe))

    assert messages == [
        "'command' is a required property",
        "'instance_type' is a required property",
    ]


def test_the_yaml_dry_run_is_the_same_recipe_and_the_options_reach_the_command() -> None:
    import yaml  # type: ignore[import-untyped]

    options = ("--batch-size", "all", "--model", "heuristic", "--model", "m.skops",
               "--name", "tickets-eu", "--instance-size", "medium", "--open-only")  # fmt: skip
    as_yaml = invoke("job", "deploy", "--dry-run", *options)
    as_json = invoke("job", "deploy", "--dry-run", "--json", *options)

    assert as_yaml.exit_code == 0, as_yaml.output
    recipe = yaml.safe_load(as_yaml.stdout)
    assert recipe == json.loads(as_json.stdout)
    assert recipe["spec"]["name"] == "tickets-eu"
    assert recipe["spec"]["instance_type"] == "medium"
    assert recipe["spec"]["command"] == (
        "ticketeval run-local --saturn --since-last --batch-size all --model heuristic "
        "--model m.skops --open-only"
    )
    assert "not checked" in as_yaml.stderr


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [(("--schedule", "every night"), ("--schedule 'every night'", "five fields")),
     (("--name", "Nightly Trial"), ("--name 'Nightly Trial'", "lowercase")),
     (("--batch-size", "0"), ("--batch-size must be at least 1",)),
     (("--history-secret", "a b"), ("--history-secret 'a b'",))],
)  # fmt: skip
def test_bad_options_are_one_line_before_anything_is_sent(
    saturn: JobsEmulator,
    saturn_env: dict[str, str],
    arguments: tuple[str, ...],
    fragments: tuple[str, ...],
) -> None:
    result = invoke("job", "deploy", *arguments, env=saturn_env)

    expect_error(result, 2, *fragments)
    assert saturn.received == []


# -- refusals from Saturn, or of the history ------------------------------------------------------


def test_a_sqlite_history_is_refused_before_anything_is_sent(
    saturn: JobsEmulator, saturn_env: dict[str, str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/history.sqlite"
    for arguments in ((), ("--dry-run",)):
        result = invoke(
            "job", "deploy", *arguments, env={**saturn_env, "TICKETEVAL_HISTORY_URL": url}
        )
        expect_error(result, 2, "SQLite file", "pod's disk", "postgresql://")
    assert saturn.received == []
    assert saturn.jobs == {} and saturn.secrets == {}


def test_a_wrong_token_is_refused_in_one_line_without_the_token(
    saturn: JobsEmulator, saturn_env: dict[str, str]
) -> None:
    wrong = "not-the-token-0b9c"
    result = invoke(
        "job",
        "deploy",
        env={**saturn_env, "SATURN_TOKEN": wrong, "TICKETEVAL_HISTORY_URL": TEAM_URL},
    )

    expect_error(result, 6, "Saturn Cloud refused SATURN_TOKEN", "HTTP 401", "GET /api/status")
    assert wrong not in result.output
    assert [r.path for r in saturn.received] == ["/api/status"]
    assert saturn.received[0].headers["Authorization"] == f"token {wrong}"


def test_an_unknown_size_names_the_installations_sizes_and_changes_nothing(
    saturn: JobsEmulator, saturn_env: dict[str, str]
) -> None:
    result = invoke(
        "job", "deploy", "--worker-size", "huge",
        env={**saturn_env, "TICKETEVAL_HISTORY_URL": TEAM_URL},
    )  # fmt: skip

    expect_error(result, 2, "--worker-size 'huge'", ", ".join(SIZES))
    assert [r.path for r in saturn.received] == ["/api/status", "/api/info/servers"]
    assert saturn.jobs == {} and saturn.secrets == {}


def test_an_unreachable_api_is_a_network_error_naming_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = {"SATURN_BASE_URL": url, "SATURN_TOKEN": SATURN_TOKEN, "TICKETEVAL_HISTORY_URL": TEAM_URL}
    for command in ("deploy", "status"):
        result = invoke("job", command, env=env)
        expect_error(result, 4, url, "unreachable")


def test_an_api_older_than_the_recipe_schema_is_refused(
    saturn: JobsEmulator, saturn_env: dict[str, str]
) -> None:
    saturn.api_version = "2025.06.01"
    result = invoke("job", "deploy", env={**saturn_env, "TICKETEVAL_HISTORY_URL": TEAM_URL})

    expect_error(result, 6, "runs API 2025.06.01", "older than 2025.10.01", "register")
    assert [r.path for r in saturn.received] == ["/api/status"]


def test_no_history_here_and_no_secret_in_saturn_is_one_line(
    saturn: JobsEmulator, saturn_env: dict[str, str]
) -> None:
    result = invoke("job", "deploy", env=saturn_env)

    expect_error(result, 2, "no secret 'ticketeval-history-url'", "TICKETEVAL_HISTORY_URL")
    assert saturn.jobs == {}


def test_a_job_that_does_not_exist_is_one_line(
    saturn: JobsEmulator, saturn_env: dict[str, str]
) -> None:
    for command in ("start", "stop", "status", "logs", "delete"):
        result = invoke("job", command, "--name", "nope", env=saturn_env)
        expect_error(result, 6, "no job named 'nope'", "ticketeval job deploy")


def test_transient_answers_are_retried_and_a_start_is_never_sent_twice(
    saturn: JobsEmulator, saturn_env: dict[str, str]
) -> None:
    env = {**saturn_env, "TICKETEVAL_HISTORY_URL": TEAM_URL}
    saturn.fail_next = {"GET": 2, "PUT": 1}
    deployed = invoke("job", "deploy", "--json", env=env)
    assert deployed.exit_code == 0, deployed.output
    assert json.loads(deployed.stdout)["created"] is True
    assert saturn.fail_next == {"GET": 0, "PUT": 0}

    saturn.fail_next = {"POST": 1}
    started = invoke("job", "start", env=env)

    expect_error(started, 6, "HTTP 503", "POST /api/jobs/")
    assert [r.method for r in saturn.received].count("POST") == 2  # the secret, the one start
    assert saturn.job_named("ticketeval-nightly").runs == []


def test_a_secret_saturn_already_has_is_used_without_a_history_here(
    saturn: JobsEmulator, saturn_env: dict[str, str]
) -> None:
    saturn.secrets["team-history"] = ("s-1", TEAM_URL)
    result = invoke("job", "deploy", "--history-secret", "team-history", "--json", env=saturn_env)

    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)
    assert (details["secret"], details["history_secret"]) == ("existing", "team-history")
    assert saturn.secret_value("team-history") == TEAM_URL
    assert not [r for r in saturn.received if r.path.startswith("/api/secrets/")]


def test_a_changed_deploy_updates_the_same_job_and_no_schedule_turns_it_off(
    saturn: JobsEmulator, saturn_env: dict[str, str]
) -> None:
    env = {**saturn_env, "TICKETEVAL_HISTORY_URL": TEAM_URL}
    first = json.loads(invoke("job", "deploy", "--schedule", "@daily", "--json", env=env).stdout)
    job = saturn.job_named("ticketeval-nightly")
    assert (job.cron, job.scheduled) == ("@daily", True)

    second = invoke("job", "deploy", "--workers", "2", "--schedule", "@daily", env=env)
    assert second.exit_code == 0, second.output
    assert second.stdout.startswith(f"Updated job ticketeval-nightly (id {first['id']})")
    assert job.recipe["spec"]["dask_cluster"]["num_workers"] == 2
    assert len(saturn.jobs) == 1

    third = json.loads(invoke("job", "deploy", "--workers", "2", "--json", env=env).stdout)
    assert (third["recipe_changed"], third["schedule_changed"]) == (True, True)
    assert job.scheduled is False
    again = json.loads(invoke("job", "deploy", "--workers", "2", "--json", env=env).stdout)
    assert again["changed"] is False


def test_a_data_url_with_a_password_stays_out_of_the_recipe(
    saturn: JobsEmulator, saturn_env: dict[str, str]
) -> None:
    url = "https://reader:data-pw-88@files.example.org/incident_event_log.zip"
    result = invoke("job", "deploy", "--dry-run", env={**saturn_env, "TICKETEVAL_DATA_URL": url})

    expect_error(result, 2, "TICKETEVAL_DATA_URL holds a password")
    assert "data-pw-88" not in result.output


def test_a_followed_log_prints_each_line_once_as_the_window_slides() -> None:
    from ticketeval.pipeline.saturn_jobs import new_lines

    shown = new_lines([], ["a\n", "b\n"])
    assert shown == ["a\n", "b\n"]
    assert new_lines(shown, ["a\n", "b\n", "c\n"]) == ["c\n"]
    assert new_lines(["a\n", "b\n", "c\n"], ["b\n", "c\n", "d\n", "e\n"]) == ["d\n", "e\n"]
    assert new_lines(["a\n"], ["a\n"]) == []
    assert new_lines(["a\n"], ["x\n", "y\n"]) == ["x\n", "y\n"]  # all new: the window moved on


# -- run-local --saturn ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [(("--address", "tcp://127.0.0.1:8786"), ("--saturn and --address",)),
     (("--workers", "2"), ("--workers", "the job's workers run the flow"))],
)  # fmt: skip
def test_run_local_saturn_refuses_options_for_another_cluster(
    data_dir: Path, arguments: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    result = invoke("run-local", "--saturn", *arguments)

    expect_error(result, 2, *fragments)


def test_run_local_saturn_outside_a_saturn_job_says_where_it_runs(data_dir: Path) -> None:
    result = invoke("run-local", "--saturn", "--batch-size", "100")

    expect_error(result, 2, "--saturn attaches to the Dask cluster of a Saturn Cloud job",
                 "SATURN_BASE_URL", "ticketeval job deploy")  # fmt: skip
    assert not (data_dir / "history.sqlite").exists()
