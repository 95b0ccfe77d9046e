"""`describe-sizes` and `register` through the installed executable, against the loopback Saturn +
Prefect Cloud emulator, and a registered flow run end to end.

The real prefect-saturn, dask-saturn and Prefect 1 clients talk HTTP to 127.0.0.1; nothing in
them is patched. The installed `ticketeval` runs in a subprocess where a fresh process is the
point (exit code 6, a registration as a user runs it, Prefect's configuration read at import);
the other cases run the same command line in-process (CliRunner).
"""

from __future__ import annotations

import gc
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.emulator import SATURN_IMAGE, SIZES, TENANT_SLUG, CloudEmulator
from tests.support.helpers import expect_error, invoke, run_ticketeval
from tests.support.postgres import PostgresServer
from tests.unit.pipeline.test_saturn import (
    FLOW_NAME,
    PARAMETERS,
    PREFECT_API_KEY,
    PROJECT,
    REGISTER,
    SATURN_TOKEN,
    TASKS,
    assert_no_secret,
    cloud,
    cloud_env,
    home,
    load_stored_flow,
    without,
)
from ticketeval.history.store import read_trials

__all__ = ["cloud", "cloud_env", "home"]  # the emulator's fixtures, imported so pytest finds them


def test_describe_sizes_shows_saturns_sizes_in_order(
    cloud: CloudEmulator, cloud_env: dict[str, str]
) -> None:
    table = invoke("describe-sizes", env=cloud_env)  # in-process: the process is not the point
    as_json = invoke("describe-sizes", "--json", env=cloud_env)

    assert table.exit_code == 0, table.output
    positions = [table.stdout.index(name + " ") for name in SIZES]
    assert positions == sorted(positions)
    for description in SIZES.values():
        assert description in table.stdout
    assert as_json.exit_code == 0, as_json.output
    assert list(json.loads(as_json.stdout).items()) == list(SIZES.items())
    sent = cloud.requests_to("/api/info/servers")
    assert len(sent) == 2
    assert all(request.headers["Authorization"] == f"token {SATURN_TOKEN}" for request in sent)
    assert_no_secret(table.stdout, table.stderr, as_json.stdout, as_json.stderr)


def test_describe_sizes_with_a_wrong_token_says_it_was_refused(
    cloud_env: dict[str, str],
) -> None:
    """The installed executable's exit code 6 (a service refused the request)."""
    result = run_ticketeval("describe-sizes", env={**cloud_env, "SATURN_TOKEN": "not-the-token"})

    expect_error(result, 6, "Saturn Cloud refused SATURN_TOKEN", "401")
    assert "not-the-token" not in result.stderr + result.stdout


