"""The command line: declare options, load settings, call one core function, render.

Heavy libraries (pandas, pyarrow, Prefect, Dask, scikit-learn) are imported inside the
commands, through `ticketeval.core`, so that `ticketeval --help` stays fast.

The command modules (and options.py) evaluate their annotations at import, with no
`from __future__ import annotations`: Typer reads every command's annotations each time it
builds the command line, and as strings they were compiled and evaluated again each time
(16 ms a build, 6 ms now).
"""

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ticketeval import __version__, core
from ticketeval.cli import backtest as cli_backtest
from ticketeval.cli import history as cli_history
from ticketeval.cli import job as cli_job
from ticketeval.cli import open_tickets as cli_open_tickets
from ticketeval.cli import saturn as cli_saturn
from ticketeval.cli.options import (
    AddressOption,
    AsOfOption,
    BatchSizeOption,
    ClosedFromOption,
    ClosedToOption,
    DashboardOption,
    DataDirOption,
    EstimateOption,
    FailIfMaeAboveOption,
    Group,
    JsonOption,
    LogFileOption,
    MemoryLimitOption,
    ModelOption,
    OpenOnlyOption,
    QuietOption,
    ReportOption,
    SaturnOption,
    SeedOption,
    SinceLastOption,
    SourceOption,
    StreamOption,
    ThreadsPerWorkerOption,
    VerboseOption,
    WorkersOption,
)
from ticketeval.cli.render import (
    Reporter,
    describe_cache,
    download_progress,
    render_model,
    spool_line,
)
from ticketeval.cli.render_backtest import render_history
from ticketeval.cli.runtime import (
    announce,
    flow_settings,
    handle_sigterm,
    report_fetch,
    report_trial,
    reported_errors,
    settings_for,
    show_library_logs,
)
from ticketeval.errors import UsageError
from ticketeval.request import TrialRequest
from ticketeval.scoring import HEURISTIC

app = typer.Typer(
    name="ticketeval",
    cls=Group,
    help="Score a time-to-close model on IT support tickets, every day.",
    no_args_is_help=True,
    # Click's plain help, as pip's: Typer's Rich formatter imports rich.markdown, markdown-it
    # and rich.traceback for every --help (about 60 ms, half of the whole command).
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def version_callback(value: bool) -> None:
    if value:
        print(f"ticketeval {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version."
        ),
    ] = None,
) -> None:
    """Score a time-to-close model on IT support tickets, every day.

    \b
    Quick start (offline): ticketeval evaluate --batch-size 1000 --source demo
    """
    # Arrow's default allocator (mimalloc) keeps the memory Arrow frees for Arrow, while the
    # pandas and NumPy arrays built from it come from malloc: on a large log the process then
    # holds both. With the system allocator freed memory is reused (10M events: about 0.98 ->
    # 0.74 GiB peak, parse time unchanged). Read when pyarrow is first imported; a user's wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    handle_sigterm(ctx)


# --- fetch -----------------------------------------------------------------------------------


