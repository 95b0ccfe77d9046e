"""What people read: the consoles, messages, tables and trends the commands print.

The CLI's side of the boundary: it imports Rich, never the core's heavy libraries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ticketeval.errors import UsageError

if TYPE_CHECKING:
    from ticketeval.core import HistoryView
    from ticketeval.data.cache import CacheInfo
    from ticketeval.history.store import HistoryRow

# Off a terminal (cron mail, a pipe, a file) nothing has to fit a screen: tables take their
# natural width, so that no number or id is cut, whatever COLUMNS says.
OFF_TERMINAL_WIDTH = 1_000


def _console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console.width = OFF_TERMINAL_WIDTH
    return console


stdout = _console()
stderr = _console(stderr=True)


class Reporter:
    """Messages for people: stderr (unless --quiet) and, with --log-file, a file."""

    def __init__(self, *, quiet: bool = False, log_file: Path | None = None) -> None:
        self.quiet = quiet
        self.log_file = log_file

    def open_log(self) -> None:
        """Refuse a --log-file that cannot be appended to, before anything runs."""
        if self.log_file is None:
            return
        try:
            with self.log_file.open("a", encoding="utf-8"):
                pass
        except OSError as error:
            self.log_file = None
            raise UsageError(
                f"--log-file {error.filename or self.log_file} cannot be opened for appending: "
                f"{error.strerror or error}; give a file in a directory that exists and that "
                "you can write."
            ) from None

    def info(self, message: str) -> None:
        if not self.quiet:
            stderr.print(Text(message))
        self.log(message)

    def alert(self, message: str) -> None:
        """A finding to act on: printed even with --quiet."""
        stderr.print(Text(message, style="bold red"))
        self.log(message)

    def error(self, message: str) -> None:
        stderr.print(Text.assemble(("Error: ", "bold red"), message))
        self.log(f"Error: {message}")

    def log(self, message: str) -> None:
        if self.log_file is None:
            return
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            with self.log_file.open("a", encoding="utf-8") as out:
                out.write(f"{stamp} {message}\n")
        except OSError as error:
            # Said once; the trial itself is in the history, so the run goes on.
            path, self.log_file = self.log_file, None
            stderr.print(
                Text.assemble(
                    ("Error: ", "bold red"),
                    f"--log-file {path}: writing failed ({error.strerror or error}); nothing "
                    "more is logged there, the trial is still recorded in the history.",
                )
            )


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


def seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 86_400:
        return f"{value:,.0f} s ({value / 86_400:.1f} d)"
    if abs(value) >= 3_600:
        return f"{value:,.0f} s ({value / 3_600:.1f} h)"
    return f"{value:,.0f} s"


def with_interval(value: float | None, interval: list[float] | None) -> str:
    """A duration and its 95% interval: `152,942 s (1.8 d), 95% CI 131,000–178,000 s`."""
    if value is None or not interval:
        return seconds(value)
    return f"{seconds(value)}, 95% CI {interval[0]:,.0f}–{interval[1]:,.0f} s"


def period_text(period: dict[str, Any] | None) -> str:
    period = period or {}
    start, end = period.get("closed_from"), period.get("closed_to")
    if not start and not end:
        return "all closures"
    return f"closed {(start or '…')[:16]} to {(end or '…')[:16]}".replace("T", " ")


def number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def training_text(info: dict[str, Any] | None) -> str:
    """A trained model's training period: `closed 2016-02-29 to 2016-05-11 (absolute_error)`."""
    if not info:
        return "-"
    first, last = (info.get("trained_from") or "…")[:10], (info.get("trained_until") or "…")[:10]
    return f"closed {first} to {last} ({info.get('loss')})"


def overlap_text(overlaps: bool | None) -> Text:
    if overlaps:
        return Text("YES: it trained on some of these tickets", style="bold red")
    return Text("no")


# Every column folds rather than cutting with "…": on a narrow terminal a number or an id wraps
# whole onto the next line; off a terminal (above) nothing needs to.


def skill_text(baseline: dict[str, Any]) -> str:
    """The skill, with its incident-level interval when the trial has one."""
    interval = baseline.get("skill_ci")
    if baseline.get("skill") is None or not interval:
        return number(baseline.get("skill"))
    return f"{number(baseline['skill'])}, 95% CI {number(interval[0])} to {number(interval[1])}"