def test_register_sends_the_flow_to_prefect_cloud_and_saturn(
    cloud: CloudEmulator, cloud_env: dict[str, str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_ticketeval(*REGISTER, env=cloud_env)

    assert result.returncode == 0, result.stderr
    assert_no_secret(result.stdout, result.stderr)
    details = json.loads(result.stdout)

    # Prefect Cloud: the project, then the flow with its parameters, tasks, edges and schedule.
    assert list(cloud.projects) == [PROJECT]
    assert details["project_created"] is True
    [registered] = cloud.flows
    assert registered.serialized["name"] == FLOW_NAME
    assert registered.project_id == cloud.projects[PROJECT]
    parameters = {p["name"]: p["default"] for p in registered.serialized["parameters"]}
    assert parameters == PARAMETERS
    registered_tasks = {task["name"] for task in registered.tasks}
    assert registered_tasks >= TASKS
    assert len(registered.edges) >= 15
    [clock] = registered.serialized["schedule"]["clocks"]
    assert clock["type"] == "IntervalClock"
    assert clock["interval"] == timedelta(hours=24).total_seconds() * 1_000_000
    assert registered.schedule_active
    assert registered.serialized["storage"]["type"] == "Webhook"
    run_config = registered.serialized["run_config"]
    assert run_config["type"] == "KubernetesRun"
    assert run_config["image"] == SATURN_IMAGE
    assert "executor" not in registered.serialized  # it travels only in Saturn's copy
    graphql = cloud.requests_to("/graphql")
    assert graphql
    assert all(r.headers["Authorization"] == f"Bearer {PREFECT_API_KEY}" for r in graphql)

    # Saturn: the flow record (with the instance size) and its Webhook content.
    [saturn_flow] = cloud.saturn_flows.values()
    assert (saturn_flow.name, saturn_flow.project_name) == (FLOW_NAME, PROJECT)
    assert saturn_flow.instance_size == "large"
    assert list(cloud.contents) == [(str(saturn_flow.id), saturn_flow.version_ids[-1])]

    # What was printed matches what was received.
    assert details["prefect_flow_id"] == registered.id
    assert details["prefect_flow_group_id"] == registered.flow_group_id
    assert details["version"] == 1
    assert details["saturn_flow_id"] == str(saturn_flow.id)
    assert details["image"] == SATURN_IMAGE
    assert details["labels"] == sorted(run_config["labels"])
    assert details["flow_url"].endswith(f"/{TENANT_SLUG}/flow/{registered.flow_group_id}")
    assert details["schedule"] == "every 24 hours"

    # The flow Saturn's agent would load carries the executor with exactly our arguments.
    from prefect.executors import DaskExecutor
    from prefect.run_configs import KubernetesRun

    flow = load_stored_flow(cloud, monkeypatch)
    assert isinstance(flow.executor, DaskExecutor)
    import dask_saturn

    # DaskExecutor resolves the "dask_saturn.SaturnCluster" it was given into the class.
    assert flow.executor.cluster_class is dask_saturn.SaturnCluster
    assert flow.executor.cluster_kwargs == {
        "n_workers": 3,
        "worker_size": "xlarge",
        "scheduler_size": "medium",
        "worker_is_spot": False,
        "shutdown_on_close": True,
    }
    assert flow.executor.adapt_kwargs == {"minimum": 1, "maximum": 4}
    assert isinstance(flow.run_config, KubernetesRun)
    assert flow.run_config.image == SATURN_IMAGE
    assert flow.run_config.labels == {"saturn-cloud", "webhook-flow-storage", "saturn-flow-1"}
    assert {task.name for task in flow.tasks} >= TASKS

    # The API key was used, never written: no auth.toml, no file under HOME holds it.
    assert not (home / ".prefect" / "auth.toml").exists()
    for path in home.rglob("*"):
        if path.is_file():
            assert PREFECT_API_KEY not in path.read_text(errors="replace")


def test_register_logs_in_with_the_key_whatever_prefect_config_says(
    cloud: CloudEmulator, cloud_env: dict[str, str], home: Path
) -> None:
    """A user whose Prefect 1 is switched to Prefect Server (`prefect backend server`) and who
    never ran `prefect auth login`: register still reaches Prefect Cloud with the API key."""
    (home / ".prefect").mkdir()
    (home / ".prefect" / "backend.toml").write_text('backend = "server"\n')
    env = without(cloud_env, "PREFECT__BACKEND")

    result = run_ticketeval("register", "--workers", "2", "--json", env=env)

    assert result.returncode == 0, result.stderr
    assert len(cloud.flows) == 1
    assert cloud.graphql_operations()[0] == "project"
    assert all(
        r.headers["Authorization"] == f"Bearer {PREFECT_API_KEY}"
        for r in cloud.requests_to("/graphql")
    )


def test_the_registered_flow_runs_on_its_saturn_cluster_end_to_end(
    cloud: CloudEmulator,
    cloud_env: dict[str, str],
    data_dir: Path,
    demo_cache: Path,
    postgres_server: PostgresServer,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What Saturn's agent does with a registered flow: load it from Webhook storage and run it.
    Its DaskExecutor starts a dask_saturn.SaturnCluster, which asks the emulator's Saturn for a
    cluster; the emulator starts a real Dask cluster on 127.0.0.1 and the tasks run there, with
    a pod's own environment (HOME, data), recording in the team's PostgreSQL history with the
    password from the pod's PGPASSWORD."""
    env = {**cloud_env, "TICKETEVAL_HISTORY_URL": postgres_url}
    registration = run_ticketeval(*REGISTER, env=env)
    assert registration.returncode == 0, registration.stderr
    flow = load_stored_flow(cloud, monkeypatch)
    for name in ("SATURN_BASE_URL", "SATURN_IS_INTERNAL"):
        monkeypatch.setenv(name, cloud_env[name])
    pod = tmp_path / "pod"
    shutil.copytree(demo_cache, pod / "data")
    cloud.worker_env = {
        "HOME": str(pod), "TICKETEVAL_DATA_DIR": str(pod / "data"),
        "TICKETEVAL_HISTORY_DIR": str(pod / "history"), "PGPASSWORD": postgres_server.password,
    }  # fmt: skip

    state = flow.run(run_on_schedule=False)

    assert state.is_successful(), state.result
    assert cloud.cluster_requests == [
        {"n_workers": 3, "worker_size": "xlarge", "scheduler_size": "medium",
         "worker_is_spot": False}
    ]  # fmt: skip
    assert cloud.cluster_resizes == [("dask-1", "adapt", {"minimum": 1, "maximum": 4})]
    assert cloud.closed_clusters == ["dask-1"]  # shutdown_on_close
    # The trial, as the cluster's tasks computed and recorded it (read from the flow's state,
    # not from any history file).
    [summary_task] = flow.get_tasks(name="get_trial_summary")
    [write_task] = flow.get_tasks(name="write_trial_summary")
    summary = state.result[summary_task].result
    assert (summary["data"]["num_obs"], summary["batch_size"]) == (500, 500)
    assert (summary["runner"], summary["model"]) == ("saturn", "heuristic")
    assert state.result[write_task].is_successful()
    del flow, state
    gc.collect()  # SaturnCluster asks Saturn for its status when collected: while it still runs
    [trial] = read_trials(postgres_url)
    assert (trial.num_obs, trial.runner) == (500, "saturn")
    assert not (data_dir / "history.sqlite").exists() and not (pod / "history").exists()
