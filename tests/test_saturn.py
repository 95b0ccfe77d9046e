"""`describe-sizes` and `register` against the loopback Saturn + Prefect Cloud emulator.

The real prefect-saturn, dask-saturn and Prefect 1 clients talk HTTP to 127.0.0.1; nothing in
them is patched. The installed `ticketeval` runs in a subprocess where a fresh process is the
point (exit code 6, a registration as a user runs it, Prefect's configuration read at import);
the other cases run the same command line in-process (CliRunner).
"""

from __future__ import annotations

import gc
import json
import shutil
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import expect_error, invoke, run_ticketeval
from tests.emulator import SATURN_IMAGE, SIZES, TENANT_SLUG, CloudEmulator, running_emulator
from ticketeval.history.store import read_trials

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

pytest_plugins = ("tests.postgres",)  # the end-to-end run records in a real PostgreSQL

SATURN_TOKEN = "saturn-token-5f3a9c"
PREFECT_API_KEY = "pcu_api_key_81b2e7"
PROJECT = "ticket-evaluation"
FLOW_NAME = "ada-ticket-model-evaluation-dask"
TASKS = {
    "get_trial_id",
    "get_ticket_data_batch",
    "get_target",
    "get_models",
    "predict",
    "evaluate_model[MAE]",
    "evaluate_model[MedAE]",
    "evaluate_model[MSE]",
    "evaluate_model[R2]",
    "get_trial_summary",
    "write_trial_summary",
}
# The flow's parameters as registered with --batch-size 500: a number of events, not text. No
# TICKETEVAL_HISTORY_URL: the flow records in the pod's own history.
PARAMETERS = {
    "batch-size": 500, "seed": None, "model": "heuristic", "closed-from": None, "closed-to": None,
    "open-only": False, "history-url": None,
}  # fmt: skip
REGISTER = (
    "register", "--workers", "3", "--worker-size", "xlarge", "--scheduler-size", "medium",
    "--no-spot", "--adapt-min", "1", "--adapt-max", "4", "--instance-size", "large",
    "--schedule-hours", "24", "--batch-size", "500", "--json",
)  # fmt: skip


@pytest.fixture
def cloud() -> Iterator[CloudEmulator]:
    with running_emulator(saturn_token=SATURN_TOKEN, prefect_api_key=PREFECT_API_KEY) as emulator:
        yield emulator


@pytest.fixture
def home(tmp_path: Path) -> Path:
    directory = tmp_path / "home"
    directory.mkdir()
    return directory


@pytest.fixture
def cloud_env(cloud: CloudEmulator, home: Path) -> dict[str, str]:
    """What a user on Saturn has set, pointed at the emulator."""
    return {
        "BASE_URL": cloud.base_url,
        "SATURN_BASE_URL": cloud.base_url,
        "SATURN_TOKEN": SATURN_TOKEN,
        "SATURN_IS_INTERNAL": "true",
        "PREFECT__BACKEND": "cloud",
        "PREFECT__CLOUD__API": cloud.prefect_api,
        "PREFECT_USER_TOKEN": PREFECT_API_KEY,
        "PREFECT_CLOUD_PROJECT_NAME": PROJECT,
        "SATURN_USERNAME": "ada",
        "HOME": str(home),
    }


@pytest.fixture
def prefect_config_restored() -> Iterator[None]:
    """Prefect's configuration is process-wide: put back what an in-process test changes."""
    import prefect

    configs = (prefect.config, prefect.context.config)
    saved = [(c.backend, c.cloud.api, c.cloud.get("api_key")) for c in configs]
    yield
    for config, (backend, api, api_key) in zip(configs, saved, strict=True):
        config.backend, config.cloud.api, config.cloud.api_key = backend, api, api_key


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in names}


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        assert SATURN_TOKEN not in output
        assert PREFECT_API_KEY not in output


# -- describe-sizes ------------------------------------------------------------------------------


def test_describe_sizes_shows_saturns_sizes_in_order(
    cloud: CloudEmulator, cloud_env: dict[str, str]
) -> None:
    table = run_ticketeval("describe-sizes", env=cloud_env)
    as_json = invoke("describe-sizes", "--json", env=cloud_env)

    assert table.returncode == 0, table.stderr
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


def test_describe_sizes_names_the_url_it_cannot_reach(cloud_env: dict[str, str]) -> None:
    url = closed_port_url()
    result = invoke("describe-sizes", env={**cloud_env, "BASE_URL": url})

    expect_error(result, 4, url, "unreachable")


@pytest.mark.parametrize("missing", ["BASE_URL", "SATURN_TOKEN"])
def test_describe_sizes_names_a_missing_variable(
    cloud: CloudEmulator, cloud_env: dict[str, str], missing: str
) -> None:
    env = without(cloud_env, missing, "SATURN_BASE_URL")
    result = invoke("describe-sizes", env=env)

    expect_error(result, 2, f"{missing} is not set")
    assert cloud.received == []


@pytest.mark.parametrize(
    ("base_url", "complaint"),
    [("https://app.community.saturnenterprise.io/", "must not end with '/'"),
     ("app.community.saturnenterprise.io", "not an http(s) URL")],
)  # fmt: skip
def test_describe_sizes_refuses_a_malformed_base_url(
    cloud_env: dict[str, str], base_url: str, complaint: str
) -> None:
    result = invoke("describe-sizes", env={**cloud_env, "BASE_URL": base_url})

    expect_error(result, 2, "BASE_URL", complaint)


# -- register ------------------------------------------------------------------------------------


