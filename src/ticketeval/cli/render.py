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
from rich.text import Text

from ticketeval.errors import UsageError
from ticketeval.formatting import format_ratio, format_seconds

if TYPE_CHECKING:
    from rich.table import Table

    from ticketeval.data.cache import CacheInfo
    from ticketeval.data.periods import PeriodBounds
    from ticketeval.history.spool import Waiting
    from ticketeval.scoring.summary import Baseline, ModelInfo, TrialSummary


def new_table(title: str, **options: Any) -> Table:
    """A Rich table with its title on the left; rich.table is imported here, when a table is
    drawn, not on the path of `--help`."""
    from rich.table import Table

    return Table(title=title, title_justify="left", **options)


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
        # Never a device, FIFO (opening one would block), socket or directory, nor one of
        # ticketeval's own files; a symlink is followed to a regular file.
        try:
            self.log_file = _checked_log_file(self.log_file)
        except UsageError:
            self.log_file = None  # the refusal is not logged into what was refused
            raise
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


def _checked_log_file(path: Path) -> Path:
    from ticketeval.errors import SettingsError
    from ticketeval.files import check_output
    from ticketeval.planning import own_files
    from ticketeval.settings import load_settings

    try:
        own = own_files(load_settings())
    except SettingsError:
        own = []  # the command itself reports the bad setting
    return check_output(path, chosen_by="--log-file", own=own)


