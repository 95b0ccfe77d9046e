"""The API the command line calls: one function per command, plain data back.

Each function takes the `Settings` of the command and resolves every "option, else setting"
default here, once. Beneath it, one module per concern, imports going one way:

    parsing → sources → demo → cache → batches → models → metrics → trial → history
            → flow → cluster → core (and saturn, the Saturn Cloud and Prefect Cloud glue)

Never imports typer or rich, and raises only the `TicketevalError` family. The heavy libraries
(pandas, pyarrow, Prefect, Dask) are imported inside the functions, so importing this module
costs nothing the `--help` path would notice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticketeval.errors import UsageError
from ticketeval.history import recording

if TYPE_CHECKING:
    from ticketeval.data.cache import CacheInfo, FetchResult
    from ticketeval.data.periods import Period
    from ticketeval.data.sources import ProgressCallback
    from ticketeval.history.store import HistoryRow
    from ticketeval.pipeline.cluster import ClusterOptions
    from ticketeval.pipeline.saturn import Registration, SaturnClusterOptions
    from ticketeval.settings import Settings

FetchCallback = Callable[["FetchResult"], None]


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
    )


def _prepare_data(
    settings: Settings, source: str | None, on_fetch: FetchCallback | None
) -> CacheInfo:
    from ticketeval.data.cache import ensure_cache

    result = ensure_cache(settings, source)
    if on_fetch is not None:
        on_fetch(result)
    return result.cache


@dataclass(frozen=True)
class NothingNew:
    """`--since-last` found no ticket closed since the previous trial: nothing is recorded."""

    model: str
    since: str
    newest: str | None
    stream: str | None = None
    note: str | None = None  # how the chain's end was found, when it is worth saying

    @property
    def message(self) -> str:
        newest = f" (the newest closure is {self.newest})" if self.newest else ""
        on = f" on {self.stream}" if self.stream else ""
        said = f"Nothing new for {self.model}{on}: no ticket closed since {self.since}{newest}."
        return f"{said} {self.note}" if self.note else said

    def to_dict(self) -> dict[str, Any]:
        return {"nothing_new": True, **asdict(self)}


def _late_incidents(path: Path, start: Any, recorded: int | None) -> str | None:
    """A note when the export now holds more incidents closed before the chain's end than it
    did when the chain reached it: tickets that arrived late, which --since-last (keyed on
    closure time) does not score. None when there are none, or nothing was recorded."""
    from ticketeval.data.batches import incidents_closed_before

    if start is None or recorded is None:
        return None
    late = incidents_closed_before(path, start) - recorded
    if late <= 0:
        return None
    return (
        f"note: {late:,} incident(s) closed before {start:%Y-%m-%d %H:%M} arrived after the "
        "trial that ended there (late): --since-last does not score them; score their period "
        "with --closed-from/--closed-to."
    )


def _stream(settings: Settings, stream: str | None, cache: CacheInfo) -> str:
    """The log a trial follows: `--stream`, else TICKETEVAL_STREAM, else the data's source."""
    if stream is not None and not stream.strip():
        raise UsageError("--stream needs a name (or leave it out: the data's source is used).")
    return stream or settings.stream or cache.source


@dataclass(frozen=True)
class TrialPlan:
    """What one trial scores, with every default resolved."""

    batch_size: int | None
    allow_fewer: bool
    seed: int | None
    period: Period
    demo: bool  # the demo data's cache, not the real data's
    models: list[str]  # champion first
    cache: CacheInfo
    stream: str  # the log this trial follows: see `recording.chain_end`
    notes: tuple[str, ...] = ()  # said after the trial


