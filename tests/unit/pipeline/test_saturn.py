"""`describe-sizes` and `register` in-process, against the Saturn + Prefect Cloud emulator."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.emulator import SIZES, CloudEmulator, running_emulator
from tests.support.helpers import expect_error, invoke

if TYPE_CHECKING:
    pass


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
