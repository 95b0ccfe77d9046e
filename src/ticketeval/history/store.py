"""The trial history, as the rest of ticketeval uses it: open it, record a trial so that it is
never lost (a command's trial, or what a flow's workers wrote), read trials back (the same on
every backend), the view `ticketeval history` and the report share (order and flags), copy it.

Beneath it, one concern each (imports go one way, urls → rows → sql → spool → legacy → here):

- `urls`: the URL forms, passwords kept out of messages;
- `rows`: a trial summary as rows and a row read back (pure data);
- `sql`: SQLite and PostgreSQL, the schema and its migration;
- `spool`: the files where trials wait while the history cannot be reached;
- `legacy`: the history earlier releases kept in the cache directory, moved once.

sqlite3, psycopg and platformdirs are imported inside the functions that use them, so that
`import ticketeval.history.store` stays cheap.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticketeval.errors import HistoryError, TicketevalError, TrialNotKept, UsageError
from ticketeval.history.legacy import adopt_legacy_history
from ticketeval.history.rows import HistoryRow, rows_from_summary
from ticketeval.history.spool import (
    SpoolProgress,
    Waiting,
    history_spool,
    label_spool,
    pending_spool,
    send_spooled,
    spool_for,
    spool_trial,
    waiting_spools,
)
from ticketeval.history.sql import HistoryStore
from ticketeval.history.urls import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    is_server_url,
    parse_history_url,
    redact_url,
    without_password,
)

if TYPE_CHECKING:
    from ticketeval.scoring.summary import RecordedRun, TrialSummary, Written
    from ticketeval.settings import Settings


def flag_regressions(
    rows: Sequence[HistoryRow], *, threshold: float = 0.25, window: int | None = 10
) -> list[bool]:
    """For each row (in the given order, oldest first), whether its MAE is a regression.

    A row is compared only with EARLIER rows of the SAME model on the SAME stream (equal,
    non-null `stream`; for rows recorded before streams, the same `data_sha256`) and the SAME
    population (a random sample of the log, a period, a backtest's periods of one length; all
    events or open ones only) that have an MAE: its reference, the last `window` of those (all
    of them when `window` is None). A row without a reference, an MAE or a stream (or
    `data_sha256`) is never flagged. Otherwise:

    - when the row has an interval (`MAE_low`): flagged iff `MAE_low` is above the reference's
      upper bound, the median of the reference trials' `MAE_high` (their MAE when they have no
      interval). The row's interval then lies entirely above the reference's; one that overlaps
      it is not flagged, so noise the intervals already show is never called a regression, and
      one earlier trial with a wide interval cannot hide every later regression.
    - when it has none (trials recorded before intervals existed): flagged iff its MAE exceeds
      the median of the reference MAEs by more than `threshold` (0.25 = 25 %).

    Pass the whole history (then keep the last rows you show): a row's reference is only what
    precedes it in `rows`.
    """
    history: dict[tuple[str, str, str | None], list[HistoryRow]] = {}
    flags: list[bool] = []
    for row in rows:
        stream = row.stream or row.data_sha256
        if row.MAE is None or stream is None:
            flags.append(False)
            continue
        earlier = history.setdefault((row.model, stream, row.population), [])
        reference = earlier[-window:] if window else earlier
        flagged = False
        if reference:
            if row.MAE_low is not None:
                upper = statistics.median(
                    r.MAE_high if r.MAE_high is not None else r.MAE
                    for r in reference
                    if r.MAE is not None  # always: only rows with an MAE are a reference
                )
                flagged = row.MAE_low > upper
            else:
                median = statistics.median(r.MAE for r in reference if r.MAE is not None)
                flagged = row.MAE > median * (1 + threshold)
        flags.append(flagged)
        earlier.append(row)
    return flags


def in_view_order(rows: Sequence[HistoryRow]) -> list[HistoryRow]:
    """The rows oldest first, a backtest's periods together (they ran in parallel) in the order
    of the periods, where its run started."""
    run_start: dict[str, str] = {}
    for row in rows:
        if row.run_id:
            run_start.setdefault(row.run_id, row.timestamp)
    return sorted(
        rows,
        key=lambda row: (run_start.get(row.run_id or "", row.timestamp), row.closed_from or ""),
    )


def view_flags(rows: Sequence[HistoryRow], *, threshold: float = 0.25) -> list[bool]:
    """Which rows the history shows as regressions (`ticketeval history` and the report alike):
    a backtest's period as the backtest judged it, against its own band; a single trial
    compared with the earlier single trials only (like with like)."""
    singles = [row for row in rows if row.run_id is None]
    flags = flag_regressions(singles, threshold=threshold)
    single_flags = dict(zip(map(id, singles), flags, strict=True))
    return [bool(row.alert) if row.run_id else single_flags[id(row)] for row in rows]


@dataclass(frozen=True)
class HistoryView:
    """The recorded trials as `ticketeval history` shows them."""

    history: str  # the URL, password redacted
    rows: list[HistoryRow]
    flagged: list[bool]
    pending: int  # trials waiting in the spool of this history
    waiting: list[Waiting] = field(default_factory=list)  # every spool with trials
    notes: list[str] = field(default_factory=list)  # e.g. the legacy history moved

    def records(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (the same on every backend), each with its flag."""
        return [
            {**asdict(row), "flagged": flagged}
            for row, flagged in zip(self.rows, self.flagged, strict=True)
        ]


