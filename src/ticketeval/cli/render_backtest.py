"""What people read of the signal over time: a backtest's periods and bands, the history's
trials, flags and trends. Beside `render.py`, which prints a single trial.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import JustifyMethod
from rich.text import Text

from ticketeval.cli.render import new_table, period_text, stdout
from ticketeval.formatting import format_ratio, format_seconds

if TYPE_CHECKING:
    from ticketeval.history.store import HistoryRow, HistoryView
    from ticketeval.scoring.summary import BacktestResult


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


def render_backtest(result: BacktestResult) -> None:
    title = f"Backtest {result['run_id']}: {result['model']} every {result['every']}"
    table = new_table(title)
    # The leakage guard: shown when the model trained on tickets of some period.
    overlapping = any(row.get("overlaps_training") for row in result["periods"])
    columns = ["period", "events", "incidents", "MAE", "95% CI", "constant MAE", "skill", ""]
    if overlapping:
        columns.append("in training")
    for column in columns:
        justify: JustifyMethod = "right" if column in columns[1:7] else "left"
        table.add_column(column, justify=justify, overflow="fold")
    for row in result["periods"]:
        marks = []
        if row["too_small"]:
            marks.append(Text("too small", style="dim"))
        if row["alert"]:
            marks.append(Text("MODEL ALERT", style="bold red"))
        if row.get("data_shift"):
            marks.append(Text("data shift", style="yellow"))
        if row["reference"] and not row["too_small"]:
            marks.append(Text("reference" + (" (clipped)" if row.get("clipped") else ""), "dim"))
        interval = "" if row["MAE_low"] is None else f"{row['MAE_low']:,.0f}–{row['MAE_high']:,.0f}"
        table.add_row(
            row["label"],
            f"{row['events']:,}",
            "" if row["incidents"] is None else f"{row['incidents']:,}",
            format_seconds(row["MAE"]),
            interval,
            format_seconds(row["baseline_MAE"]),
            format_ratio(row["skill"]),
            Text(", ").join(marks),
            *(
                [Text("YES", style="bold red") if row.get("overlaps_training") else Text("")]
                if overlapping
                else []
            ),
        )
    stdout.print(table)
    if overlapping:
        stdout.print(
            "In training: the model trained on tickets closed in that period; its figures "
            "there flatter it."
        )
    stdout.print(backtest_bands_text(result))


def backtest_bands_text(result: BacktestResult) -> str:
    """What the bands are, from how many periods, and what the run found."""
    bands = result["thresholds"]
    model, data = bands["model"], bands["data"]
    reference = result["reference_periods"]
    if model is None or data is None:
        return (
            f"No bands: fewer than two of the first {reference} periods have enough events "
            f"(--reference, --min-events {result['min_events']})."
        )
    clipped = [str(row["label"]) for row in result["periods"][:reference] if row.get("clipped")]
    contributed = f"{model['reference_periods']} of the first {reference} periods"
    if model["reference_periods"] < reference:
        contributed += f" (the others have fewer than {result['min_events']} events)"
    if clipped:
        contributed += f"; {', '.join(clipped)} clipped by --closed-from, a reference all the same"
    return (
        f"Bands (mean ± 3 SD) from {contributed}: skill {model['lower']:.3f} to "
        f"{model['upper']:.3f}, {result['alerts']} model alert(s) (the skill's whole interval "
        f"below the band); the constant's MAE {data['lower']:,.0f}–{data['upper']:,.0f} s, "
        f"{result['data_shifts']} data shift(s) (the tickets' mix changed: a notice)."
    )


def render_history(view: HistoryView) -> None:
    table = new_table(f"Trials in {view.history}")
    columns = ("when", "runner", "model", "period", "events", "MAE", "95% CI", "skill", "")
    for column in columns:
        table.add_column(
            column, justify="left" if column in columns[:4] else "right", overflow="fold"
        )
    for row, flagged in zip(view.rows, view.flagged, strict=True):
        period = row.period_label or period_text(
            {"closed_from": row.closed_from, "closed_to": row.closed_to}
        )
        interval = "" if row.MAE_low is None else f"{row.MAE_low:,.0f}–{row.MAE_high:,.0f}"
        table.add_row(
            row.timestamp.replace("T", " ")[:19],
            row.runner or "",
            row.model or "",
            period,
            f"{row.num_obs:,}" if row.num_obs is not None else "",
            format_seconds(row.MAE),
            interval,
            format_ratio(row.skill),
            history_mark(row, flagged),
        )
    stdout.print(table)
    # One trend per model, stream and population: a month of tickets, a random sample of the
    # whole log and the demo data are not one series.
    for model, stream, population in dict.fromkeys(map(trend_key, view.rows)):
        maes = [row.MAE for row in view.rows if trend_key(row) == (model, stream, population)]
        title = f"MAE trend {model} on {stream or 'unnamed data'} ({population or 'unknown'}) "
        stdout.print(Text.assemble((title, "bold"), sparkline(maes)))


def trend_key(row: HistoryRow) -> tuple[str, str | None, str | None]:
    """Which series a history row belongs to (the stream, else the data's checksum)."""
    return (row.model, row.stream or row.data_sha256, row.population)


def history_mark(row: HistoryRow, flagged: bool) -> Text:
    """A backtest's period says which kind of signal it raised; a single trial, whether it is
    worse than the earlier ones like it."""
    if not row.run_id:
        return Text("worse", style="bold red") if flagged else Text("")
    marks = []
    if row.alert:
        marks.append(Text("model alert", style="bold red"))
    if row.data_shift:
        marks.append(Text("data shift", style="yellow"))
    return Text(", ").join(marks)
