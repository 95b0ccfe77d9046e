"""The Prefect 1 flow: the trial's steps as tasks, each a thin wrapper over the modules below.

They are module-level functions so Dask workers unpickle them by reference. Prefect is imported
only inside `build_flow`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ticketeval.batches import Batch, load_batch
from ticketeval.cache import ensure_cache
from ticketeval.demo import DEMO_SOURCE
from ticketeval.errors import UsageError
from ticketeval.history import append_history
from ticketeval.metrics import METRIC_NAMES, score_metric
from ticketeval.models import load_model, model_columns, predict
from ticketeval.trial import compute_target, new_trial_id, summarize

if TYPE_CHECKING:
    from prefect import Flow

    from ticketeval.settings import Settings

# Each task is a thin wrapper over the modules below, so `evaluate` and the flow share one copy
# of the logic.


def _worker_settings(data_dir: Path | None) -> Settings:
    """The settings of the machine the task runs on (a Saturn pod has its own environment);
    `data_dir` is the client's when run-local passes it."""
    from ticketeval.settings import load_settings

    return load_settings(**({"data_dir": data_dir} if data_dir is not None else {}))


def _task_get_ticket_data_batch(
    batch_size: int, seed: int | None, model: str, data_dir: Path | None, demo: bool = False
) -> Batch:
    settings = _worker_settings(data_dir)
    # On a fresh remote worker this fetches, with the worker's URL, timeout and retries;
    # run-local fetched on the client first.
    ensure_cache(settings, DEMO_SOURCE if demo else None)
    columns = model_columns(load_model(model), name=model)
    return load_batch(settings.data_dir, int(batch_size), seed, columns, demo=demo)


def _task_get_target(batch: Batch) -> pd.Series:
    return compute_target(batch.frame)


def _task_predict(batch: Batch, model: str) -> np.ndarray:
    return predict(load_model(model), batch.frame, name=model)


def _task_get_trial_summary(
    trial_id: str,
    batch: Batch,
    actuals: pd.Series,
    predictions: np.ndarray,
    metrics: dict[str, float | None],
    model: str,
    runner: str,
) -> dict[str, Any]:
    return summarize(
        trial_id=trial_id,
        batch=batch,
        target=actuals,
        predictions=predictions,
        metrics=metrics,
        model=model,
        runner=runner,
    )


def _task_write_trial_summary(trial_summary: dict[str, Any], history_path: Path | None) -> None:
    import prefect

    prefect.context.get("logger").info(json.dumps(trial_summary))
    if history_path is None:
        from ticketeval.settings import load_settings

        history_path = load_settings().history_file
    append_history(history_path, trial_summary)


def flow_name(username: str) -> str:
    return f"{username}-ticket-model-evaluation-dask"


def build_flow(
    *,
    name: str,
    batch_size: int,
    seed: int | None = None,
    model: str = "heuristic",
    data_dir: Path | None = None,
    history_path: Path | None = None,
    schedule_hours: float | None = None,
    runner: str = "prefect",
    demo: bool = False,
) -> Flow:
    """The seed's pipeline as a Prefect 1 flow. Nothing runs until the flow is run.

    `data_dir`/`history_path` of None mean "the settings of the machine the task runs on",
    which is what a flow registered with Prefect Cloud needs. `demo` scores the demo data.
    """
    from datetime import timedelta

    from prefect import Flow, Parameter, task
    from prefect.schedules import IntervalSchedule

    schedule = None
    if schedule_hours is not None:
        if schedule_hours <= 0:
            raise UsageError(f"the schedule interval must be positive, not {schedule_hours} hours.")
        schedule = IntervalSchedule(interval=timedelta(hours=schedule_hours))
    get_trial_id = task(new_trial_id, name="get_trial_id")
    get_ticket_data_batch = task(
        _task_get_ticket_data_batch,
        name="get_ticket_data_batch",
        max_retries=2,
        retry_delay=timedelta(seconds=2),
    )
    get_target = task(_task_get_target, name="get_target")
    predict_task = task(_task_predict, name="predict")
    evaluate_model = task(score_metric, name="evaluate_model")
    get_trial_summary = task(_task_get_trial_summary, name="get_trial_summary")
    write_trial_summary = task(_task_write_trial_summary, name="write_trial_summary")

    with Flow(name, schedule=schedule) as flow:
        batch_size_parameter = Parameter("batch-size", default=batch_size)
        seed_parameter = Parameter("seed", default=seed)
        model_parameter = Parameter("model", default=model)
        trial_id = get_trial_id()
        batch = get_ticket_data_batch(
            batch_size_parameter, seed_parameter, model_parameter, data_dir, demo
        )
        actuals = get_target(batch)
        predictions = predict_task(batch, model_parameter)
        metrics = {
            name: evaluate_model(
                name, actuals, predictions, task_args={"name": f"evaluate_model[{name}]"}
            )
            for name in METRIC_NAMES
        }
        summary = get_trial_summary(
            trial_id, batch, actuals, predictions, metrics, model_parameter, runner
        )
        write_trial_summary(summary, history_path)
    return flow
