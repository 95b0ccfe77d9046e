"""The trial history, as the rest of ticketeval uses it: open it, record a trial so that it is
never lost, read trials back (the same on every backend), and flag regressions.

Beneath it, one concern each (imports go one way, urls → rows → sql → spool → here):

- `history_urls`: the URL forms, the default place, passwords kept out of messages;
- `history_rows`: a trial summary as rows and a row read back (pure data);
- `history_sql`: SQLite and PostgreSQL, the schema and its migration;
- `spool`: the files where trials wait while the history cannot be reached.

sqlite3, psycopg and platformdirs are imported inside the functions that use them, so that
`import ticketeval.history.store` stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ticketeval.errors import HistoryError, HistoryUnavailable, UsageError
from ticketeval.history.rows import HistoryRow, rows_from_summary
from ticketeval.history.spool import SpoolProgress, pending_spool, send_spooled, spool_trial
from ticketeval.history.sql import HistoryStore
from ticketeval.history.urls import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    HISTORY_FILE,
    is_server_url,
    parse_history_url,
    redact_url,
    scrub,
    without_password,
)


def to_json(rows: Sequence[HistoryRow]) -> str:
    """The rows as a JSON array: the same trials give the same bytes on every backend."""
    return json.dumps([asdict(row) for row in rows], allow_nan=False)


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
                    r.MAE_high if r.MAE_high is not None else r.MAE  # type: ignore[misc]
                    for r in reference
                )
                flagged = row.MAE_low > upper
            else:
                median = statistics.median(r.MAE for r in reference if r.MAE is not None)
                flagged = row.MAE > median * (1 + threshold)
        flags.append(flagged)
        earlier.append(row)
    return flags


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

    def raise_if_spooled(self) -> None:
        """Raise HistoryUnavailable (exit code 7) when the trial only reached the spool."""
        if self.spooled:
            raise HistoryUnavailable(self.message)


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
        except OSError as spool_error:
            raise HistoryError(
                f"trial {trial_id} is lost: {error} And the spool {spool_dir} cannot be "
                f"written either: {spool_error}."
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


def flush_spool(url: str, spool_dir: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> int:
    """Send the spooled trials now (without a new trial); return how many were sent."""
    with open_history(url, busy_timeout=busy_timeout) as store:
        return send_spooled(spool_dir, store.append).sent


def copy_history(from_url: str, to_url: str) -> int:
    """Copy every trial of one history into another (e.g. a local file into a team's server);
    return the rows added. Idempotent: copying again adds nothing."""
    with open_history(from_url, create=False) as source:
        summaries = source.summaries()
    added = 0
    with open_history(to_url) as target:
        for summary in summaries:
            added += target.append(summary)
    return added


# --- The history releases up to 0.1 kept in the cache directory ------------------------------


def move_legacy_history(legacy_dir: Path, data_dir: Path | None = None) -> str | None:
    """Move `<legacy_dir>/history.sqlite` (the cache directory, where releases up to now kept it)
    to the data directory, once; return a sentence saying so, or None when there was nothing to
    move.

    Nothing is moved when the new file already exists (it was moved before, or a history was
    started there): the old file is then left alone. The copy uses SQLite's backup API, so
    what is in the old file's -wal is included, and is published with a hard link, which fails
    rather than overwrite a history another process created meanwhile.
    """
    import sqlite3

    from ticketeval.settings import default_history_dir

    old = legacy_dir / HISTORY_FILE
    new = (data_dir or default_history_dir()) / HISTORY_FILE
    if not old.exists() or new.exists() or old.resolve() == new.resolve():
        return None
    new.parent.mkdir(parents=True, exist_ok=True)
    temporary = new.with_name(f".{new.name}.{os.getpid()}.tmp")
    try:
        with (
            contextlib.closing(sqlite3.connect(old, timeout=DEFAULT_BUSY_TIMEOUT)) as source,
            contextlib.closing(sqlite3.connect(temporary)) as target,
        ):
            source.backup(target)
        try:
            os.link(temporary, new)
        except FileExistsError:
            return None  # another process moved it first
    except (sqlite3.Error, OSError) as error:
        raise HistoryError(
            f"could not move the trial history from {old} to {new}: {scrub(str(error), '')}"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        old.with_name(old.name + suffix).unlink(missing_ok=True)
    return f"Moved the trial history from {old} to {new} (a cache directory is no place for it)."


def flow_history_url(url: str) -> str | None:
    """The history a registered flow is given: a server's URL without its password (the machine
    that runs the flow supplies it: PGPASSWORD, ~/.pgpass), or None for a file, which would be
    the client's disk (the flow then uses the history its own machine is set up with)."""
    return without_password(url) if is_server_url(url) else None
