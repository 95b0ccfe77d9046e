"""The history releases up to 0.1 kept in the cache directory: moved, once, to the data
directory, where every command that reads or writes the default history looks first."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ticketeval.errors import HistoryError
from ticketeval.history.urls import DEFAULT_BUSY_TIMEOUT, scrub

if TYPE_CHECKING:
    from ticketeval.settings import Settings


def adopt_legacy_history(settings: Settings) -> str | None:
    """Move a history left in the cache directory by earlier releases to the data directory
    (the default history only); the sentence saying so, or None. Every command that reads or
    writes the history calls it first, so none reports "no trials" while they sit there."""
    if settings.history_url is not None or settings.history_path is not None:
        return None
    return move_legacy_history(settings.data_dir, settings.history_dir)


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

    from ticketeval.settings import HISTORY_FILE, default_history_dir

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
