"""What a trial scores, decided before anything is scored: the data fetched when needed, the
models, the batch, the period (a sample, a period of closure, a replay as of a date, or every
ticket closed since the previous trial of the champion on its stream), with every "option, else
setting" default resolved. `ticketeval.core` plans, then scores or runs the flow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ticketeval.errors import UsageError

if TYPE_CHECKING:
    from ticketeval.data.cache import CacheInfo, FetchResult
    from ticketeval.data.periods import Period
    from ticketeval.pipeline.cluster import ClusterOptions
    from ticketeval.request import BacktestRequest, TrialRequest
    from ticketeval.settings import Settings

FetchCallback = Callable[["FetchResult"], None]


def prepare_data(
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


def trial_stream(settings: Settings, stream: str | None, cache: CacheInfo) -> str:
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
    models: tuple[str, ...]  # champion first
    cache: CacheInfo
    stream: str  # the log this trial follows: see `history.store.chain_end`
    notes: tuple[str, ...] = ()  # said after the trial


def plan_trial(
    settings: Settings, request: TrialRequest, on_fetch: FetchCallback | None
) -> TrialPlan | NothingNew:
    """The models, data, batch and period of a trial, the data fetched when needed: a sample
    of the data, of a period, or of every ticket closed since the previous trial of the
    champion on the same data (`since_last`). The seed is checked before any work: a trial is
    never computed only to be refused."""
    from ticketeval.data.batches import closure_span, parse_batch_size
    from ticketeval.data.demo import DEMO_SOURCE
    from ticketeval.data.periods import CLOSURE_RESOLUTION, Period, iso, parse_date
    from ticketeval.history.store import chain_end
    from ticketeval.scoring.champion import model_specs
    from ticketeval.settings import check_seed

    batch_size, seed = request.batch_size, request.seed
    if seed is not None:
        check_seed(seed)
    models = model_specs(request.model)
    cache = prepare_data(settings, request.source, on_fetch)
    demo = request.source == DEMO_SOURCE
    size = parse_batch_size(batch_size)
    period = Period(
        parse_date(request.closed_from, "closed_from"),
        parse_date(request.closed_to, "closed_to"),
        as_of=parse_date(request.as_of, "as_of"),
    )
    stream = trial_stream(settings, request.stream, cache)
    since_last = request.since_last
    span = closure_span(settings.data_dir, demo=demo) if period.bounded or since_last else None
    # A period's recorded end is never past the data: the newest closure, plus the log's time
    # resolution (a minute), so a later --since-last starts right after what this one saw. A
    # replay (--as-of) ends at its as-of date instead.
    end = span[1] + CLOSURE_RESOLUTION if span else None
    if period.as_of is None and period.bounded and end:
        if period.closed_to is None or period.closed_to > end:
            if period.closed_from is None or period.closed_from < end:
                period = Period(period.closed_from, end)
    period = replace(period, open_only=request.open_only)
    notes: tuple[str, ...] = ()
    if since_last:
        if period.as_of is not None:
            raise UsageError("--since-last scores what closed since: drop --as-of.")
        if period.bounded:
            raise UsageError("--since-last sets the period itself: drop --closed-from/--closed-to.")
        chain = chain_end(
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
        period = Period(start, end, open_only=request.open_only)
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


# --- Outputs, checked before any work --------------------------------------------------------


def own_files(settings: Settings) -> list[Path]:
    """Every file and directory of ticketeval's own under these settings: the history, its
    spool, the per-event results and both caches. No output may be written over them."""
    from ticketeval.data.cache import cache_path

    data = settings.data_dir
    return [*settings.own_paths, cache_path(data), cache_path(data, demo=True)]


def check_output(settings: Settings, path: Path, *, chosen_by: str, probe: bool = False) -> Path:
    """The file an output given by `chosen_by` (an option) writes, checked before any work:
    never a special file, a directory or one of ticketeval's own files (`files.check_output`);
    with `probe`, its directory is also tried for writing (work would be lost otherwise)."""
    from ticketeval.files import check_output as check
    from ticketeval.files import probe_writable

    target = check(Path(path), chosen_by=chosen_by, own=own_files(settings))
    if probe:
        probe_writable(target, chosen_by=chosen_by)
    return target


def check_png_dir(settings: Settings, png_dir: Path) -> Path:
    """`report --png`: a directory (made when missing), never a file nor one of ours."""
    from ticketeval.files import shorten

    if png_dir.exists() and not png_dir.is_dir():
        raise UsageError(
            f"--png {shorten(png_dir)} is a file, not a directory: give a directory for the "
            "PNG charts (--png)."
        )
    check_output(settings, png_dir / "chart.png", chosen_by="--png")
    return png_dir


Request = TypeVar("Request", "TrialRequest", "BacktestRequest")


def checked_report(settings: Settings, request: Request) -> Request:
    """The request with its --report checked (and probed) before any work."""
    if request.report is None:
        return request
    return replace(
        request, report=check_output(settings, request.report, chosen_by="--report", probe=True)
    )


def configured_cluster(settings: Settings, cluster: ClusterOptions) -> ClusterOptions:
    """The cluster options with what the settings decide: the scheduler's timeout and, for a
    LocalCluster started here, whether it serves its dashboard (unless a flag said)."""
    dashboard = cluster.dashboard
    if dashboard is None and not cluster.remote:
        dashboard = settings.dashboard
    return replace(cluster, scheduler_timeout=settings.scheduler_timeout, dashboard=dashboard)


def workers_places(
    settings: Settings, cluster: ClusterOptions, *, run_id: str | None = None
) -> dict[str, Any]:
    """Where a flow's workers read and write. A scheduler given by address, or a Saturn job's
    cluster, may be other machines: their workers read their own data directory and, unless
    this one names a shared history, their own history, and keep no per-event results.

    A backtest's results are tagged with its `run_id` and not pruned while it runs: a run that
    fails leaves no results of trials never recorded, and retention counts recorded trials."""
    from ticketeval.scoring.results import ResultsKeeping

    keeping = None if cluster.remote else ResultsKeeping.of(settings)
    return {
        "data_dir": None if cluster.remote else settings.data_dir,
        "history_url": cluster.workers_history(settings.history),
        "results": keeping if keeping is None else replace(keeping, run_id=run_id),
    }
