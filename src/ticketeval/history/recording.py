"""Where a command's trial goes: the history (or the spool, when the history cannot be
reached), its per-event results, its report; and what the history says of earlier trials."""

from __future__ import annotations

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


def record(settings: Settings, summary: dict[str, Any]) -> dict[str, Any]:
    """Record a trial in the history, or keep it in the spool when the history cannot be
    reached; the summary comes back with where it went (`recorded`)."""
    from ticketeval.history.store import move_legacy_history, record_trial

    notes = []
    if settings.history_url is None and settings.history_path is None:
        moved = move_legacy_history(settings.data_dir, settings.history_dir)
        if moved:
            notes.append(moved)
    outcome = record_trial(summary, settings.history, settings.spool_dir)
    if outcome.recorded and outcome.sent_from_spool:
        notes.append(outcome.message)
    return {
        **summary,
        "recorded": {
            "history": outcome.history,
            "spooled": outcome.spooled,
            "message": None if outcome.recorded else outcome.message,
            "notes": notes,
        },
    }


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
    by address, or a Saturn job's cluster, gets it only when it is a server (a SQLite path
    there would be its own disk)."""
    from ticketeval.history.urls import is_server_url

    if cluster.remote and not is_server_url(settings.history):
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
