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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ticketeval.cache import CacheInfo, FetchResult
    from ticketeval.cluster import ClusterOptions
    from ticketeval.history import HistoryRow
    from ticketeval.saturn import Registration, SaturnClusterOptions
    from ticketeval.settings import Settings
    from ticketeval.sources import ProgressCallback

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
    from ticketeval import cache
    from ticketeval.demo import DEFAULT_DEMO_EVENTS
    from ticketeval.sources import check_url

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
    from ticketeval.cache import ensure_cache

    result = ensure_cache(settings, source)
    if on_fetch is not None:
        on_fetch(result)
    return result.cache


def evaluate(
    settings: Settings,
    *,
    batch_size: int | None = None,
    seed: int | None = None,
    model: str = "heuristic",
    source: str | None = None,
    on_fetch: FetchCallback | None = None,
) -> dict[str, Any]:
    """`ticketeval evaluate`: score `model` on one batch in this process, record the trial,
    and return its summary."""
    from ticketeval.demo import DEMO_SOURCE
    from ticketeval.history import append_history
    from ticketeval.settings import check_seed
    from ticketeval.trial import score_trial

    if seed is not None:
        check_seed(seed)  # before any work: a trial is never computed only to be refused
    _prepare_data(settings, source, on_fetch)
    summary = score_trial(
        data_dir=settings.data_dir,
        batch_size=settings.batch_size if batch_size is None else batch_size,
        seed=settings.seed if seed is None else seed,
        model=model,
        demo=source == DEMO_SOURCE,
    )
    append_history(settings.history_file, summary)
    return summary


def run_local(
    settings: Settings,
    *,
    cluster: ClusterOptions,
    batch_size: int | None = None,
    seed: int | None = None,
    model: str = "heuristic",
    source: str | None = None,
    on_fetch: FetchCallback | None = None,
    on_cluster: Callable[[str, str | None], None] | None = None,
) -> dict[str, Any]:
    """`ticketeval run-local`: the same trial as a Prefect flow on Dask (the flow records it);
    returns its summary. Everything that can be checked is checked before a cluster starts."""
    from ticketeval.batches import check_batch_size
    from ticketeval.cluster import run_flow
    from ticketeval.demo import DEMO_SOURCE
    from ticketeval.flow import build_flow, flow_name
    from ticketeval.models import load_model, model_columns
    from ticketeval.settings import check_seed

    if seed is not None:
        check_seed(seed)
    cache = _prepare_data(settings, source, on_fetch)
    size = settings.batch_size if batch_size is None else batch_size
    check_batch_size(size, cache)
    model_columns(load_model(model), name=model)
    build = functools.partial(
        build_flow,
        name=flow_name(settings.username),
        batch_size=size,
        seed=settings.seed if seed is None else seed,
        model=model,
        data_dir=settings.data_dir,
        history_path=settings.history_file,
        runner="run-local",
        demo=source == DEMO_SOURCE,
    )
    return run_flow(build, cluster, on_cluster=on_cluster)


def history(
    settings: Settings, *, last: int | None = None, threshold: float = 0.25
) -> list[HistoryRow]:
    """`ticketeval history`: the recorded trials, oldest first, with their regression flags."""
    from ticketeval.history import read_history

    return read_history(settings.history_file, last=last, threshold=threshold)


def describe_sizes(settings: Settings) -> dict[str, str]:
    """`ticketeval describe-sizes`: Saturn Cloud's instance sizes, name → description."""
    from ticketeval import saturn

    return saturn.describe_sizes(settings)


def register(
    settings: Settings,
    *,
    cluster: SaturnClusterOptions,
    instance_size: str | None = None,
    schedule_hours: float | None = None,
    batch_size: int | None = None,
    project: str | None = None,
    dry_run: bool = False,
) -> Registration:
    """`ticketeval register`: the flow registered with Prefect Cloud for a Saturn cluster."""
    from ticketeval import saturn

    return saturn.register(
        settings,
        cluster=cluster,
        instance_size=instance_size,
        schedule_hours=schedule_hours,
        batch_size=settings.batch_size if batch_size is None else batch_size,
        project=project,
        dry_run=dry_run,
    )
