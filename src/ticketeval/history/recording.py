"""Where a command's trial goes: the history (or the spool, when the history cannot be
reached), its per-event results, its report; and what the history says of earlier trials."""

from __future__ import annotations

from dataclasses import dataclass
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
    by address gets it only when it is a server (a SQLite path there would be its own disk)."""
    from ticketeval.history.urls import is_server_url

    if cluster.address and not is_server_url(settings.history):
        return None
    return settings.history


@dataclass(frozen=True)
class ChainEnd:
    """Where the `--since-last` chain of a model on a stream ends, and how it was found."""

    end: str | None  # ISO; None: no earlier trial, start at the beginning
    note: str | None = None  # said when trials recorded before streams were matched
    # How many incidents closed before `end` the export held when the chain reached it (None:
    # not recorded): more now means tickets arrived late.
    incidents_before_end: int | None = None


def chain_end(
    settings: Settings, *, model: str, stream: str, data_sha256: str, source: str
) -> ChainEnd:
    """The latest end of the trials of `model` on `stream` that scored a period: the next
    `--since-last` starts there. Any kind counts (a `--since-last`, a `--closed-from` or
    `--closed-to` period, a backtest's periods): each recorded end is the newest closure it
    saw plus one minute, so nothing after it was scored. Trials recorded before streams
    existed (no stream) are matched by the data's checksum or source, with a note, so that an
    upgraded or moved history never silently starts from scratch."""
    from ticketeval.history.store import read_trials

    rows = [row for row in read_trials(settings.history, model=model) if row.closed_to]
    chain = [row for row in rows if row.stream == stream]
    if chain:
        last = max(str(row.closed_to) for row in chain)
        # The most the export held before that end, over the trials that reached it.
        counts = [
            row.incidents_before_end
            for row in chain
            if row.closed_to == last and row.incidents_before_end is not None
        ]
        return ChainEnd(last, incidents_before_end=max(counts, default=None))
    legacy = [
        str(row.closed_to)
        for row in rows
        if row.stream is None and (row.data_sha256 == data_sha256 or row.source == source)
    ]
    if not legacy:
        return ChainEnd(None)
    return ChainEnd(
        max(legacy),
        f"note: no trial of {model} names the stream {stream!r}; continuing after "
        f"{len(legacy)} trial(s) recorded before streams, matched by the data's checksum or "
        "source.",
    )
