"""The spool: trials that could not reach the history wait here, one JSON file each, until a
later trial gets through and sends them first. Nothing scored is lost.

A spool file holds the trial's summary only (never the history's URL or a password). Files are
named by the trial's time then id, so sorted names are the order trials ran in, and the same
trial spooled twice lands on the same file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ticketeval.errors import SummaryError
from ticketeval.files import atomic_file
from ticketeval.history.rows import null_if_undefined, rows_from_summary, utc_iso


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
