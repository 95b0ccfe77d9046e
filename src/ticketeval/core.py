"""The API the command line calls: one function per command, plain data back.

Each function takes the `Settings` of the command and resolves every "option, else setting"
default here, once. Beneath it, one subpackage per concern (`pipeline`, `report`, `history`,
`scoring`, `data`), imports going one way: the layers are stated in pyproject.toml's
`[tool.importlinter]` and checked in CI.

Never imports typer or rich, and raises only the `TicketevalError` family. The heavy libraries
(pandas, pyarrow, Prefect, Dask) are imported inside the functions, so importing this module
costs nothing the `--help` path would notice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticketeval.errors import TicketevalError, UsageError

if TYPE_CHECKING:
    from ticketeval.data.cache import FetchResult
    from ticketeval.data.sources import ProgressCallback
    from ticketeval.history.store import HistoryView
    from ticketeval.pipeline.cluster import ClusterOptions
    from ticketeval.pipeline.saturn import Registration, SaturnClusterOptions
    from ticketeval.pipeline.saturn_api import JobRun
    from ticketeval.pipeline.saturn_jobs import (
        Deployment,
        JobDeleted,
        JobOptions,
        JobStarted,
        JobStatus,
        JobStopped,
    )
    from ticketeval.request import BacktestRequest, TrialRequest
    from ticketeval.scoring.summary import BacktestResult, TrialSummary, Verdict
    from ticketeval.settings import Settings

from ticketeval.planning import (
    FetchCallback,
    NothingNew,
    check_output,
    check_png_dir,
    checked_report,
    configured_cluster,
    plan_trial,
    prepare_data,
    trial_stream,
    workers_places,
)


def fetch(
    settings: Settings,
    *,
    source: str | None = None,
    url: str | None = None,
    force: bool = False,
    demo_seed: int = 0,
    demo_events: int | None = None,
    progress: ProgressCallback | None = None,
) -> FetchResult:
    """`ticketeval fetch`: get the event log into the cache (reused unless `force`)."""
    from ticketeval.data import cache
    from ticketeval.data.demo import DEFAULT_DEMO_EVENTS
    from ticketeval.data.sources import check_url
    from ticketeval.settings import check_seed

    check_seed(demo_seed)
    if url is not None:
        check_url(url)
    return cache.fetch(
        source,
        data_dir=settings.data_dir,
        url=settings.data_url if url is None else url,
        force=force,
        demo_seed=demo_seed,
        demo_events=DEFAULT_DEMO_EVENTS if demo_events is None else demo_events,
        timeout=settings.timeout,
        retry_backoff=settings.retry_backoff,
        progress=progress,
        limits=cache.zip_limits(settings),
    )


def evaluate(
    settings: Settings, request: TrialRequest, *, on_fetch: FetchCallback | None = None
) -> TrialSummary | NothingNew:
    """`ticketeval evaluate`: score `model` (or several, champion first, on the same batch) in
    this process, record the trial (and write its report), and return its summary (or
    NothingNew, recording nothing). `as_of` replays the log as known at that date and adds
    the tickets still open then (`data.open`; with `estimate`, their estimated MAE)."""
    from ticketeval.history.store import record_summary
    from ticketeval.report.build import write_report_of
    from ticketeval.scoring.results import ResultsKeeping
    from ticketeval.scoring.trial import score_trial

    request = checked_report(settings, request)
    plan = plan_trial(settings, request, on_fetch)
    if isinstance(plan, NothingNew):
        return plan
    summary = score_trial(
        data_dir=settings.data_dir,
        batch_size=plan.batch_size,
        seed=plan.seed,
        model=plan.models,
        period=plan.period,
        allow_fewer=plan.allow_fewer,
        results=ResultsKeeping.of(settings),
        demo=plan.demo,
        estimate=request.estimate,
        stream=plan.stream,
        negative=settings.negative_targets,
    )
    recorded = record_summary(settings, summary)
    recorded["recorded"]["notes"].extend(plan.notes)
    if request.report is not None:
        try:
            recorded["report"] = write_report_of(settings.history, recorded, request.report)
        except TicketevalError as error:
            # The trial is computed (and recorded): it is printed all the same, then this.
            recorded["report_failed"] = {"message": str(error), "exit_code": int(error.exit_code)}
    return recorded


def run_local(
    settings: Settings,
    request: TrialRequest,
    *,
    cluster: ClusterOptions,
    on_fetch: FetchCallback | None = None,
    on_cluster: Callable[[str, str | None], None] | None = None,
) -> TrialSummary | NothingNew:
    """`ticketeval run-local`: the same trial as a Prefect flow on Dask (the flow records it);
    returns its summary. Everything that can be checked is checked before a cluster starts."""
    from ticketeval.data.batches import check_batch_size, closed_in
    from ticketeval.history.store import record_written
    from ticketeval.pipeline.cluster import run_flow
    from ticketeval.pipeline.flow import build_flow, flow_name
    from ticketeval.scoring.models import load_model, model_columns

    request = checked_report(settings, request)
    plan = plan_trial(settings, request, on_fetch)
    if isinstance(plan, NothingNew):
        return plan
    cache = plan.cache
    available = (
        len(closed_in(Path(cache.path), plan.period)) if plan.period.selective else cache.rows
    )
    size = plan.batch_size
    if size is not None:
        if plan.allow_fewer:
            size = min(size, available)
        check_batch_size(size, available, plan.period)
    for spec in plan.models:
        model_columns(load_model(spec), name=spec)
    cluster = configured_cluster(settings, cluster)
    build = functools.partial(
        build_flow,
        name=flow_name(settings.username),
        batch_size=size,
        seed=plan.seed,
        model=plan.models,
        period=plan.period,
        **workers_places(settings, cluster),
        report=request.report,
        runner="saturn-job" if cluster.saturn else "run-local",
        demo=plan.demo,
        estimate=request.estimate,
        stream=plan.stream,
    )
    last_task = "write_trial_summary" if request.report is None else "write_report"
    written = run_flow(build, cluster, on_cluster=on_cluster, result_task=last_task)
    recorded = record_written(settings, written)
    recorded["recorded"]["notes"].extend(plan.notes)
    if request.report is not None:
        recorded["report"] = written["report"]
    return recorded


def backtest(
    settings: Settings,
    request: BacktestRequest,
    *,
    cluster: ClusterOptions,
    on_fetch: FetchCallback | None = None,
    on_cluster: Callable[[str, str | None], None] | None = None,
) -> BacktestResult:
    """`ticketeval backtest`: replay the log period by period as one Prefect flow (a mapped
    task per period, on Dask), judge each period against the reference periods' band, record
    the run, and return its periods and thresholds. One model: compare models with
    `evaluate` or `run-local`."""
    from ticketeval.data.batches import parse_batch_size
    from ticketeval.data.demo import DEMO_SOURCE
    from ticketeval.data.periods import parse_date, parse_every
    from ticketeval.history.store import discard_run_results, record_all_written
    from ticketeval.pipeline.cluster import run_flow
    from ticketeval.pipeline.flow import build_backtest_flow, flow_name
    from ticketeval.scoring.backtest import (
        DEFAULT_MIN_EVENTS,
        backtest_model,
        backtest_periods,
        check_backtest_options,
    )
    from ticketeval.scoring.champion import model_specs
    from ticketeval.scoring.models import load_model
    from ticketeval.scoring.trial import new_trial_id
    from ticketeval.settings import check_seed

    every, seed, min_events = request.every, request.seed, request.min_events
    parse_every(every)
    request = checked_report(settings, request)
    if seed is not None:
        check_seed(seed)
    model = backtest_model(model_specs(request.model))
    size = parse_batch_size(request.batch_size)
    check_backtest_options(size, reference=request.reference, min_events=min_events)
    cache = prepare_data(settings, request.source, on_fetch)
    load_model(model)
    demo = request.source == DEMO_SOURCE
    stream = trial_stream(settings, request.stream, cache)
    periods = backtest_periods(
        settings.data_dir,
        every,
        parse_date(request.closed_from, "closed_from"),
        parse_date(request.closed_to, "closed_to"),
        demo=demo,
        open_only=request.open_only,
    )
    reference = request.reference
    if reference is not None and reference > len(periods):
        raise UsageError(
            f"--reference {reference} is more than the {len(periods)} periods of this backtest: "
            f"give at most {len(periods)} (the default is the first third)."
        )
    run_id = new_trial_id()
    cluster = configured_cluster(settings, cluster)
    places = workers_places(settings, cluster, run_id=run_id)
    build = functools.partial(
        build_backtest_flow,
        name=f"{flow_name(settings.username)}-backtest",
        periods=periods,
        batch_size=size,
        seed=settings.seed if seed is None else seed,
        model=model,
        run_id=run_id,
        reference=request.reference,
        min_events=DEFAULT_MIN_EVENTS if min_events is None else min_events,
        **places,
        report=request.report,
        demo=demo,
        stream=stream,
    )
    last_task = "write_backtest" if request.report is None else "write_report"
    try:
        verdict: Verdict = run_flow(build, cluster, on_cluster=on_cluster, result_task=last_task)
        recorded = record_all_written(settings, verdict.get("written", []))
    except BaseException:
        discard_run_results(settings, run_id)
        raise
    if places["results"] is not None:
        places["results"].prune()  # retention counts the recorded trials only
    result: BacktestResult = {
        "run_id": run_id,
        "model": model,
        "every": every,
        "source": {"name": cache.source, "csv_sha256": cache.csv_sha256, "stream": stream},
        "reference_periods": verdict["reference_periods"],
        "min_events": verdict["min_events"],
        "thresholds": verdict["thresholds"],
        "alerts": verdict["alerts"],
        "data_shifts": verdict["data_shifts"],
        "periods": verdict["periods"],
    }
    if "report" in verdict:
        result["report"] = verdict["report"]
    result["recorded"] = recorded
    return result


def snapshots(
    settings: Settings,
    *,
    every: str = "month",
    model: str | list[str] = "heuristic",
    source: str | None = None,
    on_fetch: FetchCallback | None = None,
) -> dict[str, Any]:
    """`ticketeval snapshots`: replay the log as of the end of each period and hold the open
    tickets' estimated MAE (and lower bound) to the realized MAE the log knows in hindsight.
    Reads only; records nothing."""
    from ticketeval.data.demo import DEMO_SOURCE
    from ticketeval.data.periods import parse_every
    from ticketeval.scoring.champion import model_specs
    from ticketeval.scoring.models import load_model
    from ticketeval.scoring.snapshots import replay_snapshots

    parse_every(every)
    specs = model_specs(model)
    if len(specs) > 1:
        raise UsageError("snapshots validates one model's estimate: give --model once.")
    function = load_model(specs[0])
    prepare_data(settings, source, on_fetch)
    return replay_snapshots(
        settings.data_dir, function, name=specs[0], every=every, demo=source == DEMO_SOURCE
    )


def report(
    settings: Settings,
    *,
    trial_id: str | None = None,
    out: Path | None = None,
    png_dir: Path | None = None,
) -> dict[str, Any]:
    """`ticketeval report`: the page (and PNG charts) of a recorded trial, the last by
    default, drawn from its summary, its per-event results and the history around it."""
    from ticketeval.history.legacy import adopt_legacy_history
    from ticketeval.report.build import find_trial, write_report_of

    if out is not None:
        out = check_output(settings, out, chosen_by="--out")
    if png_dir is not None:
        png_dir = check_png_dir(settings, png_dir)
    adopt_legacy_history(settings)
    summary = find_trial(settings.history, trial_id)
    return write_report_of(settings.history, summary, out, png_dir)


DEFAULT_MODEL_FILE = "model.skops"
DEFAULT_TRAIN_FRACTION = 0.7


def train(
    settings: Settings,
    *,
    closed_before: str | None = None,
    train_fraction: float | None = None,
    out: str | Path | None = None,
    seed: int | None = None,
    loss: str | None = None,
    censoring: str | None = None,
    source: str | None = None,
    on_fetch: FetchCallback | None = None,
) -> dict[str, Any]:
    """`ticketeval train`: train a model on the cached log (the incidents closed before the
    cut), score it on the others, save it (atomically) and return its description.

    The cut is `closed_before`, else the `train_fraction` point (0.7) of the closures. The
    seed is the trees' (default 0, not TICKETEVAL_SEED: the same data gives the same file).
    """
    from ticketeval.data.demo import DEMO_SOURCE
    from ticketeval.scoring.model_file import as_shown, save_model
    from ticketeval.scoring.training import DEFAULT_CENSORING, DEFAULT_LOSS, train_from_cache

    if closed_before is not None and train_fraction is not None:
        raise UsageError("give --closed-before or --train-fraction, not both.")
    # Checked before training: a path that cannot take the file is refused at once.
    target = check_output(settings, Path(out or DEFAULT_MODEL_FILE), chosen_by="--out", probe=True)
    prepare_data(settings, source, on_fetch)
    result = train_from_cache(
        settings.data_dir,
        demo=source == DEMO_SOURCE,
        closed_before=closed_before,
        train_fraction=DEFAULT_TRAIN_FRACTION if train_fraction is None else train_fraction,
        seed=0 if seed is None else seed,
        loss=loss or DEFAULT_LOSS,
        censoring=censoring or DEFAULT_CENSORING,
    )
    path = save_model(result, target)
    return as_shown(str(path), result.metadata)


def show_model(path: str | Path) -> dict[str, Any]:
    """`ticketeval train --show`: what a saved model file says about itself."""
    from ticketeval.scoring.model_file import as_shown, describe_model

    described = describe_model(path)
    return as_shown(described.pop("path"), described)


def history(
    settings: Settings,
    *,
    last: int | None = None,
    threshold: float = 0.25,
    model: str | None = None,
) -> HistoryView:
    """`ticketeval history`: the recorded trials, oldest first, each flagged when it is worse
    than earlier trials of the same model on the same data beyond their intervals."""
    from ticketeval.history.legacy import adopt_legacy_history
    from ticketeval.history.store import history_view

    moved = adopt_legacy_history(settings)
    return history_view(
        settings.history,
        settings.spool_dir,
        last=last,
        threshold=threshold,
        model=model,
        notes=[moved] if moved else [],
    )


def copy_history(settings: Settings, source: str, target: str | None = None) -> dict[str, Any]:
    """`ticketeval history-copy`: every trial of `source` into `target` (default: the settings'
    history), each a SQLite path or history URL; idempotent. Both (redacted) and rows added."""
    from ticketeval.history.store import copy_history

    return copy_history(source, settings.history if target is None else target)


def describe_sizes(settings: Settings) -> dict[str, str]:
    """`ticketeval describe-sizes`: Saturn Cloud's instance sizes, name → description."""
    from ticketeval.pipeline import saturn_api

    return saturn_api.describe_sizes(settings)


