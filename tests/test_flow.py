"""The Prefect flow: its shape, its serialization, and real runs on Dask clusters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ticketeval.errors import ExitCode
from ticketeval.history import store as history
from ticketeval.pipeline import flow
from ticketeval.scoring import metrics, trial
from ticketeval.settings import load_settings

from .conftest import assert_no_process_left, expect_error, invoke, run_ticketeval, table_value

SEED_TASKS = {
    "get_trial_id", "get_ticket_data_batch", "get_target", "predict", "evaluate_model",
    "get_trial_summary", "write_trial_summary",
}  # fmt: skip


def test_the_flow_has_the_seeds_tasks_and_parameters() -> None:
    built = flow.build_flow(name=flow.flow_name("ada"), batch_size=250)
    assert built.name == "ada-ticket-model-evaluation-dask"
    names = {task.name.split("[")[0] for task in built.tasks}
    assert SEED_TASKS <= names
    metric_tasks = sorted(t.name for t in built.tasks if t.name.startswith("evaluate_model"))
    assert metric_tasks == [f"evaluate_model[{name}]" for name in sorted(metrics.METRIC_NAMES)]
    parameters = {p.name: p.default for p in built.parameters()}
    assert parameters == {
        "batch-size": 250, "seed": None, "model": "heuristic",
        "closed-from": None, "closed-to": None, "open-only": False,
    }  # fmt: skip
    assert built.schedule is None
    data_task = built.get_tasks(name="get_ticket_data_batch")[0]
    assert data_task.max_retries == 2


def test_a_schedule_only_when_asked() -> None:
    built = flow.build_flow(name="f", batch_size=10, schedule_hours=24)
    assert built.schedule is not None
    clocks = built.schedule.clocks
    assert len(clocks) == 1 and clocks[0].interval.total_seconds() == 24 * 3600


def test_serialize_round_trips_through_prefects_flow_schema() -> None:
    # What built.register sends; breaks if the marshmallow<4 pin drifts.
    from prefect.serialization.flow import FlowSchema

    built = flow.build_flow(name="f", batch_size=10, schedule_hours=6)
    serialized = built.serialize()
    loaded = FlowSchema().load(serialized)
    assert loaded.name == "f"
    assert {t.name for t in loaded.tasks} == {t.name for t in built.tasks}
    assert {p.name for p in loaded.parameters()} == {
        "batch-size", "seed", "model", "closed-from", "closed-to", "open-only"
    }  # fmt: skip
    assert len(loaded.edges) == len(built.edges)
    assert loaded.schedule.clocks[0].interval.total_seconds() == 6 * 3600


def test_run_local_runs_the_flow_on_a_local_cluster(
    data_dir: Path, process_marker: str, tmp_path: Path
) -> None:
    page = tmp_path / "run.html"
    result = run_ticketeval(
        "run-local", "--batch-size", "1000", "--workers", "2", "--seed", "3", "--json",
        "--report", str(page),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
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


def test_verbose_shows_prefects_log_on_stderr_only(data_dir: Path) -> None:
    result = run_ticketeval(
        "run-local", "--batch-size", "50", "--workers", "1", "--verbose", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert "Task 'predict': Finished task run" in result.stderr
    json.loads(result.stdout)  # stdout still holds only the JSON


def test_a_failing_task_is_named_with_its_error(
    data_dir: Path, model_dir: Path, process_marker: str
) -> None:
    (model_dir / "broken.py").write_text(
        "def model(batch):\n    raise ValueError('the crystal ball is cloudy')\n"
    )
    # The installed executable's exit code 5 (the model failed).
    result = run_ticketeval(
        "run-local", "--batch-size", "50", "--workers", "1", "--model", "broken:model"
    )
    assert result.returncode == ExitCode.MODEL
    assert "task 'predict' failed" in result.stderr
    assert "the crystal ball is cloudy" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the scheduler line, then the error
    assert_no_process_left(process_marker)
    assert history.read_trials(load_settings().history) == []


@pytest.fixture
def outside_scheduler() -> Iterator[str]:
    """A Dask cluster started outside the tool, as a user's own scheduler would be."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def test_run_local_on_an_existing_scheduler_leaves_it_running(
    data_dir: Path, outside_scheduler: str
) -> None:
    from distributed import Client

    result = run_ticketeval(
        "run-local", "--address", outside_scheduler, "--batch-size", "100", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"]["num_obs"] == 100
    assert f"Dask scheduler {outside_scheduler}" in result.stderr
    with Client(outside_scheduler, timeout=10) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        # The flow's tasks ran there: the worker has imported ticketeval's code.
        imported = client.run(lambda: "ticketeval.pipeline.flow" in __import__("sys").modules)
        assert list(imported.values()) == [True]


def test_run_local_refuses_a_bad_address(data_dir: Path) -> None:
    malformed = invoke("run-local", "--address", "localhost")
    expect_error(malformed, ExitCode.USAGE, "is not a Dask scheduler address like tcp://host:8786")


def test_run_local_prints_a_table_and_the_dashboard_and_the_model_reaches_the_workers(
    data_dir: Path, model_dir: Path
) -> None:
    (model_dir / "hour.py").write_text(
        "import numpy as np\n"
        "def model(batch):\n    return np.full(len(batch), 3600.0)\n"
        "model.columns = ('priority',)\n"
    )
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
def test_run_local_on_the_real_file(real_zip: Path, isolated_environment: Path) -> None:
    result = run_ticketeval(
        "run-local", "--batch-size", "1000", "--workers", "2", "--source", str(real_zip), "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["data"]["num_obs"] == 1000
    assert summary["source"]["matches_uci"] is True
    assert "Fetched 141,712 events of 24,918 incidents" in result.stderr
