"""Where a command's trial goes: the history (or the spool, when the history cannot be
reached), its per-event results, its report; and what the history says of earlier trials."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ticketeval.pipeline.cluster import ClusterOptions
    from ticketeval.scoring.trial import ResultsKeeping
    from ticketeval.settings import Settings


def write_report_of(settings: Settings, summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """The page of a trial just recorded, with the trials around it in the history."""
    from ticketeval.report.build import history_points, write_trial_report

    points, band = history_points(settings.history, summary)
    return write_trial_report(summary, over_time=points, thresholds=band, out=out).to_dict()


def results_keeping(settings: Settings) -> ResultsKeeping:
    """Where this machine's trials keep their per-event results, and how many do."""
    from ticketeval.scoring.trial import ResultsKeeping

    return ResultsKeeping(settings.results_dir, settings.results_keep)


def adopt_legacy_history(settings: Settings) -> str | None:
    """Move a history left in the cache directory by earlier releases to the data directory
    (the default history only); the sentence saying so, or None. Every command that reads or
    writes the history calls it first, so none reports "no trials" while they sit there."""
    from ticketeval.history.store import move_legacy_history

    if settings.history_url is not None or settings.history_path is not None:
        return None
    return move_legacy_history(settings.data_dir, settings.history_dir)


def record(settings: Settings, summary: dict[str, Any]) -> dict[str, Any]:
    """Record a trial in the history, or keep it in the spool when the history cannot be
    reached; the summary comes back with where it went (`recorded`)."""
    from ticketeval.errors import HistoryError, TicketevalError, TrialNotKept
    from ticketeval.history.spools import label_spool
    from ticketeval.history.store import record_trial, redact_url

    notes = []
    with contextlib.suppress(HistoryError):  # then the trial goes to the spool
        moved = adopt_legacy_history(settings)
        if moved:
            notes.append(moved)
    try:
        outcome = record_trial(summary, settings.history, history_spool(settings))
    except TrialNotKept as error:
        # The computed trial comes back all the same, to be printed: never lost unseen.
        return {
            **summary,
            "recorded": {
                "history": redact_url(settings.history),
                "spooled": False,
                "kept": False,
                "message": str(error),
                "notes": notes,
            },
        }
    if outcome.spooled:
        with contextlib.suppress(OSError, TicketevalError):  # the label only helps `history`
            label_spool(history_spool(settings), settings.history)
    if outcome.recorded and (outcome.sent_from_spool or outcome.rejected):
        notes.append(outcome.message)  # says how many unreadable files were set aside
    return {
        **summary,
        "recorded": {
            "history": outcome.history,
            "spooled": outcome.spooled,
            "message": None if outcome.recorded else outcome.message,
            "notes": notes,
        },
    }


def discard_run_results(settings: Settings, run_id: str) -> None:
    """After a backtest failed or was stopped: delete the per-event results its periods wrote
    for trials the history does not hold (they would only evict recorded trials' results)."""
    import contextlib

    from ticketeval.errors import TicketevalError
    from ticketeval.history.store import read_trials
    from ticketeval.scoring.results import discard_run

    recorded: set[str] = set()
    with contextlib.suppress(TicketevalError):
        recorded = {row.id for row in read_trials(settings.history, run_id=run_id)}
    discard_run(settings.results_dir, run_id, keep=recorded)


def history_spool(settings: Settings) -> Path:
    """The spool of the settings' history: its trials are sent there and nowhere else."""
    from ticketeval.history.spools import spool_for

    return spool_for(settings.spool_dir, settings.history)


def complete(settings: Settings, written: dict[str, Any]) -> dict[str, Any]:
    """A trial a flow's worker wrote, or here, what it could not write (nothing is lost)."""
    summary = written["summary"]
    if not written["recorded"]:
        return record(settings, summary)
    return {
        **summary,
        "recorded": {"history": written["history"], "spooled": False, "message": None, "notes": []},
    }


def history_for_workers(settings: Settings, cluster: ClusterOptions) -> str | None:
    """The history the flow's workers write to: this machine's, except that a scheduler given
    by address gets it only when it is a server (a SQLite path there would be its own disk)."""
    from ticketeval.history.urls import is_server_url

    if cluster.address and not is_server_url(settings.history):
        return None
    return settings.history


def last_period_end(settings: Settings, *, model: str, data_sha256: str) -> str | None:
    """Where the latest trial of `model` on this data that had a period ended (ISO)."""
    from ticketeval.history.store import read_trials

    ends = [
        row.closed_to
        for row in read_trials(settings.history, model=model)
        if row.data_sha256 == data_sha256 and row.closed_to
    ]
    return max(ends, default=None)