def register(
    settings: Settings,
    *,
    cluster: SaturnClusterOptions,
    instance_size: str | None = None,
    schedule_hours: float | None = None,
    batch_size: int | str | None = None,
    project: str | None = None,
    dry_run: bool = False,
) -> Registration:
    """`ticketeval register`: the flow registered with Prefect Cloud for a Saturn cluster."""
    from ticketeval.data.batches import parse_batch_size
    from ticketeval.pipeline import saturn

    return saturn.register(
        settings,
        cluster=cluster,
        instance_size=instance_size,
        schedule_hours=schedule_hours,
        # The option's text ('500', 'all') becomes the flow parameter's number (None: all).
        batch_size=settings.batch_size if batch_size is None else parse_batch_size(batch_size),
        project=project,
        dry_run=dry_run,
    )


# --- Saturn Cloud Jobs ---------------------------------------------------------------------------


def job_deploy(settings: Settings, options: JobOptions, *, dry_run: bool = False) -> Deployment:
    """`ticketeval job deploy`: the nightly trial as a Saturn job (created or updated)."""
    from ticketeval.pipeline import saturn_jobs

    return saturn_jobs.deploy(settings, options, dry_run=dry_run)


def job_start(settings: Settings, name: str) -> JobStarted:
    """`ticketeval job start`: run the job now."""
    from ticketeval.pipeline import saturn_jobs

    return saturn_jobs.start(settings, name)


def job_stop(settings: Settings, name: str) -> JobStopped:
    """`ticketeval job stop`: stop the job's running run."""
    from ticketeval.pipeline import saturn_jobs

    return saturn_jobs.stop(settings, name)


def job_status(settings: Settings, name: str) -> JobStatus:
    """`ticketeval job status`: the job, its schedule and its runs (start, end, exit code)."""
    from ticketeval.pipeline import saturn_jobs

    return saturn_jobs.status(settings, name)


def job_logs(
    settings: Settings,
    name: str,
    *,
    run: str | None = None,
    every_run: bool = False,
    follow: bool = False,
    on_text: Callable[[str, str], None],
) -> list[JobRun]:
    """`ticketeval job logs`: a run's log (the last run's by default), passed to `on_text`."""
    from ticketeval.pipeline import saturn_jobs

    return saturn_jobs.logs(
        settings, name, run=run, every_run=every_run, follow=follow, on_text=on_text
    )


def job_delete(settings: Settings, name: str) -> JobDeleted:
    """`ticketeval job delete`: remove the job from Saturn Cloud."""
    from ticketeval.pipeline import saturn_jobs

    return saturn_jobs.delete(settings, name)