def _plan_trial(
    settings: Settings,
    *,
    batch_size: int | str | None,
    seed: int | None,
    model: str | Sequence[str],
    closed_from: str | None,
    closed_to: str | None,
    since_last: bool,
    source: str | None,
    on_fetch: FetchCallback | None,
    stream: str | None = None,
    open_only: bool = False,
) -> TrialPlan | NothingNew:
    """The models, data, batch and period of a trial, the data fetched when needed: a sample
    of the data, of a period, or of every ticket closed since the previous trial of the
    champion on the same data (`since_last`). The seed is checked before any work: a trial is
    never computed only to be refused."""
    from ticketeval.data.batches import closure_span, parse_batch_size
    from ticketeval.data.demo import DEMO_SOURCE
    from ticketeval.data.periods import CLOSURE_RESOLUTION, Period, iso, parse_date
    from ticketeval.scoring.champion import model_specs
    from ticketeval.settings import check_seed

    if seed is not None:
        check_seed(seed)
    models = model_specs(model)
    cache = _prepare_data(settings, source, on_fetch)
    demo = source == DEMO_SOURCE
    size = parse_batch_size(batch_size)
    period = Period(parse_date(closed_from, "closed_from"), parse_date(closed_to, "closed_to"))
    stream = _stream(settings, stream, cache)
    span = closure_span(settings.data_dir, demo=demo) if period.bounded or since_last else None
    # A period's recorded end is never past the data: the newest closure, plus the log's time
    # resolution (a minute), so a later --since-last starts right after what this one saw.
    end = span[1] + CLOSURE_RESOLUTION if span else None
    if period.bounded and end and (period.closed_to is None or period.closed_to > end):
        if period.closed_from is None or period.closed_from < end:
            period = Period(period.closed_from, end)
    period = replace(period, open_only=open_only)
    notes: tuple[str, ...] = ()
    if since_last:
        if period.bounded:
            raise UsageError("--since-last sets the period itself: drop --closed-from/--closed-to.")
        chain = recording.chain_end(
            settings,
            model=models[0],
            stream=stream,
            data_sha256=cache.csv_sha256,
            source=cache.source,
        )
        notes = (chain.note,) if chain.note else ()
        start = parse_date(chain.end)
        late = _late_incidents(Path(cache.path), start, chain.incidents_before_end)
        if late:
            notes = (*notes, late)
        if end is None or (start is not None and start >= end):
            since = chain.end or "the first closure"
            said = " ".join(notes) or None
            return NothingNew(models[0], since, iso(span[1] if span else None), stream, said)
        period = Period(start, end, open_only=open_only)
        if batch_size is None:  # every new ticket
            return TrialPlan(None, False, seed, period, demo, models, cache, stream, notes)
    default = size is None and batch_size is None
    return TrialPlan(
        settings.batch_size if default else size,
        # A default batch meeting a small period takes the period's events; an asked-for
        # size larger than the period is refused.
        default and period.bounded,
        settings.seed if seed is None else seed,
        period,
        demo,
        models,
        cache,
        stream,
        notes,
    )


def evaluate(
    settings: Settings,
    *,
    batch_size: int | str | None = None,
    seed: int | None = None,
    model: str | Sequence[str] = "heuristic",
    source: str | None = None,
    closed_from: str | None = None,
    closed_to: str | None = None,
    since_last: bool = False,
    report: Path | None = None,
    on_fetch: FetchCallback | None = None,
    stream: str | None = None,
    open_only: bool = False,
) -> dict[str, Any] | NothingNew:
    """`ticketeval evaluate`: score `model` (or several, champion first, on the same batch) in
    this process, record the trial (and write its report), and return its summary (or
    NothingNew, recording nothing)."""
    from ticketeval.scoring.trial import score_trial

    plan = _plan_trial(
        settings,
        batch_size=batch_size,
        seed=seed,
        model=model,
        closed_from=closed_from,
        closed_to=closed_to,
        since_last=since_last,
        source=source,
        on_fetch=on_fetch,
        stream=stream,
        open_only=open_only,
    )
    if isinstance(plan, NothingNew):
        return plan
    summary = score_trial(
        data_dir=settings.data_dir,
        batch_size=plan.batch_size,
        seed=plan.seed,
        model=plan.models,
        period=plan.period,
        allow_fewer=plan.allow_fewer,
        results=recording.results_keeping(settings),
        demo=plan.demo,
        stream=plan.stream,
    )
    recorded = recording.record(settings, summary)
    recorded["recorded"]["notes"].extend(plan.notes)
    if report is not None:
        recorded["report"] = recording.write_report_of(settings, recorded, report)
    return recorded


def run_local(
    settings: Settings,
    *,
    cluster: ClusterOptions,
    batch_size: int | str | None = None,
    seed: int | None = None,
    model: str | Sequence[str] = "heuristic",
    source: str | None = None,
    closed_from: str | None = None,
    closed_to: str | None = None,
    since_last: bool = False,
    report: Path | None = None,
    on_fetch: FetchCallback | None = None,
    on_cluster: Callable[[str, str | None], None] | None = None,
    stream: str | None = None,
    open_only: bool = False,
) -> dict[str, Any] | NothingNew:
    """`ticketeval run-local`: the same trial as a Prefect flow on Dask (the flow records it);
    returns its summary. Everything that can be checked is checked before a cluster starts."""
    from ticketeval.data.batches import check_batch_size, closed_in
    from ticketeval.pipeline.cluster import run_flow
    from ticketeval.pipeline.flow import build_flow, flow_name
    from ticketeval.scoring.models import load_model, model_columns

    plan = _plan_trial(
        settings,
        batch_size=batch_size,
        seed=seed,
        model=model,
        closed_from=closed_from,
        closed_to=closed_to,
        since_last=since_last,
        source=source,
        on_fetch=on_fetch,
        stream=stream,
        open_only=open_only,
    )
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
    cluster = replace(cluster, scheduler_timeout=settings.scheduler_timeout)
    build = functools.partial(
        build_flow,
        name=flow_name(settings.username),
        batch_size=size,
        seed=plan.seed,
        model=plan.models,
        period=plan.period,
        # A scheduler given by address may be another machine: its workers read their own
        # data directory and, unless this one names a shared history, their own history.
        data_dir=None if cluster.address else settings.data_dir,
        history_url=recording.history_for_workers(settings, cluster),
        results=None if cluster.address else recording.results_keeping(settings),
        report=report,
        runner="run-local",
        demo=plan.demo,
        stream=plan.stream,
    )
    last_task = "write_trial_summary" if report is None else "write_report"
    written = run_flow(build, cluster, on_cluster=on_cluster, result_task=last_task)
    recorded = recording.complete(settings, written)
    recorded["recorded"]["notes"] = [*recorded["recorded"]["notes"], *plan.notes]
    if report is not None:
        recorded["report"] = written["report"]
    return recorded