def load_stored_flow(cloud: CloudEmulator, monkeypatch: pytest.MonkeyPatch) -> object:
    """Load the registered flow back as Saturn's agent does: Prefect Cloud's copy names its
    Webhook storage, and the storage fetches the cloudpickled flow from Saturn over HTTP."""
    from prefect.serialization.storage import StorageSchema

    registered = cloud.flows[-1]
    storage = StorageSchema().load(registered.serialized["storage"])
    # Webhook storage renders ${BASE_URL} and ${SATURN_TOKEN} from the environment.
    monkeypatch.setenv("BASE_URL", cloud.base_url)
    monkeypatch.setenv("SATURN_TOKEN", SATURN_TOKEN)
    return storage.get_flow(registered.serialized["name"])


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


def test_register_twice_gives_version_two_of_the_same_flow_group(
    cloud: CloudEmulator, cloud_env: dict[str, str], prefect_config_restored: None
) -> None:
    first = invoke(*REGISTER, env=cloud_env)
    second = invoke(*REGISTER, env=cloud_env)

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert (one["version"], two["version"]) == (1, 2)
    assert one["prefect_flow_group_id"] == two["prefect_flow_group_id"]
    assert one["prefect_flow_id"] != two["prefect_flow_id"]
    assert one["saturn_flow_id"] == two["saturn_flow_id"]
    assert (one["project_created"], two["project_created"]) == (True, False)
    assert list(cloud.projects) == [PROJECT]
    assert cloud.graphql_operations().count("create_project") == 1
    assert len(cloud.contents) == 2  # one stored flow per version


def test_register_shows_a_readable_table(
    cloud_env: dict[str, str], prefect_config_restored: None
) -> None:
    result = invoke(*REGISTER[:-1], env=cloud_env)

    assert result.exit_code == 0, result.output
    for expected in ("prefect flow id", "version", "saturn flow id", "labels", "every 24 hours",
                     "n_workers=3", "worker_size='xlarge'", "minimum=1, maximum=4"):  # fmt: skip
        assert expected in result.stdout
    assert_no_secret(result.stdout, result.stderr)


def test_register_refuses_an_unknown_size_and_registers_nothing(
    cloud: CloudEmulator, cloud_env: dict[str, str], prefect_config_restored: None
) -> None:
    result = invoke("register", "--workers", "3", "--worker-size", "huge", env=cloud_env)

    expect_error(result, 2, "--worker-size 'huge'", ", ".join(SIZES))
    assert [r.path for r in cloud.received] == ["/api/info/servers"]
    assert cloud.flows == [] and cloud.saturn_flows == {} and cloud.projects == {}


@pytest.mark.parametrize("missing", ["PREFECT_USER_TOKEN", "PREFECT_CLOUD_PROJECT_NAME"])
def test_register_checks_its_settings_before_any_network_call(
    cloud: CloudEmulator, cloud_env: dict[str, str], missing: str
) -> None:
    result = invoke("register", "--workers", "3", env=without(cloud_env, missing))

    expect_error(result, 2, f"{missing} is not set")
    assert cloud.received == []


def test_register_with_a_wrong_prefect_key_fails_before_saturn_stores_anything(
    cloud: CloudEmulator, cloud_env: dict[str, str], prefect_config_restored: None
) -> None:
    result = invoke(
        "register", "--workers", "3", env={**cloud_env, "PREFECT_USER_TOKEN": "pcu_wrong"}
    )

    expect_error(result, 6, "Prefect Cloud refused PREFECT_USER_TOKEN")
    assert "pcu_wrong" not in result.stderr + result.stdout
    assert cloud.requests_to("/api/prefect_cloud") == []
    assert cloud.flows == []


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


def test_register_dry_run_makes_no_network_call(
    cloud: CloudEmulator, cloud_env: dict[str, str]
) -> None:
    result = invoke(*REGISTER, "--dry-run", env=without(cloud_env, "PREFECT_USER_TOKEN"))

    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)
    assert cloud.received == []
    assert details["dry_run"] is True
    assert set(details["tasks"]) == TASKS
    assert details["parameters"] == PARAMETERS
    assert details["cluster_class"] == "dask_saturn.SaturnCluster"
    assert details["cluster_kwargs"] == {
        "n_workers": 3,
        "worker_size": "xlarge",
        "scheduler_size": "medium",
        "worker_is_spot": False,
        "shutdown_on_close": True,
    }
    assert details["adapt_kwargs"] == {"minimum": 1, "maximum": 4}
    assert details["instance_size"] == "large"
    assert "prefect_flow_id" not in details


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


def test_register_in_a_process_that_already_imported_prefect(
    cloud: CloudEmulator,
    cloud_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    prefect_config_restored: None,
) -> None:
    """Prefect reads its configuration at import: a caller (a notebook, say) that imported it
    before setting anything still registers with the key and the API URL from the settings."""
    import prefect

    from ticketeval.pipeline import saturn
    from ticketeval.settings import load_settings

    assert prefect.config.cloud.api != cloud.prefect_api  # read before the variables existed
    for name, value in cloud_env.items():
        monkeypatch.setenv(name, value)

    registration = saturn.register(
        load_settings(),
        cluster=saturn.SaturnClusterOptions(workers=2),
        instance_size=None,
        schedule_hours=None,
        batch_size=100,
        project=None,
        dry_run=False,
    )

    assert registration.version == 1
    assert [flow.id for flow in cloud.flows] == [registration.prefect_flow_id]
    assert all(
        r.headers["Authorization"] == f"Bearer {PREFECT_API_KEY}"
        for r in cloud.requests_to("/graphql")
    )
    assert PREFECT_API_KEY not in json.dumps(registration.to_dict())
