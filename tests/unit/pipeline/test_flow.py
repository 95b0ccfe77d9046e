"""The Prefect flow: its shape, its schedule and its serialization (no cluster)."""

from __future__ import annotations

from pathlib import Path

from tests.support.helpers import (
    expect_error,
    invoke,
)
from ticketeval.errors import ExitCode
from ticketeval.pipeline import flow
from ticketeval.scoring import metrics


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


def test_run_local_refuses_a_bad_address(data_dir: Path) -> None:
    malformed = invoke("run-local", "--address", "localhost")
    expect_error(malformed, ExitCode.USAGE, "is not a Dask scheduler address like tcp://host:8786")


SEED_TASKS = {
    "get_trial_id", "get_ticket_data_batch", "get_target", "predict", "evaluate_model",
    "get_trial_summary", "write_trial_summary",
}  # fmt: skip