@app.command()
def fetch(
    *,
    source: SourceOption = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="Download from this URL. [default: TICKETEVAL_DATA_URL, else UCI]",
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

    \b
    Example: ticketeval fetch --source incident_event_log.zip
    """
    reporter = Reporter(quiet=quiet, log_file=log_file)
    with reported_errors(reporter):
        settings = settings_for(data_dir)
        show_library_logs(verbose)
        with download_progress(enabled=not (quiet or json_output)) as progress:
            result = core.fetch(
                settings,
                source=source,
                url=url,
                force=force,
                demo_seed=seed,
                demo_events=demo_events,
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


# --- evaluate and run-local --------------------------------------------------------------------


@app.command()
def evaluate(
    *,
    batch_size: BatchSizeOption = None,
    seed: SeedOption = None,
    model: ModelOption = None,
    source: SourceOption = None,
    closed_from: ClosedFromOption = None,
    closed_to: ClosedToOption = None,
    since_last: SinceLastOption = False,
    as_of: AsOfOption = None,
    estimate: EstimateOption = True,
    stream: StreamOption = None,
    open_only: OpenOnlyOption = False,
    report: ReportOption = None,
    data_dir: DataDirOption = None,
    fail_if_mae_above: FailIfMaeAboveOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
    log_file: LogFileOption = None,
) -> None:
    """Score the model (or several, side by side) on one batch, in this process (no Prefect,
    no Dask).

    \b
    Example: ticketeval evaluate --batch-size 1000 --seed 42 --source demo
    """
    reporter = Reporter(quiet=quiet, log_file=log_file)
    with reported_errors(reporter):
        request = TrialRequest(
            batch_size=batch_size,
            seed=seed,
            model=tuple(model or [HEURISTIC]),
            source=source,
            closed_from=closed_from,
            closed_to=closed_to,
            since_last=since_last,
            as_of=as_of,
            estimate=estimate,
            stream=stream,
            open_only=open_only,
            report=report,
        )
        summary = core.evaluate(
            settings_for(data_dir), request, on_fetch=lambda result: report_fetch(result, reporter)
        )
        report_trial(summary, reporter, json_output=json_output, limit=fail_if_mae_above)


@app.command("run-local")
def run_local(
    *,
    batch_size: BatchSizeOption = None,
    seed: SeedOption = None,
    model: ModelOption = None,
    source: SourceOption = None,
    closed_from: ClosedFromOption = None,
    closed_to: ClosedToOption = None,
    since_last: SinceLastOption = False,
    as_of: AsOfOption = None,
    estimate: EstimateOption = True,
    stream: StreamOption = None,
    open_only: OpenOnlyOption = False,
    report: ReportOption = None,
    workers: WorkersOption = None,
    threads_per_worker: ThreadsPerWorkerOption = None,
    memory_limit: MemoryLimitOption = None,
    dashboard: DashboardOption = None,
    address: AddressOption = None,
    saturn: SaturnOption = False,
    data_dir: DataDirOption = None,
    fail_if_mae_above: FailIfMaeAboveOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    log_file: LogFileOption = None,
) -> None:
    """Run the evaluation as a Prefect flow on a local Dask cluster (or --address, or --saturn
    inside a Saturn Cloud job).

    \b
    Example: ticketeval run-local --batch-size 1000 --source demo
    """
    reporter = Reporter(quiet=quiet, log_file=log_file)
    with reported_errors(reporter):
        from ticketeval.pipeline.cluster import ClusterOptions

        cluster = ClusterOptions(
            workers,
            threads_per_worker,
            memory_limit,
            address,
            verbose,
            saturn=saturn,
            dashboard=dashboard,
        )
        settings = flow_settings(data_dir, verbose=verbose)
        request = TrialRequest(
            batch_size=batch_size,
            seed=seed,
            model=tuple(model or [HEURISTIC]),
            source=source,
            closed_from=closed_from,
            closed_to=closed_to,
            since_last=since_last,
            as_of=as_of,
            estimate=estimate,
            stream=stream,
            open_only=open_only,
            report=report,
        )
        summary = core.run_local(
            settings,
            request,
            cluster=cluster,
            on_fetch=lambda result: report_fetch(result, reporter),
            on_cluster=lambda address, dashboard: announce(reporter, address, dashboard),
        )
        report_trial(summary, reporter, json_output=json_output, limit=fail_if_mae_above)


# Replaying the log period by period: in cli/backtest.py.
app.command()(cli_backtest.backtest)


# --- train ---------------------------------------------------------------------------------------


@app.command()
def train(
    *,
    closed_before: Annotated[
        str | None,
        typer.Option(
            "--closed-before",
            help="Train on the incidents closed before this date (YYYY-MM-DD[THH:MM]); the "
            "others are the holdout.",
            show_default=False,
        ),
    ] = None,
    train_fraction: Annotated[
        float | None,
        typer.Option(
            "--train-fraction",
            help="Or cut at this fraction of the closures, in time order. [default: 0.7]",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to save the model file (replaced).")
    ] = Path("model.skops"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the trees.")] = 0,
    loss: Annotated[
        str,
        typer.Option(
            "--loss", help="'absolute_error' (the MAE scored) or 'log' (squared error on log1p)."
        ),
    ] = "absolute_error",
    censoring: Annotated[
        str,
        typer.Option(
            "--censoring",
            help="'none' (learn from the incidents closed before the cut) or 'ipcw' (also from "
            "those still open then, as censored examples: inverse-probability-of-censoring "
            "weights).",
        ),
    ] = "none",
    show: Annotated[
        Path | None,
        typer.Option(
            "--show",
            help="Only show what a saved model file says about itself (no training).",
            show_default=False,
        ),
    ] = None,
    source: SourceOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a model on the cached log (gradient-boosted trees), score it on the later
    tickets, and save it for --model.

    \b
    Example: ticketeval train --train-fraction 0.7 --out model.skops, then
      ticketeval evaluate --model heuristic --model model.skops
    """
    reporter = Reporter(quiet=quiet)
    with reported_errors(reporter):
        if show is not None:
            described = core.show_model(show)
        else:
            described = core.train(
                settings_for(data_dir),
                closed_before=closed_before,
                train_fraction=train_fraction,
                out=out,
                seed=seed,
                loss=loss,
                censoring=censoring,
                source=source,
                on_fetch=lambda result: report_fetch(result, reporter),
            )
        if json_output:
            print(json.dumps(described))
            return
        if not quiet:  # --quiet: silent like every other command (the file is written)
            render_model(described, saved=show is None)


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
            help="For trials without an interval: flag an MAE above the median of earlier "
            "trials of the same model on the same data by more than this fraction.",
        ),
    ] = 0.25,
    model: Annotated[
        str | None, typer.Option(help="Only this model's trials.", show_default=False)
    ] = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the recorded trials, their MAE trend, and flag regressions.

    \b
    Example: ticketeval history --last 30
    """
    reporter = Reporter()
    with reported_errors(reporter):
        view = core.history(settings_for(data_dir), last=last, threshold=threshold, model=model)
        for note in view.notes:
            reporter.info(note)
        for spool in view.waiting:
            reporter.info(spool_line(spool))
        if json_output:
            print(json.dumps(view.records(), allow_nan=False))
            return
        if not view.rows:
            if model is not None:  # the history may hold other models' trials
                reporter.info(
                    f"No trial of model {model!r} in {view.history}: `ticketeval history` "
                    "shows the models recorded."
                )
            else:
                reporter.info(f"No trials recorded yet in {view.history}.")
            return
        render_history(view)


@app.command()
def report(
    *,
    trial: Annotated[
        str | None,
        typer.Option(help="The trial's id (a unique prefix will do).", show_default=False),
    ] = None,
    last: Annotated[bool, typer.Option("--last", help="The last trial recorded.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="The page to write. [default: report.html, without --png]"),
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option("--png", help="Also write each chart as a PNG in this directory (mail)."),
    ] = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write a trial's report: one self-contained HTML page, readable offline, and PNGs.

    \b
    Example: ticketeval report --last --out report.html --png charts/
    """
    reporter = Reporter()
    with reported_errors(reporter):
        if trial is not None and last:
            raise UsageError("--trial and --last name the trial two ways: give one.")
        if out is None and png is None:
            out = Path("report.html")
        written = core.report(settings_for(data_dir), trial_id=trial, out=out, png_dir=png)
        if json_output:
            print(json.dumps(written))
            return
        for path in [written["page"], *written["charts"]]:
            if path:
                reporter.info(f"Wrote {path}")


# The open tickets' estimate, validated on replayed snapshots: in cli/open_tickets.py.
app.command()(cli_open_tickets.snapshots)

# Saturn Cloud and Prefect Cloud: their commands live in saturn.py; history-copy in history.py.
app.command("describe-sizes")(cli_saturn.describe_sizes)
app.command()(cli_saturn.register)
app.command("history-copy")(cli_history.history_copy)
# Saturn Cloud Jobs: `ticketeval job deploy|start|stop|status|logs|delete` (cli/job.py).
app.add_typer(cli_job.app, name="job")