def spool_line(spool: Waiting) -> str:
    """What `history` says of one spool's waiting trials, and for which history."""
    if spool.history is None:
        return (
            f"{spool.trials} trial(s) wait in {spool.spool}, spooled by an earlier release for "
            "no named history: they are not sent; move them into the spool directory of the "
            "history they belong to."
        )
    return (
        f"{spool.trials} trial(s) wait in the spool for {spool.history}: they are sent with "
        "the next trial that reaches that history."
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


def with_interval(value: float | None, interval: list[float] | None) -> str:
    """A duration and its 95% interval: `152,942 s (1.8 d), 95% CI 131,000–178,000 s`."""
    if value is None or not interval:
        return format_seconds(value)
    return f"{format_seconds(value)}, 95% CI {interval[0]:,.0f}–{interval[1]:,.0f} s"


def period_text(period: PeriodBounds | None) -> str:
    start, end = (period["closed_from"], period["closed_to"]) if period else (None, None)
    if not start and not end:
        return "all closures"
    return f"closed {(start or '…')[:16]} to {(end or '…')[:16]}".replace("T", " ")


def training_text(info: ModelInfo | None) -> str:
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


def skill_text(baseline: Baseline) -> str:
    """The skill, with its incident-level interval when the trial has one."""
    interval = baseline.get("skill_ci")
    if baseline.get("skill") is None or not interval:
        return format_ratio(baseline.get("skill"))
    low, high = format_ratio(interval[0]), format_ratio(interval[1])
    return f"{format_ratio(baseline['skill'])}, 95% CI {low} to {high}"


def render_summary(summary: TrialSummary) -> None:
    if summary.get("models"):
        render_models(summary)
        if summary["data"].get("open") is not None:  # the champion's, with --as-of
            render_open(summary["data"]["open"], summary["data"]["metrics"].get("concordance"))
        return
    data = summary["data"]
    metrics, target, baseline = data["metrics"], data["target"], data["baseline"]
    intervals = data.get("metrics_ci") or {}
    table = new_table(f"Trial {summary['id']}", show_header=False)
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
        ("MSE", format_ratio(metrics["MSE"], 0)),
        ("R2", format_ratio(metrics["R2"])),
        ("MAE of the median", format_seconds(baseline["MAE"])),
        ("skill vs the median", skill_text(baseline)),
        ("target mean", format_seconds(target["mean"])),
        ("target median", format_seconds(target["median"])),
        ("target min", format_seconds(target["min"])),
        ("target max", format_seconds(target["max"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    stdout.print(table)
    for group, breakdown in (("priority", data["by_priority"]), ("state", data.get("by_state"))):
        if not breakdown:
            continue
        per_group = new_table(f"By {group}")
        for column in (group, "num_obs", "MAE", "MedAE", "R2", "constant MAE"):
            per_group.add_column(
                column, justify="left" if column == group else "right", overflow="fold"
            )
        for label, values in breakdown.items():
            per_group.add_row(
                label,
                f"{values['num_obs']:,}",
                format_seconds(values["MAE"]),
                format_seconds(values["MedAE"]),
                format_ratio(values["R2"]),
                format_seconds(values.get("baseline_MAE")),
            )
        stdout.print(per_group)
    if data.get("open") is not None:
        render_open(data["open"], metrics.get("concordance"))


def _estimate_text(value: float | None, interval: list[float] | None) -> str:
    """The estimate and its interval, named for what it covers: sampling error, not the
    estimator's assumptions (README: its coverage on replayed snapshots)."""
    if value is None or not interval:
        return format_seconds(value)
    return f"{format_seconds(value)}, 95% sampling interval {interval[0]:,.0f}–{interval[1]:,.0f} s"


def render_open(open_part: dict[str, Any], concordance: float | None) -> None:
    """The tickets still open at --as-of: what is known of their errors, and hindsight."""
    table = new_table(f"Open at {open_part['as_of'][:16].replace('T', ' ')}", show_header=False)
    table.add_column(style="bold", overflow="fold")
    table.add_column(justify="right", overflow="fold")
    share = open_part["overdue_share"]
    estimate = open_part.get("estimated_MAE")
    rows = [
        ("open incidents", f"{open_part['incidents']:,}"),
        ("MAE at least (censored)", format_seconds(open_part["lower_bound_MAE"])),
        ("already overdue", "n/a" if share is None else f"{share:.0%}"),
        ("estimated MAE", _estimate_text(estimate, open_part.get("estimated_MAE_ci"))),
        ("realized MAE (hindsight)", format_seconds(open_part.get("realized_MAE"))),
        ("concordance (closed + open)", format_ratio(concordance)),
    ]
    if estimate is None:
        rows.pop(3)
    if open_part.get("estimate_note"):
        rows.append(("note", open_part["estimate_note"]))
    for name, value in rows:
        table.add_row(name, value)
    stdout.print(table)
    if not open_part["by_priority"]:
        return
    per_priority = new_table("Open by priority")
    for column in ("priority", "incidents", "overdue", "MAE at least"):
        per_priority.add_column(
            column, justify="left" if column == "priority" else "right", overflow="fold"
        )
    for label, values in open_part["by_priority"].items():
        overdue = values["overdue_share"]
        per_priority.add_row(
            label,
            f"{values['incidents']:,}",
            "n/a" if overdue is None else f"{overdue:.0%}",
            format_seconds(values["lower_bound_MAE"]),
        )
    stdout.print(per_priority)


def render_models(summary: TrialSummary) -> None:
    """Several models scored on one batch: side by side, then each challenger against the
    champion (the first)."""
    blocks = summary["models"]
    names = list(blocks)
    data = summary["data"]
    table = new_table(f"Trial {summary['id']}")
    # Cells fold onto more lines on a narrow terminal: a number is never cut.
    table.add_column("", style="bold", overflow="fold")
    for index, name in enumerate(names):
        table.add_column(
            f"{name}{' (champion)' if index == 0 else ''}", justify="right", overflow="fold"
        )
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
    table.add_row("R2", *each(lambda block: format_ratio(block["metrics"]["R2"])))
    table.add_row(
        "MAE of the median", format_seconds(data["baseline"]["MAE"]), *([""] * (len(names) - 1))
    )
    table.add_row("skill vs the median", *each(lambda block: skill_text(block["baseline"])))
    stdout.print(table)

    versus = new_table("Challenger vs champion (paired bootstrap, 95%)")
    for column in ("challenger", "champion", "MAE difference", "95% CI", "verdict"):
        versus.add_column(
            column,
            justify="right" if column in ("MAE difference", "95% CI") else "left",
            overflow="fold",
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

    for group, breakdown in (("priority", data["by_priority"]), ("state", data.get("by_state"))):
        if not breakdown:
            continue
        of_model = {
            name: (
                blocks[name]["by_priority"] if group == "priority" else blocks[name].get("by_state")
            )
            for name in names
        }
        per_group = new_table(f"MAE by {group}")
        per_group.add_column(group, overflow="fold")
        per_group.add_column("num_obs", justify="right", overflow="fold")
        for name in names:
            per_group.add_column(name, justify="right", overflow="fold")
        for label, values in breakdown.items():
            per_group.add_row(
                label,
                f"{values['num_obs']:,}",
                *[
                    format_seconds(((of_model[name] or {}).get(label) or {}).get("MAE"))
                    for name in names
                ],
            )
        stdout.print(per_group)


def render_model(described: dict[str, Any], *, saved: bool) -> None:
    """A model file's description: how it was trained, and how it scored on its holdout."""
    training, holdout = described.get("training") or {}, described.get("holdout") or {}
    title = f"Saved {described['path']}" if saved else f"Model {described['path']}"
    table = new_table(title, show_header=False)
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
        ("holdout MAE", format_seconds(holdout.get("MAE"))),
        ("MAE of the training median", format_seconds(holdout.get("MAE_constant"))),
        ("skill vs the training median", format_ratio(holdout.get("skill"))),
        ("MAE of the heuristic", format_seconds(holdout.get("MAE_heuristic"))),
        ("skill vs the heuristic", format_ratio(holdout.get("skill_vs_heuristic"))),
    ]
    # The open-state events (not Closed): the closing update is a free win, these are not.
    open_states = holdout.get("open_states") or {}
    if open_states:
        rows += [
            ("open-state events", f"{open_states.get('events', 0):,}"),
            ("open-state MAE", format_seconds(open_states.get("MAE"))),
            ("open-state skill vs the median", format_ratio(open_states.get("skill"))),
            (
                "open-state skill vs the heuristic",
                format_ratio(open_states.get("skill_vs_heuristic")),
            ),
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
