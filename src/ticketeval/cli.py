"""The command line: declare options, load settings, call one core function, render.

Heavy libraries (pandas, pyarrow, Prefect, Dask, scikit-learn) are imported inside the
commands, through `ticketeval.core`, so that `ticketeval --help` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ticketeval import __version__
from ticketeval.errors import ExitCode, TicketevalError, UsageError

if TYPE_CHECKING:
    from ticketeval.core import CacheInfo
    from ticketeval.settings import Settings

app = typer.Typer(
    name="ticketeval",
    help="Score a time-to-close model on IT support tickets, every day.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


# --- Options several commands share -------------------------------------------------------------

SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="A local .zip or .csv of the event log, or 'demo' for synthetic data (offline).",
        show_default=False,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Cache and history directory. \\[default: TICKETEVAL_DATA_DIR or ~/.cache/ticketeval]",
        show_default=False,
    ),
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        help="Events to sample. \\[default: TICKETEVAL_BATCH_SIZE or 1000]",
        show_default=False,
    ),
]
SeedOption = Annotated[
    int | None,
    typer.Option(
        "--seed",
        help="Random seed for the sample. \\[default: TICKETEVAL_SEED, else fresh each trial]",
        show_default=False,
    ),
]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model", help="'heuristic', or package.module:function returning seconds per row."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only the result and errors.")
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show library logs (retries, Prefect) on stderr.")
]
LogFileOption = Annotated[
    Path | None,
    typer.Option(
        "--log-file",
        help="Also append messages and the trial summary to this file (for cron).",
        show_default=False,
    ),
]
FailIfMaeAboveOption = Annotated[
    float | None,
    typer.Option(
        "--fail-if-mae-above",
        help=f"Exit with code {int(ExitCode.MAE_ABOVE_LIMIT)} when the trial's MAE (seconds) "
        "is above this.",
        show_default=False,
        min=0,
    ),
]


class Reporter:
    """Messages for people: stderr (unless --quiet) and, with --log-file, a file."""

    def __init__(self, *, quiet: bool = False, log_file: Path | None = None) -> None:
        self.quiet = quiet
        self.log_file = log_file

    def info(self, message: str) -> None:
        if not self.quiet:
            stderr.print(Text(message))
        self.log(message)

    def error(self, message: str) -> None:
        stderr.print(Text.assemble(("Error: ", "bold red"), message))
        self.log(f"Error: {message}")

    def log(self, message: str) -> None:
        if self.log_file is None:
            return
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with contextlib.suppress(OSError), self.log_file.open("a", encoding="utf-8") as out:
            out.write(f"{stamp} {message}\n")


@contextlib.contextmanager
def reported_errors(reporter: Reporter) -> Iterator[None]:
    """The one place expected failures become a line on stderr and an exit code."""
    try:
        yield
    except TicketevalError as error:
        reporter.error(str(error))
        raise typer.Exit(code=int(error.exit_code)) from None
    except KeyboardInterrupt:
        # Ctrl-C right after a message was written, before Rich emptied its buffer, would
        # print that message again with this one: drop what is left in the buffer.
        stderr.begin_capture()
        stderr.end_capture()
        reporter.error("interrupted.")
        raise typer.Exit(code=int(ExitCode.INTERRUPTED)) from None


def settings_for(data_dir: Path | None) -> Settings:
    from ticketeval.settings import load_settings

    return load_settings(**({"data_dir": data_dir} if data_dir else {}))


def quiet_prefect_logs(verbose: bool) -> None:
    # Prefect 1 reads its log level when first imported, here and in each Dask worker.
    if verbose:
        os.environ["PREFECT__LOGGING__LEVEL"] = "INFO"
    else:
        os.environ.setdefault("PREFECT__LOGGING__LEVEL", "CRITICAL")


def show_library_logs(verbose: bool) -> None:
    if verbose:
        logging.basicConfig(
            stream=sys.stderr, level=logging.DEBUG, format="%(name)s: %(message)s", force=True
        )
        logging.getLogger("urllib3").setLevel(logging.DEBUG)


def version_callback(value: bool) -> None:
    if value:
        print(f"ticketeval {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version."
        ),
    ] = None,
) -> None:
    """Score a time-to-close model on IT support tickets, every day.

    Quick start (offline): [bold]ticketeval evaluate --batch-size 1000 --source demo[/bold]
    """
    # Arrow's default allocator (mimalloc) keeps the memory Arrow frees for Arrow, while the
    # pandas and NumPy arrays built from it come from malloc: on a large log the process then
    # holds both. With the system allocator freed memory is reused (10M events: about 0.98 ->
    # 0.74 GiB peak, parse time unchanged). Read when pyarrow is first imported; a user's wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


# --- fetch -----------------------------------------------------------------------------------


@app.command()
def fetch(
    *,
    source: SourceOption = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="Download from this URL. \\[default: TICKETEVAL_DATA_URL, else UCI]",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if cached.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the demo data (--source demo).")] = 0,
    demo_events: Annotated[
        int, typer.Option("--demo-events", min=2, help="Events in the demo data.")
    ] = 20_000,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    log_file: LogFileOption = None,
) -> None:
    """Get the event log into the local cache: UCI's zip, a local file, or demo data.

    Example: [bold]ticketeval fetch --source incident_event_log.zip[/bold]
    """
    reporter = Reporter(quiet=quiet, log_file=log_file)
    with reported_errors(reporter):
        settings = settings_for(data_dir)
        show_library_logs(verbose)
        from ticketeval import core

        with download_progress(enabled=not (quiet or json_output)) as progress:
            result = core.fetch(
                source,
                data_dir=settings.data_dir,
                url=url or settings.data_url,
                force=force,
                demo_seed=seed,
                demo_events=demo_events,
                timeout=settings.timeout,
                progress=progress,
            )
        for note in result.notes:
            reporter.info(note)
        if json_output:
            print(json.dumps({"reused": result.reused, **vars(result.cache)}))
            return
        verb = "Reusing the cache of" if result.reused else "Fetched"
        reporter.info(f"{verb} {describe_cache(result.cache)}")
        if result.reused:
            reporter.info("(use --force to fetch again)")


def describe_cache(cache: CacheInfo) -> str:
    span = ""
    if cache.first_event and cache.last_event:
        span = f", {cache.first_event[:10]} to {cache.last_event[:10]}"
    return (
        f"{cache.rows:,} events of {cache.incidents:,} incidents{span} "
        f"from {cache.source}, cached in {cache.path}"
    )


@contextlib.contextmanager
def download_progress(*, enabled: bool) -> Iterator[Any]:
    """A Rich progress bar for downloads, only on a terminal."""
    if not (enabled and stderr.is_terminal):
        yield None
        return
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=stderr
    ) as bar:
        task_id = bar.add_task("Downloading", total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task_id, completed=done, total=total)

        yield update


# --- evaluate and run-local --------------------------------------------------------------------


@app.command()
def evaluate(
    *,
    batch_size: BatchSizeOption = None,
    seed: SeedOption = None,
    model: ModelOption = "heuristic",
    source: SourceOption = None,
    data_dir: DataDirOption = None,
    fail_if_mae_above: FailIfMaeAboveOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
    log_file: LogFileOption = None,
) -> None:
    """Score the model on one batch, in this process (no Prefect, no Dask).

    Example: [bold]ticketeval evaluate --batch-size 1000 --seed 42 --source demo[/bold]
    """
    reporter = Reporter(quiet=quiet, log_file=log_file)
    with reported_errors(reporter):
        settings = settings_for(data_dir)
        from ticketeval import core

        prepare_data(core, settings, source, reporter)
        summary = core.evaluate(
            data_dir=settings.data_dir,
            batch_size=settings.batch_size if batch_size is None else batch_size,
            seed=seed if seed is not None else settings.seed,
            model=model,
        )
        core.append_history(settings.history_file, summary)
        report_trial(summary, reporter, json_output=json_output, limit=fail_if_mae_above)


@app.command("run-local")
def run_local(
    *,
    batch_size: BatchSizeOption = None,
    seed: SeedOption = None,
    model: ModelOption = "heuristic",
    source: SourceOption = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Dask worker processes to start. \\[default: 1]", show_default=False),
    ] = None,
    threads_per_worker: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Threads per worker. \\[default: one per core, at most 4]",
            show_default=False,
        ),
    ] = None,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            help="Memory limit per worker, e.g. 2GiB. \\[default: auto]", show_default=False
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Run on an existing Dask scheduler, e.g. tcp://host:8786.", show_default=False
        ),
    ] = None,
    data_dir: DataDirOption = None,
    fail_if_mae_above: FailIfMaeAboveOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    log_file: LogFileOption = None,
) -> None:
    """Run the evaluation as a Prefect flow on a local Dask cluster (or --address).

    Example: [bold]ticketeval run-local --batch-size 1000 --source demo[/bold]
    """
    reporter = Reporter(quiet=quiet, log_file=log_file)
    with reported_errors(reporter):
        if workers is not None and workers < 1:
            raise UsageError(f"--workers must be at least 1, not {workers}.")
        settings = settings_for(data_dir)
        quiet_prefect_logs(verbose)
        from ticketeval import core

        cache = prepare_data(core, settings, source, reporter)
        size = settings.batch_size if batch_size is None else batch_size
        core.check_batch_size(size, cache)
        core.load_model(model)  # fail before starting a cluster, not inside a task
        build = functools.partial(
            core.build_flow,
            name=core.flow_name(settings.username),
            batch_size=size,
            seed=seed if seed is not None else settings.seed,
            model=model,
            data_dir=settings.data_dir,
            history_path=settings.history_file,
            runner="run-local",
        )
        cluster = core.ClusterOptions(workers, threads_per_worker, memory_limit, address, verbose)
        summary = core.run_flow(build, cluster, on_cluster=lambda a, d: announce(reporter, a, d))
        report_trial(summary, reporter, json_output=json_output, limit=fail_if_mae_above)


def announce(reporter: Reporter, address: str, dashboard: str | None) -> None:
    reporter.info(f"Dask scheduler {address}" + (f", dashboard {dashboard}" if dashboard else ""))


def prepare_data(
    core: Any, settings: Settings, source: str | None, reporter: Reporter
) -> CacheInfo:
    """Fetch into the cache first when --source is given or nothing is cached yet."""
    cached = core.read_cache_info(settings.data_dir)
    if source is None and cached is not None:
        return cached
    result = core.fetch(
        source, data_dir=settings.data_dir, url=settings.data_url, timeout=settings.timeout
    )
    for note in result.notes:
        reporter.info(note)
    if not result.reused:
        reporter.info(f"Fetched {describe_cache(result.cache)}")
    return result.cache


def report_trial(
    summary: dict[str, Any], reporter: Reporter, *, json_output: bool, limit: float | None
) -> None:
    reporter.log(json.dumps(summary))
    if json_output:
        print(json.dumps(summary))
    else:
        render_summary(summary)
    mae = summary["data"]["metrics"]["MAE"]
    if limit is not None and mae is not None and mae > limit:
        reporter.error(f"MAE {mae:,.0f} s is above the limit of {limit:,.0f} s.")
        raise typer.Exit(code=int(ExitCode.MAE_ABOVE_LIMIT))


def seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 86_400:
        return f"{value:,.0f} s ({value / 86_400:.1f} d)"
    if abs(value) >= 3_600:
        return f"{value:,.0f} s ({value / 3_600:.1f} h)"
    return f"{value:,.0f} s"


def number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def render_summary(summary: dict[str, Any]) -> None:
    data = summary["data"]
    metrics, target, baseline = data["metrics"], data["target"], data["baseline"]
    table = Table(title=f"Trial {summary['id']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        (
            "num_obs",
            f"{data['num_obs']:,}"
            + (f" ({data['num_dropped']:,} without a target)" if data["num_dropped"] else ""),
        ),
        ("model", summary["model"]),
        ("seed", str(summary["seed"])),
        ("source", summary["source"]["name"]),
        ("MAE", seconds(metrics["MAE"])),
        ("MedAE", seconds(metrics["MedAE"])),
        ("RMSE", seconds(metrics["RMSE"])),
        ("MSE", number(metrics["MSE"], 0)),
        ("R2", number(metrics["R2"])),
        ("MAE of the median", seconds(baseline["MAE"])),
        ("skill vs the median", number(baseline["skill"])),
        ("target mean", seconds(target["mean"])),
        ("target median", seconds(target["median"])),
        ("target min", seconds(target["min"])),
        ("target max", seconds(target["max"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    stdout.print(table)
    per_priority = Table(title="By priority", title_justify="left")
    for column in ("priority", "num_obs", "MAE", "MedAE", "R2"):
        per_priority.add_column(column, justify="left" if column == "priority" else "right")
    for label, values in data["by_priority"].items():
        per_priority.add_row(
            label,
            f"{values['num_obs']:,}",
            seconds(values["MAE"]),
            seconds(values["MedAE"]),
            number(values["R2"]),
        )
    stdout.print(per_priority)


# --- history -----------------------------------------------------------------------------------


@app.command()
def history(
    *,
    last: Annotated[
        int | None, typer.Option(min=1, help="Show only the last N trials.", show_default=False)
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            min=0,
            help="Flag a trial whose MAE exceeds the median of the "
            "earlier ones by more than this fraction.",
        ),
    ] = 0.25,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the recorded trials, their MAE trend, and flag regressions.

    Example: [bold]ticketeval history --last 30[/bold]
    """
    reporter = Reporter()
    with reported_errors(reporter):
        settings = settings_for(data_dir)
        from ticketeval import core

        rows = core.read_history(settings.history_file, last=last, threshold=threshold)
        if json_output:
            print(json.dumps([vars(row) for row in rows]))
            return
        if not rows:
            reporter.info(f"No trials recorded yet in {settings.history_file}.")
            return
        table = Table(title=f"Trials in {settings.history_file}", title_justify="left")
        for column in ("when", "runner", "model", "num_obs", "MAE", "MedAE", "R2", ""):
            table.add_column(
                column, justify="left" if column in ("when", "runner", "model") else "right"
            )
        for row in rows:
            flag = Text("worse", style="bold red") if row.worse_than_median else Text("")
            table.add_row(
                row.timestamp.replace("T", " ")[:19],
                row.runner or "",
                row.model or "",
                f"{row.num_obs:,}" if row.num_obs is not None else "",
                seconds(row.MAE),
                seconds(row.MedAE),
                number(row.R2),
                flag,
            )
        stdout.print(table)
        stdout.print(Text.assemble(("MAE trend ", "bold"), sparkline([row.MAE for row in rows])))


