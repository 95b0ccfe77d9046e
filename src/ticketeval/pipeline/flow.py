"""The Prefect 1 flow: the trial's steps as tasks, each a thin wrapper over the modules below.

They are module-level functions so Dask workers unpickle them by reference. Prefect is imported
only inside `build_flow`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ticketeval.data.batches import Batch, load_batch, parse_batch_size
from ticketeval.data.cache import ensure_cache
from ticketeval.data.demo import DEMO_SOURCE
from ticketeval.data.periods import Period, iso, parse_date
from ticketeval.errors import DownloadError, HistoryError, UsageError
from ticketeval.scoring import HEURISTIC
from ticketeval.scoring.champion import columns_of, model_specs
from ticketeval.scoring.metrics import METRIC_NAMES, score_metric
from ticketeval.scoring.models import load_model, predict
from ticketeval.scoring.results import ResultsKeeping
from ticketeval.scoring.summary import TrialSummary, Verdict, Written
from ticketeval.scoring.trial import new_trial_id, scored_target, summarize_models

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


def _task_get_trial_id() -> str:
    """The flow run's id where there is one (Prefect Cloud), so that a write Dask re-runs
    after losing a worker records the same trial; a fresh id for a local run."""
    import prefect

    return str(prefect.context.get("flow_run_id") or new_trial_id())


def _task_get_ticket_data_batch(
    batch_size: int | str | None,
    seed: int | None,
    model: str,
    data_dir: Path | None,
    closed_from: str | None = None,
    closed_to: str | None = None,
    demo: bool = False,
    as_of: str | None = None,
    open_only: bool = False,
) -> Batch:
    settings = _worker_settings(data_dir)
    # On a fresh remote worker this fetches, with the worker's URL, timeout and retries;
    # run-local fetched on the client first.
    ensure_cache(settings, DEMO_SOURCE if demo else None)
    period = Period(
        parse_date(closed_from, "closed_from"),
        parse_date(closed_to, "closed_to"),
        as_of=parse_date(as_of, "as_of"),
        open_only=bool(open_only),
    )
    return load_batch(
        settings.data_dir,
        parse_batch_size(batch_size),
        seed,
        columns_of(load_model(spec) for spec in model_specs(model)),
        period,
        demo=demo,
    )


def _task_get_models(model: str) -> list[str]:
    """The models the `model` parameter names (comma-separated), champion first."""
    return list(model_specs(model))


def _task_get_target(batch: Batch) -> pd.Series:
    return scored_target(batch.frame, _worker_settings(None).negative_targets)


def _task_predict(batch: Batch, model: str) -> np.ndarray:
    return predict(load_model(model), batch.frame, name=model)


def _task_evaluate_model(
    name: str, actuals: pd.Series, predictions: list[np.ndarray]
) -> float | None:
    """One metric of the champion's predictions (the first of the mapped predict tasks)."""
    return score_metric(name, actuals, predictions[0])


def _task_get_trial_summary(
    trial_id: str,
    batch: Batch,
    actuals: pd.Series,
    predictions: list[np.ndarray],
    metrics: dict[str, float | None],
    models: list[str],
    runner: str,
    results: ResultsKeeping | None = None,
    stream: str | None = None,
) -> TrialSummary:
    """The summary of every model's predictions (in the order of `models`, champion first);
    `metrics` are the champion's, from the evaluate_model tasks. Keeps the champion's
    per-event results when asked."""
    summary = summarize_models(
        trial_id=trial_id,
        batch=batch,
        target=actuals,
        predictions=dict(zip(models, predictions, strict=True)),
        # Loaded again here only for what they say about their training (a model file's
        # metadata); the heuristic and user functions cost nothing.
        models={spec: load_model(spec) for spec in models},
        closed_at=batch.frame["closed_at"].to_numpy(),
        runner=runner,
        metrics=metrics,
        stream=stream,
    )
    if results is None:
        return summary
    return results.keep(trial_id, batch, actuals, predictions[0], models[0]).into(summary)


def _task_add_open_tickets(
    summary: TrialSummary,
    batch: Batch,
    actuals: pd.Series,
    predictions: list[np.ndarray],
    models: list[str],
    data_dir: Path | None,
    demo: bool,
    estimate: bool,
) -> TrialSummary:
    """The tickets still open at the batch's `as_of`, for the champion (see `evaluate`)."""
    from ticketeval.scoring.loss_estimate import add_open_tickets

    assert batch.period.as_of is not None
    return add_open_tickets(
        summary,
        data_dir=_worker_settings(data_dir).data_dir,
        as_of=batch.period.as_of,
        model=load_model(models[0]),
        name=models[0],
        closed_target=actuals.to_numpy(),
        closed_predictions=predictions[0],
        demo=demo,
        estimate=estimate,
    )