def history_view(
    url: str,
    spool_root: Path,
    *,
    last: int | None,
    threshold: float,
    model: str | None,
    notes: Sequence[str] = (),
) -> HistoryView:
    """The trials of the history at `url` in view order with their flags, the last `last`;
    what waits in its spool, and in every spool under `spool_root` (a spool per history)."""
    rows = in_view_order(read_trials(url, model=model))
    flags = view_flags(rows, threshold=threshold)
    if last:
        rows, flags = rows[-last:], flags[-last:]
    return HistoryView(
        redact_url(url),
        rows,
        flags,
        pending_spool(spool_for(spool_root, url)),
        waiting_spools(spool_root),
        list(notes),
    )


# --- Opening and reading ----------------------------------------------------------------------


def open_history(
    url: str,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    create: bool = True,
) -> HistoryStore:
    """Open the history at `url`: migrated when it is a legacy one that can be written,
    created when it does not exist yet and `create` (else it is created by the first append).

    Raises UsageError for a URL of another form, HistoryUnreachable when the server cannot be
    reached or refuses the login, HistoryError when the history cannot be used.
    """
    return HistoryStore(
        parse_history_url(url),
        busy_timeout=busy_timeout,
        connect_timeout=connect_timeout,
        create=create,
    )


def read_trials(
    url: str,
    *,
    model: str | None = None,
    last: int | None = None,
    run_id: str | None = None,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> list[HistoryRow]:
    """The recorded rows, ordered by timestamp, id, model; the same on every backend.

    `model` and `run_id` (a backtest's rows) filter; `last` keeps the last N rows. A history
    that does not exist yet reads as empty and is not created; a legacy one is migrated when
    it can be written, read as it is when it cannot.
    """
    target = parse_history_url(url)
    if target.backend == "sqlite" and target.path is not None and not target.path.exists():
        return []
    with HistoryStore(
        target, busy_timeout=busy_timeout, connect_timeout=connect_timeout, create=False
    ) as store:
        return store.read(model=model, last=last, run_id=run_id)


# --- Recording: nothing lost ------------------------------------------------------------------


@dataclass(frozen=True)
class RecordOutcome:
    """What `record_trial` did: recorded in the history, or kept in the spool (and why)."""

    trial_id: str
    history: str  # the redacted URL
    recorded: bool
    spooled: bool
    reason: str | None = None  # one line, why the history could not be reached
    spool_file: Path | None = None
    sent_from_spool: int = 0  # earlier spooled trials sent before this one
    pending: int = 0  # trials still waiting in the spool
    rejected: list[Path] = field(default_factory=list)

    @property
    def message(self) -> str:
        """One line for the user."""
        if self.recorded:
            line = f"Recorded trial {self.trial_id} in {self.history}."
            if self.sent_from_spool:
                line += f" Sent {self.sent_from_spool} spooled trial(s) first."
        else:
            line = (
                f"Trial {self.trial_id} was not recorded ({self.reason}); it is spooled in "
                f"{self.spool_file} ({self.pending} waiting) and will be sent with the next "
                "trial that reaches the history."
            )
        if self.rejected:
            line += f" {len(self.rejected)} unreadable spool file(s) set aside as *.rejected."
        return line


def record_trial(
    summary: Mapping[str, Any],
    url: str,
    spool_dir: Path,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> RecordOutcome:
    """Record a trial so that it is never lost.

    Trials waiting in `spool_dir` are sent first, then this one. When the history cannot be
    reached or used (server down, login refused, disk full, locked for longer than
    `busy_timeout`, read-only, newer schema...) the trial goes to the spool instead and the
    outcome says so with the reason. Raises SummaryError for a malformed summary, and
    HistoryError only when the spool cannot be written either.
    """
    rows_from_summary(summary)  # a malformed summary would never be accepted: fail now
    trial_id = str(summary["id"])
    progress = SpoolProgress()
    try:
        target = parse_history_url(url)
        with HistoryStore(
            target, busy_timeout=busy_timeout, connect_timeout=connect_timeout
        ) as store:
            send_spooled(spool_dir, store.append, progress)
            store.append(summary)
    except (HistoryError, UsageError) as error:
        try:
            spool_file = spool_trial(summary, spool_dir)
        except (OSError, TicketevalError) as spool_error:
            reason = getattr(spool_error, "strerror", None) or str(spool_error).rstrip(".")
            raise TrialNotKept(
                f"trial {trial_id} was not kept: {str(error).rstrip('.')}; and the spool "
                f"{spool_dir} cannot be written either ({reason}). It is printed above: keep "
                "that output."
            ) from None
        return RecordOutcome(
            trial_id=trial_id,
            history=redact_url(url),
            recorded=False,
            spooled=True,
            reason=str(error).rstrip("."),
            spool_file=spool_file,
            sent_from_spool=progress.sent,
            pending=pending_spool(spool_dir),
        )
    return RecordOutcome(
        trial_id=trial_id,
        history=target.redacted,
        recorded=True,
        spooled=False,
        sent_from_spool=progress.sent,
        pending=pending_spool(spool_dir),
        rejected=progress.rejected,
    )


def record_summary(settings: Settings, summary: TrialSummary) -> TrialSummary:
    """Record a trial in the settings' history, or keep it in that history's spool when it
    cannot be reached; the summary comes back with where it went (`recorded`). When neither
    can be written, it comes back all the same (`kept` False), to be printed: never lost unseen."""
    notes: list[str] = []
    with contextlib.suppress(HistoryError):  # then the trial goes to the spool
        moved = adopt_legacy_history(settings)
        if moved:
            notes.append(moved)
    spool = history_spool(settings)
    try:
        outcome = record_trial(summary, settings.history, spool)
    except TrialNotKept as error:
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
            label_spool(spool, settings.history)
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


def record_written(settings: Settings, written: Written) -> TrialSummary:
    """A trial a flow's worker wrote, or here, what it could not write (nothing is lost)."""
    summary = written["summary"]
    if not written["recorded"]:
        return record_summary(settings, summary)
    return {
        **summary,
        "recorded": {
            "history": written.get("history", ""),
            "spooled": False,
            "message": None,
            "notes": [],
        },
    }


def record_all_written(settings: Settings, written: Sequence[Written]) -> RecordedRun:
    """Where the periods a backtest's workers wrote went (each recorded here when they could
    not), together: the history, how many were spooled, the notes."""
    recorded = [record_written(settings, one)["recorded"] for one in written]
    return {
        "history": recorded[0]["history"] if recorded else None,
        "spooled": sum(outcome["spooled"] for outcome in recorded),
        "message": next((outcome["message"] for outcome in recorded if outcome["spooled"]), None),
        "notes": [note for outcome in recorded for note in outcome["notes"]],
    }


def discard_run_results(settings: Settings, run_id: str) -> None:
    """After a backtest failed or was stopped: delete the per-event results its periods wrote
    for trials the history does not hold (they would only evict recorded trials' results)."""
    from ticketeval.scoring.results import discard_run

    recorded: set[str] = set()
    with contextlib.suppress(TicketevalError):
        recorded = {row.id for row in read_trials(settings.history, run_id=run_id)}
    discard_run(settings.results_dir, run_id, keep=recorded)


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


def copy_history(source: str, target: str) -> dict[str, Any]:
    """Copy every trial of one history into another (e.g. a local file into a team's server),
    each a history URL or a SQLite file's path. Idempotent: copying again adds nothing.
    Returns both histories (passwords redacted) and the rows added."""
    from ticketeval.settings import sqlite_url

    from_url, to_url = (url if "://" in url else sqlite_url(Path(url)) for url in (source, target))
    with open_history(from_url, create=False) as store:
        summaries = store.summaries()
    added = 0
    with open_history(to_url) as store:
        for summary in summaries:
            added += store.append(summary)
    return {"from": redact_url(from_url), "to": redact_url(to_url), "added": added}


def flow_history_url(url: str) -> str | None:
    """The history a registered flow is given: a server's URL without its password (the machine
    that runs the flow supplies it: PGPASSWORD, ~/.pgpass), or None for a file, which would be
    the client's disk (the flow then uses the history its own machine is set up with)."""
    return without_password(url) if is_server_url(url) else None
