"""Where an event log comes from: UCI's zip over HTTP, a local .zip or .csv."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ticketeval.data.parsing import COLUMNS, CSV_NAME
from ticketeval.errors import DataError, DownloadError, UsageError
from ticketeval.files import atomic_file, shorten

UCI_URLS = (
    # UCI's current address for data set 498, then the legacy one the seed used.
    "https://archive.ics.uci.edu/static/public/498/incident+management+process+enriched+event+log.zip",
    "https://archive.ics.uci.edu/ml/machine-learning-databases/00498/incident_event_log.zip",
)
UCI_ZIP_SHA256 = "6294e29a311647306bfdfc85783f7df66517c197b9cd49aa5ee36ba9c525d1d6"
UCI_CSV_SHA256 = "fd184bbfd62329cfe093e99da2ea7071905f2ead91900b448eb2635870821bef"

ProgressCallback = Callable[[int, int | None], None]


@dataclass(frozen=True)
class RawLog:
    """The CSV bytes of an event log and where they came from."""

    csv: bytes
    source: str
    csv_name: str = CSV_NAME
    zip_sha256: str | None = None

    @property
    def csv_sha256(self) -> str:
        return hashlib.sha256(self.csv).hexdigest()


# A zip member larger than this, or compressed more than this ratio, is refused before it is
# extracted (a zip bomb: 4.3 MB holding a 1 GB CSV took 3.7 GB of memory). UCI's CSV is 46 MB,
# compressed 19:1. TICKETEVAL_MAX_CSV_BYTES and TICKETEVAL_MAX_ZIP_RATIO raise them.
DEFAULT_MAX_CSV_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_ZIP_RATIO = 100.0


@dataclass(frozen=True)
class ZipLimits:
    """How large a CSV a zip may hold, and how much more than its compressed size."""

    max_csv_bytes: int = DEFAULT_MAX_CSV_BYTES
    max_ratio: float = DEFAULT_MAX_ZIP_RATIO


def _check_member(info: zipfile.ZipInfo, source: str, limits: ZipLimits) -> None:
    """Refuse a member whose declared size or compression ratio is beyond `limits`."""
    if info.file_size > limits.max_csv_bytes:
        raise DataError(
            f"{source}: {info.filename} would unpack to {info.file_size:,} bytes, more than the "
            f"limit of {limits.max_csv_bytes:,}: refused (raise TICKETEVAL_MAX_CSV_BYTES if "
            "you trust it)."
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if ratio > limits.max_ratio:
        raise DataError(
            f"{source}: {info.filename} is compressed {ratio:,.0f}:1, more than the limit of "
            f"{limits.max_ratio:g}:1 (a zip bomb?): refused (raise TICKETEVAL_MAX_ZIP_RATIO if "
            "you trust it)."
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits) -> bytes:
    """The member's bytes, never more than the limit even when its declared size lies."""
    with archive.open(info) as stream:
        data = stream.read(limits.max_csv_bytes + 1)
    if len(data) > limits.max_csv_bytes:
        raise zipfile.BadZipFile(f"it holds more than its declared {info.file_size:,} bytes")
    return data


def read_zip(data: bytes, *, source: str, limits: ZipLimits | None = None) -> RawLog:
    """The CSV inside a zip; the member is found by name, not assumed to be at the top, and
    checked against `limits` before it is extracted."""
    limits = limits or ZipLimits()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        start = data[:64].lstrip().lower()
        hint = (
            " (it looks like an HTML page, not the data)"
            if start.startswith((b"<!doctype", b"<html"))
            else ""
        )
        raise DataError(f"{source} is not a valid zip file{hint}.") from None
    members = [
        info.filename
        for info in archive.infolist()
        if info.filename.lower().endswith(".csv")
        and not info.is_dir()
        and not info.filename.startswith("__MACOSX/")
    ]
    if not members:
        raise DataError(f"{source} holds no CSV file: expected {CSV_NAME}.")
    member = members[0] if len(members) == 1 else _choose_event_log(archive, members, source)
    info = archive.getinfo(member)
    _check_member(info, source, limits)
    try:
        csv = _read_member(archive, info, limits)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as error:
        raise DataError(f"{source} is corrupt: reading {member} failed ({error}).") from None
    return RawLog(csv, source, Path(member).name, hashlib.sha256(data).hexdigest())


def _choose_event_log(archive: zipfile.ZipFile, members: list[str], source: str) -> str:
    """The one CSV member whose header has every column of the event log; several or none
    is an error naming them, never a guess."""
    candidates = [member for member in members if set(COLUMNS) <= _header(archive, member)]
    if len(candidates) == 1:
        return candidates[0]
    names = ", ".join(members if not candidates else candidates)
    if candidates:
        raise DataError(
            f"{source} holds several CSV files with the event log's columns ({names}): "
            "keep one in the zip, or extract the one you mean and give it with --source."
        )
    raise DataError(
        f"{source} holds several CSV files and none has the event log's columns ({names}): "
        "is this the UCI incident event log?"
    )


def _header(archive: zipfile.ZipFile, member: str) -> set[str]:
    """The column names on a CSV member's first line (its first 64 KiB at most)."""
    try:
        with archive.open(member) as stream:
            first = stream.readline(1 << 16)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError):
        return set()
    text = first.decode("utf-8-sig", errors="replace")
    return {name.strip() for row in csv.reader([text]) for name in row}