def _task_write_report(written: Written, history_url: str | None, out: Path) -> Written:
    """The trial's page, from the summary just written and the history around it."""
    from ticketeval.report.build import write_report_of

    url = history_url or _worker_settings(None).history
    return {**written, "report": write_report_of(url, written["summary"], out)}


def _task_write_backtest_report(verdict: Verdict, out: Path) -> Verdict:
    """The backtest's page: its last period with events, and every period over time."""
    from ticketeval.report.build import backtest_points, write_trial_report

    points, band = backtest_points(verdict)
    current = next(i for i, point in enumerate(points) if point["current"])
    summary = verdict.get("written", [])[current]["summary"]
    report = write_trial_report(summary, over_time=points, thresholds=band, out=out)
    return {**verdict, "report": report.to_dict()}


def _task_write_trial_summary(
    trial_summary: TrialSummary, history_url: str | None, must_record: bool
) -> Written:
    """Record the trial in the history from the worker; returns the summary and where it went.

    `must_record` (a registered flow, where no client waits): a history that cannot be reached
    fails the task, so that Prefect retries it and shows the failure; the spool would be the
    pod's disk. Otherwise the client records what the worker could not (`core.run_local`).
    """
    import prefect

    from ticketeval.history.store import open_history, redact_url

    prefect.context.get("logger").info(json.dumps(trial_summary))
    url = history_url or _worker_settings(None).history
    try:
        with open_history(url) as store:
            store.append(trial_summary)
    except (HistoryError, UsageError) as error:
        if must_record:
            raise
        return {"summary": trial_summary, "recorded": False, "reason": str(error)}
    return {"summary": trial_summary, "recorded": True, "history": redact_url(url)}


def flow_name(username: str) -> str:
    return f"{username}-ticket-model-evaluation-dask"


def build_flow(
    *,
    name: str,
    batch_size: int | None,
    seed: int | None = None,
    model: str | Sequence[str] = HEURISTIC,
    period: Period | None = None,
    data_dir: Path | None = None,
    history_url: str | None = None,
    must_record: bool = False,
    results: ResultsKeeping | None = None,
    report: Path | None = None,
    schedule_hours: float | None = None,
    runner: str = "prefect",
    demo: bool = False,
    estimate: bool = False,
    stream: str | None = None,
) -> Flow:
    """The seed's pipeline as a Prefect 1 flow. Nothing runs until the flow is run.

    `data_dir`/`history_url` of None mean "the settings of the machine the task runs on",
    which is what a flow registered with Prefect Cloud needs; there `history_url` is a
    parameter without a password (the pod supplies it). `model` names one model or several
    (a list, or one string separated by commas: the `model` parameter is that string); the
    `predict` task is mapped over them, and the champion's (the first) predictions feed the
    `evaluate_model` tasks. `demo` scores the demo data. A period with `as_of` adds the
    `add_open_tickets` task (and the `as-of` parameter); `estimate` estimates their MAE.
    """
    from datetime import timedelta

    from prefect import Flow, Parameter, task, unmapped
    from prefect.schedules import IntervalSchedule

    schedule = None
    if schedule_hours is not None:
        if schedule_hours <= 0:
            raise UsageError(f"the schedule interval must be positive, not {schedule_hours} hours.")
        schedule = IntervalSchedule(interval=timedelta(hours=schedule_hours))
    get_trial_id = task(_task_get_trial_id, name="get_trial_id")
    get_ticket_data_batch = task(
        _task_get_ticket_data_batch,
        name="get_ticket_data_batch",
        max_retries=2,
        retry_delay=timedelta(seconds=2),
        # Only what may pass: a download or a file being replaced. A bad seed, column or
        # period fails the same way every time, so it is reported at once.
        retry_on={DownloadError, OSError},
    )
    get_target = task(_task_get_target, name="get_target")
    get_models = task(_task_get_models, name="get_models")
    predict_task = task(_task_predict, name="predict")
    evaluate_model = task(_task_evaluate_model, name="evaluate_model")
    get_trial_summary = task(_task_get_trial_summary, name="get_trial_summary")
    write_trial_summary = task(
        _task_write_trial_summary,
        name="write_trial_summary",
        **({"max_retries": 2, "retry_delay": timedelta(seconds=30)} if must_record else {}),
    )

    with Flow(name, schedule=schedule) as flow:
        period = period or Period()
        batch_size_parameter = Parameter(
            "batch-size", default="all" if batch_size is None else batch_size
        )
        seed_parameter = Parameter("seed", default=seed)
        model_parameter = Parameter("model", default=",".join(model_specs(model)))
        closed_from = Parameter("closed-from", default=iso(period.closed_from))
        closed_to = Parameter("closed-to", default=iso(period.closed_to))
        open_only = Parameter("open-only", default=period.open_only)
        # Only a replay has the parameter and the task: other flows keep their shape.
        as_of = Parameter("as-of", default=iso(period.as_of)) if period.as_of else None
        trial_id = get_trial_id()
        batch = get_ticket_data_batch(
            batch_size_parameter,
            seed_parameter,
            model_parameter,
            data_dir,
            closed_from,
            closed_to,
            demo,
            as_of,
            open_only,
        )
        actuals = get_target(batch)
        models = get_models(model_parameter)
        predictions = predict_task.map(unmapped(batch), models)
        metrics = {
            name: evaluate_model(
                name, actuals, predictions, task_args={"name": f"evaluate_model[{name}]"}
            )
            for name in METRIC_NAMES
        }
        summary = get_trial_summary(
            trial_id, batch, actuals, predictions, metrics, models, runner, results, stream
        )
        if as_of is not None:
            summary = task(_task_add_open_tickets, name="add_open_tickets")(
                summary, batch, actuals, predictions, models, data_dir, demo, estimate
            )
        history = Parameter("history-url", default=history_url) if must_record else history_url
        written = write_trial_summary(summary, history, must_record)
        if report is not None:
            task(_task_write_report, name="write_report")(written, history, report)
    return flow


