"""Files written whole or not at all: the atomic write every cache, download and spool uses."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ticketeval.errors import SettingsError, UsageError

# What a message says chose a path, when the caller does not say (the cache's directory).
DATA_DIR_CHOICE = "--data-dir or TICKETEVAL_DATA_DIR"

# A temporary file nobody has written to for this long was left by a killed process.
ABANDONED_AFTER_SECONDS = 3600.0


def file_kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next(
        (name for test, name in kinds if test(mode)),
        None if stat.S_ISREG(mode) else "a special file",
    )


def output_target(path: Path, *, chosen_by: str = DATA_DIR_CHOICE) -> Path:
    """The file a write to `path` replaces: `path` itself, or the regular file a symlink at
    `path` points to (the link is followed and kept, never replaced by a file).

    Refused in one line (UsageError), before anything is written: anything that exists and is
    not a regular file (a directory, a device such as /dev/full or /dev/null, a FIFO, a
    socket), and a symlink that does not end at a regular file (dangling, or to a special file).
    """
    try:
        link = path.is_symlink()
        found = os.stat(path) if link or path.exists() else None
    except FileNotFoundError:  # a dangling symlink
        raise UsageError(
            f"{shorten(path)} is a symlink to nothing ({chosen_by}): ticketeval writes through "
            "a symlink only to an existing regular file; give a file."
        ) from None
    except OSError as error:
        raise UsageError(
            f"{shorten(path)} cannot be written ({error.strerror or error}): give another path "
            f"({chosen_by})."
        ) from None
    if found is not None and (kind := file_kind(found.st_mode)) is not None:
        through = " (through a symlink)" if link else ""
        raise UsageError(
            f"{shorten(path)} is {kind}{through}, not a regular file: refusing to replace it; "
            f"give a file path ({chosen_by})."
        )
    return path.resolve() if link else path


def check_output(path: Path, *, chosen_by: str, own: Iterable[Path] = ()) -> Path:
    """`output_target`, refusing also a path that is, or lies in, one of ticketeval's own
    files or directories `own` (the history, the spool, the cache, the per-event results),
    compared after resolving symlinks. Returns the file to write."""
    target = output_target(path, chosen_by=chosen_by)
    resolved = target.resolve()
    for protected in own:
        mine = protected.expanduser().resolve()
        if resolved == mine or mine in resolved.parents:
            raise UsageError(
                f"{shorten(path)} is ticketeval's own {shorten(mine)}: refusing to write over "
                f"it; give another path ({chosen_by})."
            )
    return target


def probe_writable(destination: Path, *, chosen_by: str) -> None:
    """Refuse now, in one line naming `chosen_by`, a file that could not be written later (a
    directory that cannot be made or written, a read-only file system, a name too long):
    before long work whose result would be lost."""
    with unwritable(destination, chosen_by=chosen_by):
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
        )
        os.close(fd)
        os.unlink(probe)


@contextlib.contextmanager
def atomic_file(
    destination: Path, *, chosen_by: str = DATA_DIR_CHOICE
) -> Iterator[io.BufferedWriter]:
    """Write to a temporary file beside `destination`; rename it there only on success.

    `destination` must be a regular file or nothing (`output_target`: a symlink to a regular
    file is followed). A directory that cannot be written to (read-only, a file in the way, a
    name too long, a full disk) is a SettingsError naming it and `chosen_by`, the option or
    setting that chose the path; errors of the caller's own writing pass through.
    """
    destination = output_target(destination, chosen_by=chosen_by)
    with unwritable(destination, chosen_by=chosen_by):
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
            with unwritable(destination, chosen_by=chosen_by):
                out.flush()
                os.fsync(out.fileno())
        with unwritable(destination, chosen_by=chosen_by):
            os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def unwritable(destination: Path, *, chosen_by: str = DATA_DIR_CHOICE) -> Iterator[None]:
    """Turn an OSError while writing `destination` into one line naming its directory and
    `chosen_by`, the option or setting that chose the path."""
    try:
        yield
    except OSError as error:
        raise SettingsError(
            f"cannot write {shorten(destination)} ({error.strerror or error}): make "
            f"{shorten(destination.parent)} writable, or choose another path ({chosen_by})."
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