def sparkline(values: list[float | None]) -> str:
    """A one-line trend, lowest ▁ to highest █."""
    bars = "▁▂▃▄▅▆▇█"
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    return "".join(
        " " if v is None else bars[round((v - low) / span * (len(bars) - 1))] for v in values
    )


# --- Saturn Cloud and Prefect Cloud -------------------------------------------------------------


@app.command("describe-sizes")
def describe_sizes(*, json_output: JsonOption = False) -> None:
    """List Saturn Cloud's instance sizes (for --worker-size, --scheduler-size, --instance-size).

    Needs BASE_URL and SATURN_TOKEN. Example: [bold]ticketeval describe-sizes[/bold]
    """
    reporter = Reporter()
    with reported_errors(reporter):
        from ticketeval import saturn

        sizes = saturn.describe_sizes(settings_for(None))
        if json_output:
            print(json.dumps(sizes))
            return
        table = Table(title="Saturn Cloud sizes", title_justify="left")
        table.add_column("size", style="bold")
        table.add_column("description")
        for name, description in sizes.items():
            table.add_row(name, description)
        stdout.print(table)


@app.command()
def register(
    *,
    workers: Annotated[int, typer.Option(min=1, help="Dask workers of the Saturn cluster.")] = 1,
    worker_size: Annotated[
        str | None,
        typer.Option(help="Saturn size of each worker (see describe-sizes).", show_default=False),
    ] = None,
    scheduler_size: Annotated[
        str | None,
        typer.Option(help="Saturn size of the Dask scheduler.", show_default=False),
    ] = None,
    spot: Annotated[
        bool | None,
        typer.Option(
            "--spot/--no-spot",
            help="Workers on spot instances. \\[default: Saturn's]",
            show_default=False,
        ),
    ] = None,
    shutdown_on_close: Annotated[
        bool,
        typer.Option(
            "--shutdown-on-close/--keep-cluster",
            help="Shut the Dask cluster down when a flow run ends.",
        ),
    ] = True,
    adapt_min: Annotated[
        int | None,
        typer.Option(min=0, help="Adaptive scaling: fewest workers.", show_default=False),
    ] = None,
    adapt_max: Annotated[
        int | None, typer.Option(min=1, help="Adaptive scaling: most workers.", show_default=False)
    ] = None,
    instance_size: Annotated[
        str | None,
        typer.Option(
            help="Saturn size of the machine running the flow itself.", show_default=False
        ),
    ] = None,
    schedule_hours: Annotated[
        float | None,
        typer.Option(help="Run every N hours. \\[default: no schedule]", show_default=False),
    ] = None,
    batch_size: BatchSizeOption = None,
    project: Annotated[
        str | None,
        typer.Option(
            help="Prefect Cloud project. \\[default: PREFECT_CLOUD_PROJECT_NAME]",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be registered; no network.")
    ] = False,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Register the flow with Prefect Cloud, to run on a Saturn Cloud Dask cluster.

    Needs BASE_URL, SATURN_TOKEN, PREFECT_USER_TOKEN and a project.
    Example: [bold]ticketeval register --workers 3 --worker-size xlarge --schedule-hours 24[/bold]
    """
    reporter = Reporter()
    with reported_errors(reporter):
        if (adapt_min is None) != (adapt_max is None):
            raise UsageError("--adapt-min and --adapt-max go together: give both, or neither.")
        if adapt_min is not None and adapt_max is not None and adapt_min > adapt_max:
            raise UsageError(f"--adapt-min {adapt_min} is larger than --adapt-max {adapt_max}.")
        settings = settings_for(None)
        quiet_prefect_logs(verbose)
        from ticketeval import saturn

        cluster = saturn.SaturnClusterOptions(
            workers, worker_size, scheduler_size, spot, shutdown_on_close, adapt_min, adapt_max
        )
        registration = saturn.register(
            settings,
            cluster=cluster,
            instance_size=instance_size,
            schedule_hours=schedule_hours,
            batch_size=settings.batch_size if batch_size is None else batch_size,
            project=project,
            dry_run=dry_run,
        )
        details = registration.to_dict()
        if json_output:
            print(json.dumps(details))
            return
        title = "Would register (dry run)" if dry_run else "Registered"
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")  # ids and URLs whole, never cut with "…"
        for name, value in details.items():
            if name != "dry_run":
                table.add_row(name.replace("_", " "), _plain_text(value))
        stdout.print(table)


def _plain_text(value: object) -> str:
    """A registration detail as a reader wants it: lists and mappings without JSON brackets."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, dict):
        # Keyword arguments, shown as the call receives them.
        return ", ".join(f"{key}={item!r}" for key, item in value.items()) or "-"
    return str(value)