def render_summary(summary: dict[str, Any]) -> None:
    if summary.get("models"):
        render_models(summary)
        return
    data = summary["data"]
    metrics, target, baseline = data["metrics"], data["target"], data["baseline"]
    intervals = data.get("metrics_ci") or {}
    table = Table(title=f"Trial {summary['id']}", show_header=False, title_justify="left")
    table.add_column(style="bold", overflow="fold")
    table.add_column(justify="right", overflow="fold")
    rows: list[tuple[str, str | Text]] = [
        (
            "num_obs",
            f"{data['num_obs']:,}"
            + (f" ({data['num_dropped']:,} without a target)" if data["num_dropped"] else ""),
        ),
        ("model", summary["model"]),
    ]
    info = summary.get("model_info")
    if info:
        rows.append(("trained on", training_text(info)))
    if info or summary.get("overlaps_training"):
        rows.append(("overlaps training", overlap_text(summary.get("overlaps_training"))))
    rows += [
        ("seed", str(summary["seed"])),
        ("source", summary["source"]["name"]),
        ("period", period_text(summary.get("period"))),
        ("MAE", with_interval(metrics["MAE"], intervals.get("MAE"))),
        ("MedAE", with_interval(metrics["MedAE"], intervals.get("MedAE"))),
        ("RMSE", with_interval(metrics["RMSE"], intervals.get("RMSE"))),
        ("MSE", number(metrics["MSE"], 0)),
        ("R2", number(metrics["R2"])),
        ("MAE of the median", seconds(baseline["MAE"])),
        ("skill vs the median", skill_text(baseline)),
        ("target mean", seconds(target["mean"])),
        ("target median", seconds(target["median"])),
        ("target min", seconds(target["min"])),
        ("target max", seconds(target["max"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    stdout.print(table)
    for key, group in (("by_priority", "priority"), ("by_state", "state")):
        if not data.get(key):
            continue
        per_group = Table(title=f"By {group}", title_justify="left")
        for column in (group, "num_obs", "MAE", "MedAE", "R2", "constant MAE"):
            per_group.add_column(
                column, justify="left" if column == group else "right", overflow="fold"
            )
        for label, values in data[key].items():
            per_group.add_row(
                label,
                f"{values['num_obs']:,}",
                seconds(values["MAE"]),
                seconds(values["MedAE"]),
                number(values["R2"]),
                seconds(values.get("baseline_MAE")),
            )
        stdout.print(per_group)


def render_models(summary: dict[str, Any]) -> None:
    """Several models scored on one batch: side by side, then each challenger against the
    champion (the first)."""
    blocks: dict[str, dict[str, Any]] = summary["models"]
    names = list(blocks)
    data = summary["data"]
    table = Table(title=f"Trial {summary['id']}", title_justify="left")
    table.add_column("", style="bold")
    for index, name in enumerate(names):
        table.add_column(f"{name}{' (champion)' if index == 0 else ''}", justify="right")
    events = f"{data['num_obs']:,}" + (
        f" ({data['num_dropped']:,} without a target)" if data["num_dropped"] else ""
    )
    table.add_row("num_obs", events, *([""] * (len(names) - 1)))
    table.add_row("seed", str(summary["seed"]), *([""] * (len(names) - 1)))
    table.add_row("source", summary["source"]["name"], *([""] * (len(names) - 1)))
    table.add_row("period", period_text(summary.get("period")), *([""] * (len(names) - 1)))

    def each(render: Any) -> list[Any]:
        return [render(blocks[name]) for name in names]

    table.add_row("trained on", *each(lambda block: training_text(block.get("model_info"))))
    table.add_row(
        "overlaps training", *each(lambda block: overlap_text(block.get("overlaps_training")))
    )
    for metric in ("MAE", "MedAE", "RMSE"):
        table.add_row(
            metric,
            *each(
                lambda block, metric=metric: with_interval(
                    block["metrics"][metric], (block.get("metrics_ci") or {}).get(metric)
                )
            ),
        )
    table.add_row("R2", *each(lambda block: number(block["metrics"]["R2"])))
    table.add_row("MAE of the median", seconds(data["baseline"]["MAE"]), *([""] * (len(names) - 1)))
    table.add_row("skill vs the median", *each(lambda block: skill_text(block["baseline"])))
    stdout.print(table)

    versus = Table(title="Challenger vs champion (paired bootstrap, 95%)", title_justify="left")
    for column in ("challenger", "champion", "MAE difference", "95% CI", "verdict"):
        versus.add_column(
            column, justify="right" if column in ("MAE difference", "95% CI") else "left"
        )
    for row in summary.get("comparison") or []:
        interval = row["ci"]
        if row["better_beyond_noise"]:
            verdict = Text("better beyond noise", style="bold green")
        elif row["worse_beyond_noise"]:
            verdict = Text("worse beyond noise", style="bold red")
        else:
            verdict = Text("within noise")
        versus.add_row(
            row["challenger"],
            row["champion"],
            "n/a" if row["mae_difference"] is None else f"{row['mae_difference']:+,.0f} s",
            "" if interval is None else f"{interval[0]:+,.0f} to {interval[1]:+,.0f} s",
            verdict,
        )
    stdout.print(versus)

    for key, group in (("by_priority", "priority"), ("by_state", "state")):
        if not data.get(key):
            continue
        per_group = Table(title=f"MAE by {group}", title_justify="left")
        per_group.add_column(group)
        per_group.add_column("num_obs", justify="right")
        for name in names:
            per_group.add_column(name, justify="right")
        for label, values in data[key].items():
            per_group.add_row(
                label,
                f"{values['num_obs']:,}",
                *[
                    seconds(((blocks[name].get(key) or {}).get(label) or {}).get("MAE"))
                    for name in names
                ],
            )
        stdout.print(per_group)


def render_model(described: dict[str, Any], *, saved: bool) -> None:
    """A model file's description: how it was trained, and how it scored on its holdout."""
    training, holdout = described.get("training") or {}, described.get("holdout") or {}
    title = f"Saved {described['path']}" if saved else f"Model {described['path']}"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    first, last = training.get("first_closed_at") or "…", training.get("last_closed_at") or "…"
    fraction = training.get("train_fraction")
    cut = (training.get("cut") or "").replace("T", " ")
    rows = [
        ("estimator", described.get("estimator", "")),
        ("loss", described.get("loss", "")),
        ("cut", cut + (f" (the {fraction:.0%} point of the closures)" if fraction else "")),
        (
            "trained on",
            f"{training.get('events', 0):,} events of {training.get('incidents') or 0:,} "
            f"incidents closed {first[:16]} to {last[:16]}".replace("T", " "),
        ),
        (
            "holdout",
            f"{holdout.get('events', 0):,} events of {holdout.get('incidents') or 0:,} incidents "
            f"closed {(holdout.get('first_closed_at') or '…')[:16]} to "
            f"{(holdout.get('last_closed_at') or '…')[:16]}".replace("T", " "),
        ),
        ("holdout MAE", seconds(holdout.get("MAE"))),
        ("MAE of the training median", seconds(holdout.get("MAE_constant"))),
        ("skill vs the training median", number(holdout.get("skill"))),
        ("MAE of the heuristic", seconds(holdout.get("MAE_heuristic"))),
        ("skill vs the heuristic", number(holdout.get("skill_vs_heuristic"))),
    ]
    # The open-state events (not Closed): the closing update is a free win, these are not.
    open_states = holdout.get("open_states") or {}
    if open_states:
        rows += [
            ("open-state events", f"{open_states.get('events', 0):,}"),
            ("open-state MAE", seconds(open_states.get("MAE"))),
            ("open-state skill vs the median", number(open_states.get("skill"))),
            ("open-state skill vs the heuristic", number(open_states.get("skill_vs_heuristic"))),
        ]
    rows += [
        ("data sha256", described.get("data_sha256") or "-"),
        (
            "versions",
            ", ".join(
                f"{name} {version}" for name, version in (described.get("versions") or {}).items()
            ),
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    stdout.print(table)


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


def render_backtest(result: dict[str, Any]) -> None:
    title = f"Backtest {result['run_id']}: {result['model']} every {result['every']}"
    table = Table(title=title, title_justify="left")
    # The leakage guard: shown when the model trained on tickets of some period.
    overlapping = any(row.get("overlaps_training") for row in result["periods"])
    columns = ["period", "events", "incidents", "MAE", "95% CI", "constant MAE", "skill", ""]
    if overlapping:
        columns.append("in training")
    for column in columns:
        justify = "right" if column in columns[1:7] else "left"
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
            seconds(row["MAE"]),
            interval,
            seconds(row["baseline_MAE"]),
            number(row["skill"]),
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


def backtest_bands_text(result: dict[str, Any]) -> str:
    """What the bands are, from how many periods, and what the run found."""
    bands = result["thresholds"]
    model, data = bands["model"], bands["data"]
    reference = result["reference_periods"]
    if model is None or data is None:
        return (
            f"No bands: fewer than two of the first {reference} periods have enough events "
            f"(--reference, --min-events {result['min_events']})."
        )
    clipped = [row["label"] for row in result["periods"][:reference] if row.get("clipped")]
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
    table = Table(title=f"Trials in {view.history}", title_justify="left")
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
            seconds(row.MAE),
            interval,
            number(row.skill),
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


def render_sizes(sizes: dict[str, str]) -> None:
    table = Table(title="Saturn Cloud sizes", title_justify="left")
    table.add_column("size", style="bold", overflow="fold")
    table.add_column("description", overflow="fold")
    for name, description in sizes.items():
        table.add_row(name, description)
    stdout.print(table)


def render_registration(details: dict[str, Any], *, dry_run: bool) -> None:
    title = "Would register (dry run)" if dry_run else "Registered"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True, overflow="fold")
    table.add_column(overflow="fold")
    for name, value in details.items():
        if name != "dry_run":
            table.add_row(name.replace("_", " "), plain_text(value))
    stdout.print(table)


def plain_text(value: object) -> str:
    """A registration detail as a reader wants it: lists and mappings without JSON brackets."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, dict):
        # Keyword arguments, shown as the call receives them.
        return ", ".join(f"{key}={item!r}" for key, item in value.items()) or "-"
    return str(value)
