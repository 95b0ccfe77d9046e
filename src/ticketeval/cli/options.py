"""The options several commands share, declared once (Typer's `Annotated` form).

Defaults that come from a setting say so in their help; the commands resolve them through
`ticketeval.core`, never here.
"""

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from ticketeval.defaults import DEFAULT_SCHEDULER_TIMEOUT, WORKER_TIMEOUT
from ticketeval.errors import ExitCode

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
        help="Cache directory (the history has its own: TICKETEVAL_HISTORY_DIR). "
        "[default: TICKETEVAL_DATA_DIR or ~/.cache/ticketeval]",
        show_default=False,
    ),
]
BatchSizeOption = Annotated[
    str | None,
    typer.Option(
        "--batch-size",
        help="Events to sample, or 'all'. [default: TICKETEVAL_BATCH_SIZE or 1000]",
        show_default=False,
    ),
]
SeedOption = Annotated[
    int | None,
    typer.Option(
        "--seed",
        help="Random seed for the sample. [default: TICKETEVAL_SEED, else fresh each trial]",
        show_default=False,
    ),
]
ModelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="'heuristic', a model file (.skops, from `ticketeval train`), or "
        "package.module:function returning seconds per row. Repeat to compare models on the "
        "same batch, the first as the champion. [default: heuristic]",
        show_default=False,
    ),
]
BacktestModelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="'heuristic', a model file (.skops), or package.module:function (one model: "
        "given twice, refused). [default: heuristic]",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")]
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="Print nothing on success, only errors and alerts (for cron: the history and "
        "--log-file keep the result).",
    ),
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show library logs (retries, Prefect) on stderr.")
]
LogFileOption = Annotated[
    Path | None,
    typer.Option(
        "--log-file",
        help="Also append messages and the trial summary to this file (for cron); checked "
        "before anything runs.",
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


ClosedFromOption = Annotated[
    str | None,
    typer.Option(
        "--closed-from",
        help="Only tickets closed from this date (YYYY-MM-DD[THH:MM]), included.",
        show_default=False,
    ),
]
ClosedToOption = Annotated[
    str | None,
    typer.Option(
        "--closed-to",
        help="Only tickets closed before this date (YYYY-MM-DD[THH:MM]), excluded.",
        show_default=False,
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Replay the log as known at this date (YYYY-MM-DD[THH:MM]): score the tickets "
        "closed by then, and report those still open (censored lower bound, overdue share; "
        "hindsight when the log knows how they ended).",
        show_default=False,
    ),
]
EstimateOption = Annotated[
    bool,
    typer.Option(
        "--estimate/--no-estimate",
        help="With --as-of, estimate the open tickets' MAE (a second model trained on earlier "
        "snapshots, a few seconds).",
    ),
]
SinceLastOption = Annotated[
    bool,
    typer.Option(
        "--since-last",
        help="Every ticket closed since the previous trial of this model on this stream "
        "(for cron); nothing new: exit 0, nothing recorded.",
    ),
]
StreamOption = Annotated[
    str | None,
    typer.Option(
        "--stream",
        help="The name of the log --since-last follows (TICKETEVAL_STREAM). [default: where "
        "the data came from, its path or URL]",
        show_default=False,
    ),
]
OpenOnlyOption = Annotated[
    bool,
    typer.Option(
        "--open-only",
        help="Score only the events whose incident was still open (state not Closed): the "
        "closing update's own target is about 0, a free win for any model.",
    ),
]
ReportOption = Annotated[
    Path | None,
    typer.Option(
        "--report",
        help="Also write the trial's report page (self-contained HTML) to this file.",
        show_default=False,
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(help="Dask worker processes to start. [default: 1]", show_default=False),
]
ThreadsPerWorkerOption = Annotated[
    int | None,
    typer.Option(
        min=1, help="Threads per worker. [default: one per core, at most 4]", show_default=False
    ),
]
MemoryLimitOption = Annotated[
    str | None,
    typer.Option(
        help="Memory limit per worker, at least 256MiB, e.g. 2GiB; a worker that pauses for "
        "memory ends the run. [default: auto]",
        show_default=False,
    ),
]
DashboardOption = Annotated[
    bool | None,
    typer.Option(
        "--dashboard/--no-dashboard",
        help="Serve Dask's dashboard from the LocalCluster started here (about 1 s of CPU "
        "and a port: a cron run has no one to look at it). [default: TICKETEVAL_DASHBOARD, on]",
        show_default=False,
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        help="Run on an existing Dask scheduler, e.g. tcp://host:8786. It must answer within "
        f"{DEFAULT_SCHEDULER_TIMEOUT:g} s and have a worker within {WORKER_TIMEOUT:g} s, else "
        "exit 4.",
        show_default=False,
    ),
]

# --- register's: the Saturn Cloud cluster and the Prefect Cloud registration -------------------

SaturnOption = Annotated[
    bool,
    typer.Option(
        "--saturn",
        help="Inside a Saturn Cloud job: run on the Dask cluster Saturn attached to the job "
        "(what `ticketeval job deploy` sets up).",
    ),
]
SaturnWorkersOption = Annotated[
    int, typer.Option(min=1, help="Dask workers of the Saturn cluster.")
]

WorkerSizeOption = Annotated[
    str | None,
    typer.Option(help="Saturn size of each worker (see describe-sizes).", show_default=False),
]

SchedulerSizeOption = Annotated[
    str | None,
    typer.Option(help="Saturn size of the Dask scheduler.", show_default=False),
]

SpotOption = Annotated[
    bool | None,
    typer.Option(
        "--spot/--no-spot",
        help="Workers on spot instances. [default: Saturn's]",
        show_default=False,
    ),
]

ShutdownOnCloseOption = Annotated[
    bool,
    typer.Option(
        "--shutdown-on-close/--keep-cluster",
        help="Shut the Dask cluster down when a flow run ends.",
    ),
]

AdaptMinOption = Annotated[
    int | None,
    typer.Option(min=0, help="Adaptive scaling: fewest workers.", show_default=False),
]

AdaptMaxOption = Annotated[
    int | None, typer.Option(min=1, help="Adaptive scaling: most workers.", show_default=False)
]

InstanceSizeOption = Annotated[
    str | None,
    typer.Option(help="Saturn size of the machine running the flow itself.", show_default=False),
]

ScheduleHoursOption = Annotated[
    float | None,
    typer.Option(help="Run every N hours. [default: no schedule]", show_default=False),
]

ProjectOption = Annotated[
    str | None,
    typer.Option(
        help="Prefect Cloud project. [default: PREFECT_CLOUD_PROJECT_NAME]",
        show_default=False,
    ),
]

DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print what would be registered; no network.")
]


def _fail(message: str, code: int) -> NoReturn:
    from rich.text import Text

    from ticketeval.cli.render import stderr

    stderr.print(Text.assemble(("Error: ", "bold red"), " ".join(message.split())))
    sys.exit(code)


class Group(TyperGroup):
    """The app's class and its sub-apps' (Typer's `cls=`): Click's usage errors (a bad option
    value, an unknown option, a missing argument) as `Error: ...` on one line, exit code 2, like
    every other error, instead of Click's usage and hint lines."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        # Typer's main in non-standalone mode (Click's public switch); the usage error printed
        # here in one line.
        if not standalone_mode:
            return super().main(
                args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
            )
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as error:  # Click's own errors derive from it in Typer
            if type(error).__name__ == "NoArgsIsHelpError":
                error.show()  # type: ignore[attr-defined]  # `ticketeval` alone: the help
                sys.exit(error.exit_code)
            context = getattr(error, "ctx", None)  # a usage error knows its command
            hint = f" (see `{context.command_path} --help`)" if context is not None else ""
            _fail(f"{error.format_message().rstrip('.')}{hint}.", error.exit_code)
        except typer.Abort:
            _fail("aborted.", 1)
        sys.exit(code if isinstance(code, int) else 0)
