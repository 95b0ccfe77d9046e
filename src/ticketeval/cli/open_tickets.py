"""`ticketeval snapshots`: the open tickets' estimated MAE replayed period by period and held
to what happened. A plain function with its options; app.py adds it to the app."""

import json
from typing import Annotated, Any

import typer

from ticketeval import core
from ticketeval.cli.options import (
    BacktestModelOption,
    DataDirOption,
    JsonOption,
    QuietOption,
    SourceOption,
)
from ticketeval.cli.render import Reporter, new_table, stdout
from ticketeval.cli.runtime import report_fetch, reported_errors, settings_for
from ticketeval.formatting import format_seconds


def snapshots(
    *,
    every: Annotated[
        str,
        typer.Option(
            help="Snapshot at the end of each period: 'month', 'week' (from Monday) or '<N>d'."
        ),
    ] = "month",
    model: BacktestModelOption = None,
    source: SourceOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Replay the log as of each period's end: the open tickets' lower bound and estimated MAE
    against their realized MAE (hindsight), to validate the estimate `evaluate --as-of` gives.

    \b
    Example: ticketeval snapshots --every month --source demo
    """
    reporter = Reporter(quiet=quiet)
    with reported_errors(reporter):
        result = core.snapshots(
            settings_for(data_dir),
            every=every,
            # One --model is one string (commas name several, refused); repeated, refused too.
            model=model[0] if model and len(model) == 1 else (model or "heuristic"),
            source=source,
            on_fetch=lambda fetched: report_fetch(fetched, reporter),
        )
        if json_output:
            print(json.dumps(result))
        elif not reporter.quiet:
            render_snapshots(result)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.0%}"


def render_snapshots(result: dict[str, Any]) -> None:
    table = new_table(f"Open tickets at each {result['every']}'s end, {result['model']}")
    columns = (
        "as of",
        "open",
        "MAE at least",
        "estimated MAE (95% sampling interval)",
        "realized",
        "error",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "as of" else "right", overflow="fold")
    for row in result["snapshots"]:
        interval = row["estimated_MAE_ci"]
        estimate = format_seconds(row["estimated_MAE"])
        if interval:
            estimate += f" ({interval[0]:,.0f}–{interval[1]:,.0f})"
        table.add_row(
            row["as_of"][:10],
            f"{row['incidents']:,}",
            format_seconds(row["lower_bound_MAE"]),
            estimate,
            format_seconds(row["realized_MAE"]),
            _share(row["relative_error"]),
        )
    stdout.print(table)
    summary = result["summary"]
    error, bound = (
        summary["mean_absolute_relative_error"],
        summary["bound_mean_absolute_relative_error"],
    )
    if error is None:
        stdout.print("No snapshot had a realized MAE to judge the estimate by.")
        return
    stdout.print(
        f"Estimate: mean absolute relative error {error:.0%} (the lower bound's: {bound:.0%}); "
        f"closer than the bound in {summary['closer_than_bound']} of {summary['judged']}; "
        f"its interval covered the realized MAE in {summary['covered']} of {summary['judged']} "
        f"snapshots ({summary['coverage']:.0%})."
    )
