"""What every command does around its core call: errors to one line and an exit code,
SIGTERM handled like Ctrl-C, settings loaded, library logs quietened, the trial reported.

The CLI's side of the boundary, with `app.py` (the commands) and `render.py` (what is printed).
"""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ticketeval import core
from ticketeval.cli.render import Reporter, describe_cache, render_summary, stderr
from ticketeval.errors import ExitCode, Terminated, TicketevalError

if TYPE_CHECKING:
    from ticketeval.data.cache import FetchResult
    from ticketeval.scoring.summary import TrialSummary
    from ticketeval.settings import Settings


@contextlib.contextmanager
def reported_errors(reporter: Reporter) -> Iterator[None]:
    """The one place expected failures become a line on stderr and an exit code."""
    try:
        reporter.open_log()
        yield
        if _terminated.is_set():
            # The signal's exception was raised where Python ignores exceptions (a garbage
            # collector callback, a __del__): the work finished, but the job was asked to stop.
            raise Terminated()
    except TicketevalError as error:
        reporter.error(str(error))
        raise typer.Exit(code=int(error.exit_code)) from None
    except KeyboardInterrupt as interrupt:
        # Ctrl-C right after a message was written, before Rich emptied its buffer, would
        # print that message again with this one: drop what is left in the buffer.
        stderr.begin_capture()
        stderr.end_capture()
        if isinstance(interrupt, Terminated):
            reporter.error("terminated.")
            raise typer.Exit(code=int(ExitCode.TERMINATED)) from None
        reporter.error("interrupted.")
        raise typer.Exit(code=int(ExitCode.INTERRUPTED)) from None


_terminated = threading.Event()
# A signal's exception was lost where Python cannot raise it (see _unraisable): what it cut short
# may fail when it runs next.
_signal_lost = threading.Event()


def _terminate(signum: int, frame: object) -> None:
    # A second SIGTERM while the first one is being cleaned up ends the process at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _terminated.set()
    raise Terminated()


def handle_sigterm(ctx: typer.Context) -> None:
    """SIGTERM (cron, systemd, Kubernetes stopping the job) is handled like Ctrl-C: the cluster
    ticketeval started is closed, one line is printed, and the exit code is 143."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))
    sys.unraisablehook = _unraisable


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """A signal's exception raised where Python cannot raise it (a garbage collector callback,
    a __del__) is not a traceback for the user, and is not lost either: the signal is sent
    again, to be raised where it can be. Else the run went on until its work was done (a
    backtest of many periods, minutes after cron or systemd asked it to stop). Once a signal
    came, what it cut short failing in such a place is not shown either."""
    interrupt = unraisable.exc_value
    if not isinstance(interrupt, KeyboardInterrupt):
        if _terminated.is_set() or _signal_lost.is_set():
            # A library's callback the signal cut short, failing the next time it runs (Dask's
            # garbage collector timer asserted the start it never recorded): part of stopping,
            # which the command's one line says.
            return
        sys.__unraisablehook__(unraisable)
        return
    _signal_lost.set()
    if threading.current_thread() is not threading.main_thread():
        return  # a signal's exception is raised in the main thread only
    if isinstance(interrupt, Terminated):
        # `_terminate` left SIGTERM to its default action (a second one ends the process at
        # once): this one, sent by ticketeval itself, is handled like the first.
        signal.signal(signal.SIGTERM, _terminate)
        signum = signal.SIGTERM
    elif callable(signal.getsignal(signal.SIGINT)):
        signum = signal.SIGINT
    else:
        return
    # Sent from another thread once this hook has returned: sent from here, it would be raised
    # in the hook, where it is lost again (and if it still is, this repeats). The low-level
    # start: Thread.start() waits for the thread, and the signal would end that wait.
    _thread.start_new_thread(signal.pthread_kill, (threading.get_ident(), signum))


def settings_for(data_dir: Path | None) -> Settings:
    from ticketeval.settings import load_settings

    return load_settings(**({"data_dir": data_dir} if data_dir else {}))


def flow_settings(data_dir: Path | None, *, verbose: bool) -> Settings:
    """The settings of a command that runs or registers a Prefect flow, with Prefect's own log
    level set first: Prefect 1 reads it when imported, here and in each Dask worker."""
    if verbose:
        os.environ["PREFECT__LOGGING__LEVEL"] = "INFO"
    else:
        os.environ.setdefault("PREFECT__LOGGING__LEVEL", "CRITICAL")
    return settings_for(data_dir)


def show_library_logs(verbose: bool) -> None:
    if verbose:
        import logging

        from ticketeval.pipeline.cluster import CurrentStderr

        logging.basicConfig(
            stream=CurrentStderr(),
            level=logging.DEBUG,
            format="%(name)s: %(message)s",
            force=True,
        )
        logging.getLogger("urllib3").setLevel(logging.DEBUG)


def announce(reporter: Reporter, address: str, dashboard: str | None) -> None:
    reporter.info(f"Dask scheduler {address}" + (f", dashboard {dashboard}" if dashboard else ""))


def report_fetch(result: FetchResult, reporter: Reporter) -> None:
    """What a command that fetched on the way says about it."""
    for note in result.notes:
        reporter.info(note)
    if not result.reused:
        reporter.info(f"Fetched {describe_cache(result.cache)}")


def report_trial(
    summary: TrialSummary | core.NothingNew,
    reporter: Reporter,
    *,
    json_output: bool,
    limit: float | None,
) -> None:
    if isinstance(summary, core.NothingNew):
        reporter.info(summary.message)
        if json_output:
            print(json.dumps(summary.to_dict()))
        return
    reporter.log(json.dumps(summary))
    if json_output:
        print(json.dumps(summary))
    elif not reporter.quiet:
        render_summary(summary)
    recorded = summary.get("recorded")
    for note in recorded["notes"] if recorded else []:
        reporter.info(note)
    negative = summary["data"].get("num_negative")
    if negative:
        reporter.info(
            f"note: {negative:,} event(s) close before their update (closed_at before "
            "sys_updated_at, a negative time to close): num_negative; "
            "TICKETEVAL_NEGATIVE_TARGETS=drop leaves them unscored, keep (the default) scores "
            "them as they are."
        )
    if summary.get("results_note"):
        reporter.info(summary["results_note"])
    if "report" in summary:
        reporter.info(f"Report: {summary['report']['page']}")
    if recorded and recorded.get("kept") is False:
        reporter.error(recorded["message"] or f"trial {summary['id']} was not kept.")
        raise typer.Exit(code=int(ExitCode.NOT_KEPT))
    failed = summary.get("report_failed")
    if failed:
        reporter.error(f"trial {summary['id']}: {failed['message']}")
        raise typer.Exit(code=failed["exit_code"])
    if recorded and recorded["spooled"]:
        reporter.error(recorded["message"] or "the trial is spooled.")
    mae = summary["data"]["metrics"]["MAE"]
    if limit is not None and mae is None:
        reporter.error(
            "no row of the batch could be scored (each lacks closed_at or sys_updated_at), so "
            f"there is no MAE to hold to the limit of {limit:,.0f} s."
        )
        raise typer.Exit(code=int(ExitCode.MAE_ABOVE_LIMIT))
    if limit is not None and mae is not None and mae > limit:
        reporter.error(f"MAE {mae:,.0f} s is above the limit of {limit:,.0f} s.")
        raise typer.Exit(code=int(ExitCode.MAE_ABOVE_LIMIT))
    if recorded and recorded["spooled"]:
        raise typer.Exit(code=int(ExitCode.SPOOLED))