def unreadable_source(path: Path, error: OSError) -> DataError:
    """The one line for a --source that cannot be read, saying what to give instead."""
    if isinstance(error, IsADirectoryError):
        return DataError(
            f"{shorten(path)} is a directory: give a regular .zip or .csv file of the event log, "
            "or 'demo'."
        )
    if isinstance(error, FileNotFoundError):
        return DataError(
            f"{shorten(path)} does not exist: give a .zip or .csv of the event log, or 'demo'."
        )
    return DataError(f"cannot read {shorten(path)}: {error.strerror or error}.")


def read_local(path: Path, limits: ZipLimits | None = None) -> RawLog:
    """A local `.zip` or `.csv`, told apart by content so a misnamed file still works.

    Only a regular file is read: a FIFO or a device would block or never end, a directory
    cannot be read at all.
    """
    try:
        with open(path, "rb", opener=_open_without_blocking) as stream:
            kind = _file_kind(os.fstat(stream.fileno()).st_mode)
            if kind:
                raise DataError(
                    f"{shorten(path)} is {kind}: give a regular .zip or .csv file of the event "
                    "log, or 'demo'."
                )
            data = stream.read()
    except OSError as error:
        raise unreadable_source(path, error) from None
    if data[:4] == b"PK\x03\x04" or path.suffix.lower() == ".zip":
        return read_zip(data, source=str(path), limits=limits)
    return RawLog(data, str(path), path.name)


def _open_without_blocking(path: str, flags: int) -> int:
    # Opening a FIFO for reading blocks until a writer comes; O_NONBLOCK lets it return so
    # fstat can refuse it. Regular files ignore the flag.
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _file_kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_url(url: str, *, option: str = "--url") -> None:
    """Refuse a URL option that cannot be downloaded from, before anything is tried."""
    from ticketeval.settings import check_http_url

    if not url.strip():
        raise UsageError(f"{option} is empty: give an http(s) URL, or leave {option} out for UCI.")
    try:
        check_http_url(url)
    except ValueError as error:
        raise UsageError(f"{option}: {error}, like https://example.org/log.zip.") from None


def download(
    url: str,
    destination: Path,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    retry_backoff: float = 0.5,
    progress: ProgressCallback | None = None,
) -> None:
    """Stream `url` into `destination`, via a temporary file renamed only when complete.

    Connection errors, timeouts and 5xx answers are retried with exponential backoff (urllib3's
    Retry, which logs each retry on the `urllib3` logger). A body shorter than its
    Content-Length, or cut off by the server, is an error, not a file.
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=retries,
        backoff_factor=retry_backoff,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=("GET",),
        raise_on_status=False,
    )
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        try:
            with session.get(url, stream=True, timeout=timeout) as response:
                response.raise_for_status()
                total = int(response.headers.get("Content-Length") or 0) or None
                with atomic_file(destination) as out:
                    try:
                        for chunk in response.iter_content(chunk_size=1 << 16):
                            out.write(chunk)
                            if progress:
                                progress(_received(response), total)
                    except requests.RequestException as error:
                        if _failure(error, timeout) is not None:
                            raise
                        # The server closed or reset the connection mid-body.
                        expected = f" of {total:,}" if total else ""
                        raise DownloadError(
                            f"downloading {url} failed: the connection broke after "
                            f"{_received(response):,}{expected} bytes."
                        ) from None
                    # Content-Length counts the bytes on the wire, compressed when the server
                    # sent Content-Encoding: gzip; iter_content yields them decoded.
                    done = _received(response)
                    if total is not None and done != total:
                        raise DownloadError(
                            f"downloading {url} failed: it sent {done:,} of {total:,} bytes."
                        )
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else "?"
            raise DownloadError(f"downloading {url} failed: HTTP {status}.") from None
        except requests.RequestException as error:
            reason = _failure(error, timeout)
            if reason is not None and reason.startswith("timed out"):
                raise DownloadError(f"downloading {url} {reason}.") from None
            reason = reason or _root_cause(error)
            raise DownloadError(f"downloading {url} failed: {reason}.") from None


def _received(response: object) -> int:
    """Bytes of the body read from the wire so far (before any Content-Encoding is undone)."""
    return int(response.raw.tell())  # type: ignore[attr-defined]


def _failure(error: BaseException, timeout: float) -> str | None:
    """What went wrong with a connection, truthfully: a timeout, a refused connection or a name
    that does not resolve; None for anything else.

    urllib3's NewConnectionError (and NameResolutionError) derive from ConnectTimeoutError for
    old callers' sake, so they are told apart before a timeout is assumed; after its retries,
    urllib3 raises MaxRetryError around the last error, which requests wraps again.
    """
    import requests
    from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    cause: BaseException | None = error
    seen = 0
    while cause is not None and seen < 10:
        seen += 1
        if isinstance(cause, NameResolutionError):
            return f"the name {cause.conn.host!r} does not resolve (no network, or a wrong URL)"
        if isinstance(cause, NewConnectionError):
            if isinstance(cause.__context__, ConnectionRefusedError) or "refused" in str(cause):
                return f"connection refused by {cause.conn.host}:{cause.conn.port}"
            return None
        if isinstance(cause, Urllib3Timeout | TimeoutError) and not isinstance(
            cause, ConnectionError
        ):
            return f"timed out after {timeout:g} s (TICKETEVAL_TIMEOUT)"
        if isinstance(cause, MaxRetryError):
            cause = cause.reason
        elif isinstance(cause, requests.RequestException) and cause.args:
            inner = cause.args[0]
            cause = inner if isinstance(inner, BaseException) else cause.__context__
        else:
            cause = cause.__context__
    return None


def _root_cause(error: BaseException) -> str:
    while error.__context__ is not None and not str(error):
        error = error.__context__
    text = str(error)
    return text.split(": ", 1)[-1] if len(text) > 200 else text