def backtest(
    settings: Settings,
    *,
    every: str,
    cluster: ClusterOptions,
    closed_from: str | None = None,
    closed_to: str | None = None,
    model: str | Sequence[str] = "heuristic",
    batch_size: int | str | None = "all",
    seed: int | None = None,
    reference: int | None = None,
    min_events: int | None = None,
    source: str | None = None,
    report: Path | None = None,
    on_fetch: FetchCallback | None = None,
    on_cluster: Callable[[str, str | None], None] | None = None,
    stream: str | None = None,
    open_only: bool = False,
) -> dict[str, Any]:
    """`ticketeval backtest`: replay the log period by period as one Prefect flow (a mapped
    task per period, on Dask), judge each period against the reference periods' band, record
    the run, and return its periods and thresholds. One model: compare models with
    `evaluate` or `run-local`."""
    from ticketeval.data.batches import parse_batch_size
    from ticketeval.data.demo import DEMO_SOURCE
    from ticketeval.data.periods import parse_date, parse_every
    from ticketeval.pipeline.cluster import run_flow
    from ticketeval.pipeline.flow import build_backtest_flow, flow_name
    from ticketeval.scoring.backtest import DEFAULT_MIN_EVENTS, backtest_periods
    from ticketeval.scoring.champion import model_specs
    from ticketeval.scoring.models import load_model
    from ticketeval.scoring.trial import new_trial_id

    parse_every(every)
    specs = model_specs(model)
    if len(specs) > 1:
        raise UsageError(
            "backtest scores one model: give --model once (compare models on the same events "
            "with evaluate or run-local)."
        )
    model = specs[0]
    size = parse_batch_size(batch_size)
    if size is not None and size < 1:
        raise UsageError(f"the batch size must be at least 1, not {size}.")
    if reference is not None and reference < 1:
        raise UsageError(f"--reference must be at least 1 period, not {reference}.")
    if min_events is not None and min_events < 0:
        raise UsageError(f"--min-events must be 0 or more, not {min_events}.")
    cache = _prepare_data(settings, source, on_fetch)
    load_model(model)
    demo = source == DEMO_SOURCE
    periods = backtest_periods(
        settings.data_dir,
        every,
        parse_date(closed_from, "closed_from"),
        parse_date(closed_to, "closed_to"),
        demo=demo,
        open_only=open_only,
    )
    if reference is not None and reference > len(periods):
        raise UsageError(
            f"--reference {reference} is more than the {len(periods)} periods of this backtest: "
            f"give at most {len(periods)} (the default is the first third)."
        )
    run_id = new_trial_id()
    cluster = replace(cluster, scheduler_timeout=settings.scheduler_timeout)
    build = functools.partial(
        build_backtest_flow,
        name=f"{flow_name(settings.username)}-backtest",
        periods=periods,
        batch_size=size,
        seed=settings.seed if seed is None else seed,
        model=model,
        run_id=run_id,
        reference=reference,
        min_events=DEFAULT_MIN_EVENTS if min_events is None else min_events,
        data_dir=None if cluster.address else settings.data_dir,
        history_url=recording.history_for_workers(settings, cluster),
        results=None if cluster.address else recording.results_keeping(settings),
        report=report,
        demo=demo,
        stream=_stream(settings, stream, cache),
    )
    last_task = "write_backtest" if report is None else "write_report"
    verdict = run_flow(build, cluster, on_cluster=on_cluster, result_task=last_task)
    recorded = [
        recording.complete(settings, written)["recorded"] for written in verdict.pop("written")
    ]
    return {
        "run_id": run_id,
        "model": model,
        "every": every,
        "source": {
            "name": cache.source,
            "csv_sha256": cache.csv_sha256,
            "stream": _stream(settings, stream, cache),
        },
        **verdict,
        "recorded": {
            "history": recorded[0]["history"] if recorded else None,
            "spooled": sum(outcome["spooled"] for outcome in recorded),
            "notes": [note for outcome in recorded for note in outcome["notes"]],
        },
        **({"report": verdict["report"]} if report is not None else {}),
    }


