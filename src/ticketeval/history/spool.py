"""The spool: trials that could not reach the history wait here, one JSON file each, until a
later trial gets through and sends them first. Nothing scored is lost.

A spool file holds the trial's summary only (never the history's URL or a password). Files are
named by the trial's time then id, so sorted names are the order trials ran in, and the same
trial spooled twice lands on the same file.

One spool per history: a trial that could not reach history A waits for A only.

The spool root (`<history dir>/spool`) holds a directory per history, named by a hash of the
history's URL without its password (the same history with a changed password keeps its
spool), with a `history.url` file saying, password-free, which history it waits for. Files
left directly in the root by earlier releases name no history: they are listed, never sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticketeval.errors import SummaryError
from ticketeval.files import atomic_file
from ticketeval.history.rows import null_if_undefined, rows_from_summary, utc_iso
from ticketeval.history.urls import without_password

if TYPE_CHECKING:
    from ticketeval.settings import Settings


def _spool_name(summary: Mapping[str, Any]) -> str:
    stamp = datetime.fromisoformat(utc_iso(summary.get("timestamp"))).strftime("%Y%m%dT%H%M%S%fZ")
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", str(summary["id"]))[:100]
    return f"{stamp}-{safe_id}.json"


def spool_trial(summary: Mapping[str, Any], spool_dir: Path) -> Path:
    """Write the trial to the spool atomically (a temporary name, fsync, then rename)."""
    final = spool_dir / _spool_name(summary)
    with atomic_file(final) as out:
        out.write(json.dumps(null_if_undefined(summary), allow_nan=False, default=str).encode())
    return final


def spooled_files(spool_dir: Path) -> list[Path]:
    """The spooled trials, oldest first."""
    if not spool_dir.is_dir():
        return []
    return sorted(path for path in spool_dir.glob("*.json") if not path.name.startswith("."))


def pending_spool(spool_dir: Path) -> int:
    """How many trials wait in the spool for the history to be reachable."""
    return len(spooled_files(spool_dir))


@dataclass
class SpoolProgress:
    """What sending the spool has done so far: kept by the caller when a send fails part-way."""

    sent: int = 0
    rejected: list[Path] = field(default_factory=list)  # unreadable files, renamed *.rejected


def send_spooled(
    spool_dir: Path,
    send: Callable[[dict[str, Any]], object],
    progress: SpoolProgress | None = None,
) -> SpoolProgress:
    """Send every spooled trial with `send` (one transaction each), oldest first, deleting each
    file once `send` returned; an unreadable file is set aside as *.rejected. An error from
    `send` propagates, with `progress` saying what was sent before it.

    A crash between the commit and the delete leaves a file whose trial is already recorded;
    sending it again adds nothing (the history's writes are idempotent), so that is harmless.
    """
    progress = progress if progress is not None else SpoolProgress()
    for path in spooled_files(spool_dir):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            rows_from_summary(summary)
        except FileNotFoundError:
            continue  # another process sent it meanwhile
        except (ValueError, SummaryError):
            rejected_path = path.with_suffix(".rejected")
            with contextlib.suppress(OSError):
                os.replace(path, rejected_path)
                progress.rejected.append(rejected_path)
            continue
        send(summary)
        path.unlink(missing_ok=True)
        progress.sent += 1
    return progress


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
