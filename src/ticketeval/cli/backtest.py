"""`ticketeval backtest`: the log replayed period by period, each period judged for a model
alert (the skill below its band) apart from a data shift (the constant's MAE off its band).

A plain function with its arguments; `app.py` adds it to the app.
"""

import json
from typing import Annotated

import typer

from ticketeval import core
from ticketeval.cli.options import (
    AddressOption,
    BacktestModelOption,
    ClosedFromOption,
    ClosedToOption,
    DashboardOption,
    DataDirOption,
    JsonOption,
    LogFileOption,
    MemoryLimitOption,
    OpenOnlyOption,
    QuietOption,
    ReportOption,
    SeedOption,
    SourceOption,
    StreamOption,
    ThreadsPerWorkerOption,
    VerboseOption,
    WorkersOption,
)
from ticketeval.cli.render import Reporter
from ticketeval.cli.render_backtest import render_backtest
from ticketeval.cli.runtime import announce, flow_settings, report_fetch, reported_errors
from ticketeval.errors import ExitCode
from ticketeval.request import BacktestRequest
from ticketeval.scoring import HEURISTIC


def backtest(
    *,
    every: Annotated[
        str,
        typer.Option(
            help="Period length: 'month' (calendar months), 'week' (from Monday) or '<N>d'."
        ),
    ] = "month",
    closed_from: ClosedFromOption = None,
    closed_to: ClosedToOption = None,
    model: BacktestModelOption = None,
    batch_size: Annotated[
        str,
        typer.Option("--batch-size", help="Events to sample per period, or 'all'."),
    ] = "all",
    seed: SeedOption = None,
    reference: Annotated[
        int | None,
        typer.Option(
            help="Periods that set the bands (mean ± 3 SD of the skill and of the constant's "
            "MAE). [default: first third]",
            show_default=False,
        ),
    ] = None,
    min_events: Annotated[
        int,
        typer.Option(help="Fewer events than this: shown, marked too small to judge."),
    ] = 100,
    fail_on_alert: Annotated[
        bool,
        typer.Option(
            "--fail-on-alert",
            help="Exit with code 11 when a period has a model alert (data shifts do not count).",
        ),
    ] = False,
    source: SourceOption = None,
    stream: StreamOption = None,
    open_only: OpenOnlyOption = False,
    report: ReportOption = None,
    workers: WorkersOption = None,
    threads_per_worker: ThreadsPerWorkerOption = None,
    memory_limit: MemoryLimitOption = None,
    dashboard: DashboardOption = None,
    address: AddressOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    log_file: LogFileOption = None,
) -> None:
    """Replay the log period by period (a Prefect flow, the periods in parallel on Dask).

    \b
    Example: ticketeval backtest --every month --source demo
    """
    reporter = Reporter(quiet=quiet, log_file=log_file)
    with reported_errors(reporter):
        from ticketeval.pipeline.cluster import ClusterOptions

        cluster = ClusterOptions(
            workers, threads_per_worker, memory_limit, address, verbose, dashboard=dashboard
        )
        settings = flow_settings(data_dir, verbose=verbose)
        request = BacktestRequest(
            every=every,
            closed_from=closed_from,
            closed_to=closed_to,
            # One --model is one string (commas name several, refused); repeated, refused too.
            model=model[0] if model and len(model) == 1 else tuple(model or (HEURISTIC,)),
            batch_size=batch_size,
            seed=seed,
            reference=reference,
            min_events=min_events,
            source=source,
            stream=stream,
            open_only=open_only,
            report=report,
        )
        result = core.backtest(
            settings,
            request,
            cluster=cluster,
            on_fetch=lambda fetched: report_fetch(fetched, reporter),
            on_cluster=lambda address, dashboard: announce(reporter, address, dashboard),
        )
        reporter.log(json.dumps(result))
        if json_output:
            print(json.dumps(result))
        elif not reporter.quiet:
            render_backtest(result)
        else:
            for row in result["periods"]:
                if row["alert"]:
                    reporter.alert(
                        f"MODEL ALERT {row['label']}: skill {row['skill']:.3f} is below the "
                        "band the reference periods set."
                    )
                if row["data_shift"]:
                    reporter.info(
                        f"data shift {row['label']}: the constant's MAE "
                        f"{row['baseline_MAE']:,.0f} s is outside the band the reference "
                        "periods set (the tickets' mix changed)."
                    )
        if "report" in result:
            reporter.info(f"Report: {result['report']['page']}")
        spooled = result["recorded"]["spooled"] if "recorded" in result else 0
        if spooled:
            # As for every command: a trial that only reached the spool is exit 7, one line.
            reporter.error(
                f"{spooled} of {len(result['periods'])} period trial(s) only reached the spool: "
                f"{result['recorded'].get('message')}"
            )
            raise typer.Exit(code=int(ExitCode.SPOOLED))
        if fail_on_alert and result["alerts"]:
            raise typer.Exit(code=int(ExitCode.MODEL_ALERT))
