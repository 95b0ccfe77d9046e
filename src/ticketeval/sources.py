"""Where an event log comes from: UCI's zip over HTTP, a local .zip or .csv."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ticketeval.errors import DataError, DownloadError
from ticketeval.files import atomic_file
from ticketeval.parsing import CSV_NAME

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


def read_zip(data: bytes, *, source: str) -> RawLog:
    """The CSV inside a zip; the member is found by name, not assumed to be at the top."""
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
        if info.filename.lower().endswith(".csv") and not info.filename.startswith("__MACOSX/")
    ]
    if not members:
        raise DataError(f"{source} holds no CSV file: expected {CSV_NAME}.")
    member = next((m for m in members if Path(m).name == CSV_NAME), members[0])
    try:
        csv = archive.read(member)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{source} is corrupt: reading {member} failed ({error}).") from None
    return RawLog(csv, source, Path(member).name, hashlib.sha256(data).hexdigest())


def read_local(path: Path) -> RawLog:
    """A local `.zip` or `.csv`, told apart by content so a misnamed file still works."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}.") from None
    if data[:4] == b"PK\x03\x04" or path.suffix.lower() == ".zip":
        return read_zip(data, source=str(path))
    return RawLog(data, str(path), path.name)


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
                    done = 0
                    try:
                        for chunk in response.iter_content(chunk_size=1 << 16):
                            out.write(chunk)
                            done += len(chunk)
                            if progress:
                                progress(done, total)
                    except requests.RequestException as error:
                        if _timed_out(error):
                            raise
                        # The server closed or reset the connection mid-body.
                        expected = f" of {total:,}" if total else ""
                        raise DownloadError(
                            f"downloading {url} failed: the connection broke after {done:,}"
                            f"{expected} bytes."
                        ) from None
                    if total is not None and done != total:
                        raise DownloadError(
                            f"downloading {url} failed: it sent {done:,} of {total:,} bytes."
                        )
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else "?"
            raise DownloadError(f"downloading {url} failed: HTTP {status}.") from None
        except requests.RequestException as error:
            if _timed_out(error):
                raise DownloadError(
                    f"downloading {url} timed out after {timeout:g} s (TICKETEVAL_TIMEOUT)."
                ) from None
            reason = _root_cause(error)
            raise DownloadError(f"downloading {url} failed: {reason}.") from None


def _timed_out(error: BaseException) -> bool:
    """Whether a requests error is a timeout, also when urllib3 gave up retrying one (requests
    then raises a ConnectionError around urllib3's MaxRetryError, not a Timeout)."""
    import requests
    from urllib3.exceptions import MaxRetryError
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    if isinstance(error, requests.Timeout):
        return True
    cause = error.args[0] if error.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, Urllib3Timeout | TimeoutError)


def _root_cause(error: BaseException) -> str:
    while error.__context__ is not None and not str(error):
        error = error.__context__
    text = str(error)
    return text.split(": ", 1)[-1] if len(text) > 200 else text
