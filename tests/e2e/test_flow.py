"""The Prefect flow: its shape, its serialization, and real runs on Dask clusters."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import (
    assert_no_process_left,
    invoke,
    run_ticketeval,
    table_value,
)
from ticketeval.errors import ExitCode
from ticketeval.history import store as history
from ticketeval.scoring import trial
from ticketeval.settings import load_settings


def test_run_local_runs_the_flow_on_a_local_cluster(
    data_dir: Path, process_marker: str, tmp_path: Path
) -> None:
    page = tmp_path / "run.html"
    # --verbose too: Prefect's log goes to stderr, and stdout still holds only the JSON (one
    # run for both, each run-local costs a cluster).
    result = run_ticketeval(
        "run-local", "--batch-size", "1000", "--workers", "2", "--seed", "3", "--json",
        "--report", str(page), "--verbose", "--no-dashboard",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [announced] = [line for line in result.stderr.splitlines() if line.startswith("Dask ")]
    assert re.fullmatch(r"Dask scheduler tcp://127\.0\.0\.1:\d+", announced)  # no dashboard
    assert "Task 'predict': Finished task run" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["data"]["num_obs"] == 1000
    assert summary["runner"] == "run-local"
    # The report, a flow task after the summary, and the per-event results the task kept.
    assert summary["report"]["page"] == str(page)
    assert f'data-value="{summary["data"]["metrics"]["MAE"]!r}"' in page.read_text()
    assert Path(summary["results_path"]).exists()
    # The same batch and model give the same metrics as `evaluate`.
    evaluated = trial.score_trial(data_dir=data_dir, batch_size=1000, seed=3)
    assert summary["data"]["metrics"] == evaluated["data"]["metrics"]
    # The trial is in the history, and every process the run started is gone.
    recorded = history.read_trials(load_settings().history)
    assert [row.runner for row in recorded] == ["run-local"]
    assert_no_process_left(process_marker)


@pytest.mark.usefixtures("without_dashboard")
def test_a_failing_task_is_named_with_its_error(
    data_dir: Path, model_dir: Path, process_marker: str, tmp_path: Path
) -> None:
    (model_dir / "broken.py").write_text(
        "def model(batch):\n    raise ValueError('the crystal ball is cloudy')\n"
    )
    # A HOME Prefect's configuration parser once warned about, as Python code ("-9or" is 9 or).
    home = tmp_path / "team-9or"
    home.mkdir()
    # The installed executable's exit code 5 (the model failed).
    result = run_ticketeval(
        "run-local", "--batch-size", "50", "--workers", "1", "--model", "broken:model",
        env={"HOME": str(home)},
    )  # fmt: skip
    assert result.returncode == ExitCode.MODEL
    assert "task 'predict' failed" in result.stderr
    assert "the crystal ball is cloudy" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the scheduler line, then the error
    assert_no_process_left(process_marker)
    assert history.read_trials(load_settings().history) == []


def dashboard_status(address: str) -> int:
    """The HTTP status of the Bokeh dashboard's page on the scheduler at `address` (its HTTP
    server, for health and metrics, runs either way)."""
    import urllib.error
    import urllib.request

    from distributed import Client

    with Client(address, set_as_default=False, timeout=10) as client:
        port = client.scheduler_info()["services"]["dashboard"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize(
    ("flag", "setting", "served"),
    [(None, "false", False), (True, "false", True)],
    ids=["TICKETEVAL_DASHBOARD=false", "--dashboard wins over it"],
)
def test_the_dashboard_is_served_only_when_asked(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, flag: bool | None, setting: str, served: bool
) -> None:
    from ticketeval import core
    from ticketeval.pipeline.cluster import ClusterOptions
    from ticketeval.request import TrialRequest

    monkeypatch.setenv("TICKETEVAL_DASHBOARD", setting)
    seen: list[tuple[int, str | None]] = []
    summary = core.run_local(
        load_settings(),
        TrialRequest(batch_size=50, seed=1),
        cluster=ClusterOptions(workers=1, threads_per_worker=1, dashboard=flag),
        on_cluster=lambda address, link: seen.append((dashboard_status(address), link)),
    )
    assert not isinstance(summary, core.NothingNew) and summary["data"]["num_obs"] == 50
    [(status, link)] = seen
    assert (status, link is not None) == ((200, True) if served else (404, False))


@pytest.fixture
def outside_scheduler() -> Iterator[str]:
    """A Dask cluster started outside the tool, as a user's own scheduler would be."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


@pytest.mark.usefixtures("without_dashboard")  # a setting for clusters started here: ignored
def test_run_local_on_an_existing_scheduler_leaves_it_running(
    data_dir: Path, outside_scheduler: str
) -> None:
    from distributed import Client

    # In this process (the executable's own start is test_run_local_runs_the_flow's).
    result = invoke("run-local", "--address", outside_scheduler, "--batch-size", "100", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["num_obs"] == 100
    assert f"Dask scheduler {outside_scheduler}" in result.stderr
    with Client(outside_scheduler, timeout=10) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        # The flow's tasks ran there: the worker has imported ticketeval's code.
        imported = client.run(lambda: "ticketeval.pipeline.flow" in __import__("sys").modules)
        assert list(imported.values()) == [True]


def test_run_local_prints_a_table_and_the_dashboard_and_the_model_reaches_the_workers(
    data_dir: Path, model_dir: Path
) -> None:
    (model_dir / "hour.py").write_text(
        "import numpy as np\n"
        "def model(batch):\n    return np.full(len(batch), 3600.0)\n"
        "model.columns = ('priority',)\n"
    )
    # The installed executable: its worker's Prefect logs reach the same stderr.
    result = run_ticketeval(
        "run-local", "--batch-size", "200", "--seed", "4", "--workers", "1", "--model", "hour:model"
    )
    assert result.returncode == 0, result.stderr
    assert table_value(result.stdout, "num_obs") == "200"
    assert table_value(result.stdout, "model") == "hour:model"
    assert "Dask scheduler tcp://127.0.0.1:" in result.stderr
    assert "dashboard http://127.0.0.1:" in result.stderr
    # Prefect's own log lines are quiet by default...
    assert "Task 'predict'" not in result.stderr
    # The workers predicted with the model given: the recorded MAE is that model's.
    evaluated = trial.score_trial(data_dir=data_dir, batch_size=200, seed=4, model="hour:model")
    [recorded] = history.read_trials(load_settings().history)
    assert recorded.MAE == evaluated["data"]["metrics"]["MAE"]
    assert (
        evaluated["data"]["metrics"]["MAE"]
        != trial.score_trial(data_dir=data_dir, batch_size=200, seed=4)["data"]["metrics"]["MAE"]
    )  # and not the heuristic's


@pytest.mark.realdata
@pytest.mark.usefixtures("without_dashboard")
def test_run_local_on_the_real_file(real_zip: Path, isolated_environment: Path) -> None:
    result = invoke(
        "run-local", "--batch-size", "1000", "--workers", "1", "--source", str(real_zip), "--json"
    )  # one worker: the real file is the point here, test_run_local_runs_the_flow has two
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["data"]["num_obs"] == 1000
    assert summary["source"]["matches_uci"] is True
    assert "Fetched 141,712 events of 24,918 incidents" in result.stderr