# --- The backtest: one mapped task per period ---------------------------------------------------


def _task_score_period(
    period: dict[str, Any],
    batch_size: int | None,
    seed: int | None,
    model: str,
    data_dir: Path | None,
    run_id: str,
    results: ResultsKeeping | None = None,
    demo: bool = False,
    stream: str | None = None,
) -> TrialSummary:
    from ticketeval.scoring.backtest import score_period

    settings = _worker_settings(data_dir)
    ensure_cache(settings, DEMO_SOURCE if demo else None)
    return score_period(
        data_dir=settings.data_dir,
        period=Period.from_dict(period),
        batch_size=batch_size,
        seed=seed,
        model=model,
        run_id=run_id,
        results=results,
        demo=demo,
        stream=stream,
        negative=settings.negative_targets,
    )


def _task_judge_backtest(
    summaries: list[TrialSummary], reference: int | None, min_events: int
) -> Verdict:
    from ticketeval.scoring.backtest import judge

    return judge(summaries, reference=reference, min_events=min_events)


def _task_write_backtest(
    summaries: list[TrialSummary], verdict: Verdict, history_url: str | None
) -> Verdict:
    """Record every period as one run; the outcome of each, for the client to complete."""
    from ticketeval.scoring.backtest import with_alerts

    written = [
        _task_write_trial_summary(summary, history_url, must_record=False)
        for summary in with_alerts(summaries, verdict)
    ]
    return {**verdict, "written": written}


def build_backtest_flow(
    *,
    name: str,
    periods: list[Period],
    batch_size: int | None,
    seed: int | None,
    model: str,
    run_id: str,
    reference: int | None,
    min_events: int,
    data_dir: Path | None = None,
    history_url: str | None = None,
    results: ResultsKeeping | None = None,
    report: Path | None = None,
    demo: bool = False,
    stream: str | None = None,
) -> Flow:
    """The backtest as a Prefect 1 flow: the periods scored in parallel by one mapped task,
    then judged against the reference periods' band and recorded as one run."""
    from prefect import Flow, task, unmapped

    score = task(_task_score_period, name="score_period")
    judge_task = task(_task_judge_backtest, name="judge_backtest")
    write = task(_task_write_backtest, name="write_backtest")
    with Flow(name) as flow:
        summaries = score.map(
            [period.to_dict() for period in periods],
            unmapped(batch_size),
            unmapped(seed),
            unmapped(model),
            unmapped(data_dir),
            unmapped(run_id),
            unmapped(results),
            unmapped(demo),
            unmapped(stream),
        )
        verdict = judge_task(summaries, reference, min_events)
        written = write(summaries, verdict, history_url)
        if report is not None:
            task(_task_write_backtest_report, name="write_report")(written, report)
    return flow