def report(
    settings: Settings,
    *,
    trial_id: str | None = None,
    out: Path | None = None,
    png_dir: Path | None = None,
) -> dict[str, Any]:
    """`ticketeval report`: the page (and PNG charts) of a recorded trial, the last by
    default, drawn from its summary, its per-event results and the history around it."""
    from ticketeval.report.build import find_trial, history_points, write_trial_report

    summary = find_trial(settings.history, trial_id)
    points, band = history_points(settings.history, summary)
    written = write_trial_report(
        summary, over_time=points, thresholds=band, out=out, png_dir=png_dir
    )
    return written.to_dict()


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
    source: str | None = None,
    on_fetch: FetchCallback | None = None,
) -> dict[str, Any]:
    """`ticketeval train`: train a model on the cached log (the incidents closed before the
    cut), score it on the others, save it (atomically) and return its description.

    The cut is `closed_before`, else the `train_fraction` point (0.7) of the closures. The
    seed is the trees' (default 0, not TICKETEVAL_SEED: the same data gives the same file).
    """
    from ticketeval.scoring.training import DEFAULT_LOSS, save_model, train_from_cache

    if closed_before is not None and train_fraction is not None:
        raise UsageError("give --closed-before or --train-fraction, not both.")
    _prepare_data(settings, source, on_fetch)
    result = train_from_cache(
        settings.data_dir,
        closed_before=closed_before,
        train_fraction=DEFAULT_TRAIN_FRACTION if train_fraction is None else train_fraction,
        seed=0 if seed is None else seed,
        loss=loss or DEFAULT_LOSS,
    )
    path = save_model(result, Path(out) if out is not None else Path(DEFAULT_MODEL_FILE))
    return describe_model_metadata(str(path), result.metadata)


def show_model(path: str | Path) -> dict[str, Any]:
    """`ticketeval train --show`: what a saved model file says about itself."""
    from ticketeval.scoring.training import describe_model

    described = describe_model(path)
    return describe_model_metadata(described.pop("path"), described)


def describe_model_metadata(path: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """A model's metadata as `train` shows it: everything but the category maps (hundreds of
    values each, for the model, not for people)."""
    return {
        "path": path,
        **{key: value for key, value in metadata.items() if key != "category_maps"},
    }


@dataclass(frozen=True)
class HistoryView:
    """The recorded trials as `ticketeval history` shows them."""

    history: str  # the URL, password redacted
    rows: list[HistoryRow]
    flagged: list[bool]
    pending: int  # trials waiting in the spool

    def records(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (the same on every backend), each with its flag."""
        return [
            {**asdict(row), "flagged": flagged}
            for row, flagged in zip(self.rows, self.flagged, strict=True)
        ]


def history(
    settings: Settings,
    *,
    last: int | None = None,
    threshold: float = 0.25,
    model: str | None = None,
) -> HistoryView:
    """`ticketeval history`: the recorded trials, oldest first, each flagged when it is worse
    than earlier trials of the same model on the same data beyond their intervals."""
    from ticketeval.history.store import flag_regressions, pending_spool, read_trials, redact_url

    # A backtest's periods run in parallel: show them together, in the order of the periods.
    rows = read_trials(settings.history, model=model)
    run_start: dict[str, str] = {}
    for row in rows:
        if row.run_id:
            run_start.setdefault(row.run_id, row.timestamp)
    rows.sort(
        key=lambda row: (run_start.get(row.run_id or "", row.timestamp), row.closed_from or "")
    )
    # A backtest's periods were judged by the backtest, against its own band; a single trial
    # is compared with the earlier single trials only (like with like).
    singles = [row for row in rows if row.run_id is None]
    single_flags = dict(
        zip(map(id, singles), flag_regressions(singles, threshold=threshold), strict=True)
    )
    flags = [bool(row.alert) if row.run_id else single_flags[id(row)] for row in rows]
    if last:
        rows, flags = rows[-last:], flags[-last:]
    return HistoryView(redact_url(settings.history), rows, flags, pending_spool(settings.spool_dir))


def describe_sizes(settings: Settings) -> dict[str, str]:
    """`ticketeval describe-sizes`: Saturn Cloud's instance sizes, name → description."""
    from ticketeval.pipeline import saturn

    return saturn.describe_sizes(settings)


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
