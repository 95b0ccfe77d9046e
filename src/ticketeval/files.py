"""Files written whole or not at all: the atomic write every cache, download and spool uses."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ticketeval.errors import SettingsError

# A temporary file nobody has written to for this long was left by a killed process.
ABANDONED_AFTER_SECONDS = 3600.0


@contextlib.contextmanager
def atomic_file(destination: Path) -> Iterator[io.BufferedWriter]:
    """Write to a temporary file beside `destination`; rename it there only on success.

    A directory that cannot be written to (read-only, a file in the way, a name too long, a
    full disk) is a SettingsError naming it; errors of the caller's own writing pass through.
    """
    with unwritable(destination):
        destination.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_temporaries(destination.parent)
        fd, temporary = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
        )
    try:
        # mkstemp makes the file private (0600); the finished file gets the usual mode.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as out:
            yield out
            with unwritable(destination):
                out.flush()
                os.fsync(out.fileno())
        with unwritable(destination):
            os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def unwritable(destination: Path) -> Iterator[None]:
    """Turn an OSError while writing `destination` into one line naming its directory."""
    try:
        yield
    except OSError as error:
        raise SettingsError(
            f"cannot write {shorten(destination)} ({error.strerror or error}): make "
            f"{shorten(destination.parent)} writable, or choose another data directory "
            "(--data-dir or TICKETEVAL_DATA_DIR)."
        ) from None


def shorten(path: Path | str, limit: int = 100) -> str:
    """A path as a message shows it: whole, or its start and end when it is very long."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]}"


def remove_abandoned_temporaries(directory: Path) -> None:
    """Delete the temporary files of `atomic_file` and `fetch` that a killed process (kill -9,
    a power cut) left behind. One being written is touched at every chunk and may be another
    process's, so only files untouched for ABANDONED_AFTER_SECONDS go."""
    cutoff = time.time() - ABANDONED_AFTER_SECONDS
    for leftover in [*directory.glob(".*.tmp"), *directory.glob(".download-*")]:
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()


def _umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
