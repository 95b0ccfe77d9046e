"""One spool per history: a trial that could not reach history A waits for A only.

The spool root (`<history dir>/spool`) holds a directory per history, named by a hash of the
history's URL without its password (the same history with a changed password keeps its
spool), with a `history.url` file saying, password-free, which history it waits for. Files
left directly in the root by earlier releases name no history: they are listed, never sent.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ticketeval.files import atomic_file
from ticketeval.history.spool import pending_spool
from ticketeval.history.urls import without_password

if TYPE_CHECKING:
    from ticketeval.settings import Settings

LABEL_FILE = "history.url"


def spool_for(spool_root: Path, url: str) -> Path:
    """The spool of the history at `url`, under `spool_root`."""
    key = hashlib.sha256(without_password(url.strip()).encode()).hexdigest()[:16]
    return spool_root / key


def history_spool(settings: Settings) -> Path:
    """The spool of the settings' history: its trials are sent there and nowhere else."""
    return spool_for(settings.spool_dir, settings.history)


def label_spool(spool_dir: Path, url: str) -> None:
    """Say in `spool_dir` which history its trials wait for (the URL, password removed)."""
    label = spool_dir / LABEL_FILE
    if not label.exists():
        with atomic_file(label, chosen_by="TICKETEVAL_HISTORY_DIR") as out:
            out.write(without_password(url.strip()).encode())


@dataclass(frozen=True)
class Waiting:
    """Trials waiting in one spool, and for which history (None: an earlier release's)."""

    history: str | None
    trials: int
    spool: str


def waiting_spools(spool_root: Path) -> list[Waiting]:
    """Every spool under `spool_root` that holds trials, the unlabelled legacy one included."""
    found: list[Waiting] = []
    legacy = pending_spool(spool_root)
    if legacy:
        found.append(Waiting(None, legacy, str(spool_root)))
    if not spool_root.is_dir():
        return found
    for spool in sorted(path for path in spool_root.iterdir() if path.is_dir()):
        count = pending_spool(spool)
        if not count:
            continue
        history = None
        with contextlib.suppress(OSError, UnicodeDecodeError):
            history = (spool / LABEL_FILE).read_text(encoding="utf-8").strip() or None
        found.append(Waiting(history, count, str(spool)))
    return found
