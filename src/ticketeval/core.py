"""The pipeline: data, target, model, metrics, summary, history and the Prefect flow.

Never imports typer or rich; returns plain data and raises the `TicketevalError` family.
Prefect and Dask are imported only inside the functions that build or run the flow, so that
`ticketeval evaluate` does not pay for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import math
import os
import secrets
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ticketeval.errors import (
    DataError,
    DownloadError,
    FlowError,
    ModelError,
    TicketevalError,
    UsageError,
)

if TYPE_CHECKING:
    from prefect import Flow

log = logging.getLogger("ticketeval")

# --- The data set ------------------------------------------------------------------------------

UCI_URLS = (
    # UCI's current address for data set 498, then the legacy one the seed used.
    "https://archive.ics.uci.edu/static/public/498/incident+management+process+enriched+event+log.zip",
    "https://archive.ics.uci.edu/ml/machine-learning-databases/00498/incident_event_log.zip",
)
UCI_ZIP_SHA256 = "6294e29a311647306bfdfc85783f7df66517c197b9cd49aa5ee36ba9c525d1d6"
UCI_CSV_SHA256 = "fd184bbfd62329cfe093e99da2ea7071905f2ead91900b448eb2635870821bef"
CSV_NAME = "incident_event_log.csv"
DEMO_SOURCE = "demo"

COLUMNS = (
    "number", "incident_state", "active", "reassignment_count", "reopen_count", "sys_mod_count",
    "made_sla", "caller_id", "opened_by", "opened_at", "sys_created_by", "sys_created_at",
    "sys_updated_by", "sys_updated_at", "contact_type", "location", "category", "subcategory",
    "u_symptom", "cmdb_ci", "impact", "urgency", "priority", "assignment_group", "assigned_to",
    "knowledge", "u_priority_confirmation", "notify", "problem_id", "rfc", "vendor", "caused_by",
    "closed_code", "resolved_by", "resolved_at", "closed_at",
)  # fmt: skip
DATE_COLUMNS = ("opened_at", "sys_created_at", "sys_updated_at", "resolved_at", "closed_at")
BOOL_COLUMNS = ("active", "made_sla", "knowledge", "u_priority_confirmation")
INT_COLUMNS = ("reassignment_count", "reopen_count", "sys_mod_count")
MISSING_MARKERS = ("?", "")
# Day-first, as UCI writes them ("29/2/2016 01:16"); the others are what spreadsheets and data
# portals re-export the same data as. %d and %m accept both padded and unpadded numbers.
DATE_FORMATS = ("%d/%m/%Y %H:%M", "%d-%m-%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d-%m-%Y %H:%M:%S")

PRIORITIES = ("1 - Critical", "2 - High", "3 - Moderate", "4 - Low")
HOUR = 3600.0
# The seed's heuristic, with the label the data really uses ("4 - Low", not "4 - Lower").
HEURISTIC_HOURS = {"1 - Critical": 6.0, "2 - High": 24.0, "3 - Moderate": 120.0, "4 - Low": 240.0}
HEURISTIC_DEFAULT_HOURS = 180.0

# What every trial reads: the target's two columns and the priority the summary groups by; a
# model may ask for more (see `model_columns`).
TRIAL_COLUMNS = ("priority", "sys_updated_at", "closed_at")
METRIC_NAMES = ("MAE", "MedAE", "MSE", "R2")  # the seed's, each one task in the flow

CACHE_NAME = "events.parquet"
CACHE_METADATA_KEY = b"ticketeval"
DEFAULT_DEMO_EVENTS = 20_000

ProgressCallback = Callable[[int, int | None], None]


# --- Parsing -----------------------------------------------------------------------------------


def parse_event_log(csv: bytes | Path, *, name: str = CSV_NAME) -> pa.Table:
    """Parse the event log CSV into a typed Arrow table, vectorised.

    Dates become timestamps, `true`/`false` (any case) booleans, counts integers, and every
    other column a dictionary (pandas: categorical). `?` and empty cells are missing.
    """
    source = pa.BufferReader(csv) if isinstance(csv, bytes) else str(csv)
    try:
        table = pacsv.read_csv(
            source,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(COLUMNS, pa.string()),
                null_values=list(MISSING_MARKERS),
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as error:
        detail = str(error).splitlines()[0]
        if "Empty CSV file" in detail:
            raise DataError(f"{name} is empty: expected the incident event log CSV.") from None
        raise DataError(f"{name} is not a readable CSV ({detail}).") from None
    missing = [column for column in COLUMNS if column not in table.column_names]
    if missing:
        raise DataError(
            f"{name} lacks the required column(s) {', '.join(missing)}: "
            "is this the UCI incident event log?"
        )
    if table.num_rows == 0:
        raise DataError(f"{name} has a header but no rows.")
    return pa.table({column: _convert(column, table[column], name) for column in COLUMNS})


def _convert(column: str, values: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    if column in DATE_COLUMNS:
        return _parse_dates(column, values, name)
    if column in BOOL_COLUMNS:
        lowered = pc.utf8_lower(values)
        bad = pc.and_(
            pc.is_valid(lowered), pc.invert(pc.is_in(lowered, pa.array(["true", "false"])))
        )
        _refuse_bad_values(column, values, bad, name, "true/false")
        return pc.equal(lowered, "true")
    if column in INT_COLUMNS:
        try:
            return pc.cast(pc.utf8_trim_whitespace(values), pa.int64())
        except pa.ArrowInvalid as error:
            as_int = pc.match_substring_regex(values, r"^\s*-?\d+\s*$")
            _refuse_bad_values(column, values, pc.invert(as_int), name, "whole numbers")
            # Whole numbers all, but one does not fit in 64 bits; Arrow's message names it.
            detail = str(error).splitlines()[0]
            raise DataError(
                f"{name}: column {column!r} has a number too large to read ({detail}); "
                "expected whole numbers."
            ) from None
    return pc.dictionary_encode(values)


def _parse_dates(column: str, values: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    first_attempt = None
    for date_format in DATE_FORMATS:
        parsed = pc.strptime(values, format=date_format, unit="s", error_is_null=True)
        if parsed.null_count == values.null_count:
            _refuse_impossible_dates(column, values, parsed, name)
            return parsed
        first_attempt = first_attempt if first_attempt is not None else parsed
    assert first_attempt is not None
    bad = pc.and_(pc.is_null(first_attempt), pc.is_valid(values))
    formats = ", ".join(repr(f) for f in DATE_FORMATS)
    _refuse_bad_values(
        column, values, bad, name, f"day-first dates like '29/2/2016 01:16' ({formats})"
    )
    raise AssertionError("unreachable")  # pragma: no cover


def _refuse_impossible_dates(
    column: str, values: pa.ChunkedArray, parsed: pa.ChunkedArray, name: str
) -> None:
    """Arrow's strptime rolls '31/2/2016' over into March and reads '29/2/16' as the year 16:
    refuse a date whose written day, month and four-digit year are not the ones read.

    Only dates read as the 1st to 3rd of a month (where a roll-over lands) or before the year
    1000 are checked against their text, which keeps this cheap.
    """
    suspect = pc.fill_null(
        pc.or_(pc.less_equal(pc.day(parsed), 3), pc.less(pc.year(parsed), 1000)), False
    )
    if not pc.any(suspect).as_py():
        return
    values, parsed = pc.filter(values, suspect), pc.filter(parsed, suspect)
    written = pc.extract_regex(
        values, r"^\s*(?P<day>\d{1,2})[/-](?P<month>\d{1,2})[/-](?P<year>\d{4})\s"
    )
    same = None
    for part, read in (("day", pc.day), ("month", pc.month), ("year", pc.year)):
        equal = pc.equal(pc.cast(pc.struct_field(written, part), pa.int64()), read(parsed))
        same = equal if same is None else pc.and_(same, equal)
    bad = pc.invert(pc.fill_null(same, False))
    expected = "real dates, day first, with a four-digit year, like '29/2/2016 01:16'"
    _refuse_bad_values(column, values, bad, name, expected)


def _refuse_bad_values(
    column: str, values: pa.ChunkedArray, bad: pa.ChunkedArray, name: str, expected: str
) -> None:
    bad_values = pc.filter(values, pc.fill_null(bad, False))
    if len(bad_values):
        raise DataError(
            f"{name}: column {column!r} has {len(bad_values)} value(s) that cannot be read, "
            f"e.g. {bad_values[0].as_py()!r}; expected {expected}."
        )


# --- Sources: a zip, a CSV, a download or the demo generator -----------------------------------


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
        backoff_factor=0.5,
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
                with _atomic_file(destination) as out:
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


# A temporary file nobody has written to for this long was left by a killed process.
ABANDONED_AFTER_SECONDS = 3600.0


@contextlib.contextmanager
def _atomic_file(destination: Path) -> Iterator[io.BufferedWriter]:
    """Write to a temporary file beside `destination`; rename it there only on success."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_temporaries(destination.parent)
    fd, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _remove_abandoned_temporaries(directory: Path) -> None:
    """Delete the temporary files of `_atomic_file` and `fetch` that a killed process (kill -9,
    a power cut) left behind. One being written is touched at every chunk and may be another
    process's, so only files untouched for ABANDONED_AFTER_SECONDS go."""
    cutoff = time.time() - ABANDONED_AFTER_SECONDS
    for leftover in [*directory.glob(".*.tmp"), *directory.glob(".download-*")]:
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()


# --- The demo event log ------------------------------------------------------------------------


def demo_event_log(n_events: int = DEFAULT_DEMO_EVENTS, seed: int = 0) -> bytes:
    """A synthetic event log with the real schema, formats and statistics, as CSV bytes.

    All 36 columns, `?` for missing, unpadded day-first dates, `true`/`false`, the four real
    priority labels in the real mix, several events per incident (2 or more, ~5.7 on average)
    and a heavy-tailed time to close. The same `seed` gives the same bytes.
    """
    if n_events < 2:
        raise UsageError("the demo event log needs at least 2 events.")
    rng = np.random.default_rng(seed)
    # Events per incident: at least 2, mean ~5.7, as in the real log.
    per_incident = 2 + rng.poisson(3.69, size=n_events // 2 + 1)
    ends = np.cumsum(per_incident)
    n_incidents = int(np.searchsorted(ends, n_events) + 1)
    per_incident = per_incident[:n_incidents]
    per_incident[-1] -= int(ends[n_incidents - 1] - n_events)
    incident = np.repeat(np.arange(n_incidents), per_incident)
    step = np.arange(n_events) - np.repeat(np.cumsum(per_incident) - per_incident, per_incident)
    last = step == np.repeat(per_incident - 1, per_incident)

    priority = rng.choice(len(PRIORITIES), size=n_incidents, p=[0.016, 0.021, 0.935, 0.028])
    start = np.datetime64("2016-02-29T00:00", "s").astype(np.int64)
    opened = start + rng.integers(0, 352 * 86_400, size=n_incidents)
    to_resolve = rng.lognormal(mean=np.log(20 * HOUR), sigma=1.6, size=n_incidents)
    resolved = opened + np.minimum(to_resolve, 300 * 86_400).astype(np.int64)
    # Tickets close in batches about five days after they are resolved.
    closed = (resolved + 5 * 86_400) // 3600 * 3600 + 3600
    # Updates move through the ticket's life in order; the last one is at resolution.
    fraction = np.where(last, 1.0, (step + rng.random(n_events)) / per_incident[incident])
    updated = opened[incident] + (fraction * (resolved - opened)[incident]).astype(np.int64)

    def label(prefix: str, high: int, size: int = n_events) -> pa.Array:
        return pc.binary_join_element_wise(
            prefix, pc.cast(pa.array(rng.integers(1, high, size)), pa.string()), ""
        )

    def per_event(values: pa.Array) -> pa.Array:
        return values.take(pa.array(incident))

    def maybe_missing(values: pa.Array, fraction_missing: float) -> pa.Array:
        missing = rng.random(len(values)) < fraction_missing
        return pc.if_else(pa.array(missing), "?", values)

    def dates(seconds: np.ndarray) -> pa.Array:
        text = pc.strftime(pa.array(seconds.astype("datetime64[s]")), format="%d/%m/%Y %H:%M")
        text = pc.replace_substring_regex(text, r"^0", "")
        return pc.replace_substring_regex(text, r"/0(\d)/", r"/\1/")

    def booleans(values: np.ndarray) -> pa.Array:
        return pa.array(np.where(values, "true", "false"))

    states = np.array(["New", "Active", "Awaiting User Info", "Resolved"])
    state = np.where(last, "Closed", states[np.minimum(step, 3)])
    numbers = pc.binary_join_element_wise(
        "INC", pc.utf8_lpad(pc.cast(pa.array(np.arange(n_incidents) + 1), pa.string()), 7, "0"), ""
    )
    codes = ("1 - High", "2 - Medium", "3 - Low")
    impact = rng.choice(3, size=n_incidents, p=[0.03, 0.94, 0.03])
    columns: dict[str, pa.Array] = {
        "number": per_event(numbers),
        "incident_state": pa.array(state),
        "active": booleans(~last),
        "reassignment_count": pa.array(
            per_event(pa.array(rng.poisson(1.0, n_incidents))).to_numpy().astype(str)
        ),
        "reopen_count": pa.array(np.where(rng.random(n_events) < 0.01, "1", "0")),
        "sys_mod_count": pa.array(step.astype(str)),
        "made_sla": booleans(
            per_event(pa.array(rng.random(n_incidents) < 0.93)).to_numpy(zero_copy_only=False)
        ),
        "caller_id": per_event(label("Caller ", 5245, n_incidents)),
        "opened_by": maybe_missing(per_event(label("Opened by  ", 208, n_incidents)), 0.034),
        "opened_at": per_event(dates(opened)),
        "sys_created_by": maybe_missing(per_event(label("Created by ", 186, n_incidents)), 0.375),
        "sys_created_at": maybe_missing(per_event(dates(opened + 420)), 0.375),
        "sys_updated_by": label("Updated by ", 846),
        "sys_updated_at": dates(updated),
        "contact_type": per_event(
            pa.array(
                rng.choice(
                    ["Phone", "Email", "Self service", "IVR"],
                    n_incidents,
                    p=[0.98, 0.01, 0.008, 0.002],
                )
            )
        ),
        "location": per_event(label("Location ", 225, n_incidents)),
        "category": per_event(label("Category ", 59, n_incidents)),
        "subcategory": per_event(label("Subcategory ", 255, n_incidents)),
        "u_symptom": maybe_missing(per_event(label("Symptom ", 526, n_incidents)), 0.233),
        "cmdb_ci": maybe_missing(label("cmdb_ci ", 51), 0.997),
        "impact": per_event(pa.array(np.array(codes)[impact])),
        "urgency": per_event(pa.array(np.array(codes)[impact])),
        "priority": per_event(pa.array(np.array(PRIORITIES)[priority])),
        "assignment_group": maybe_missing(per_event(label("Group ", 79, n_incidents)), 0.10),
        "assigned_to": maybe_missing(per_event(label("Resolver ", 235, n_incidents)), 0.194),
        "knowledge": booleans(rng.random(n_events) < 0.16),
        "u_priority_confirmation": booleans(rng.random(n_events) < 0.3),
        "notify": pa.array(np.where(rng.random(n_events) < 0.999, "Do Not Notify", "Send Email")),
        "problem_id": maybe_missing(label("Problem ID  ", 253), 0.984),
        "rfc": maybe_missing(label("CHG000", 9999), 0.993),
        "vendor": maybe_missing(label("Vendor ", 4), 0.998),
        "caused_by": maybe_missing(label("CHG000", 9999), 0.9995),
        "closed_code": maybe_missing(per_event(label("code ", 17, n_incidents)), 0.005),
        "resolved_by": maybe_missing(per_event(label("Resolved by ", 217, n_incidents)), 0.002),
        "resolved_at": maybe_missing(per_event(dates(resolved)), 0.022),
        "closed_at": per_event(dates(closed)),
    }
    out = io.BytesIO()
    pacsv.write_csv(
        pa.table(columns), out, write_options=pacsv.WriteOptions(quoting_style="needed")
    )
    return out.getvalue()


# --- The cache ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheInfo:
    """What the columnar cache holds: recorded in the Parquet file itself."""

    path: str
    source: str
    csv_sha256: str
    zip_sha256: str | None
    matches_uci: bool
    rows: int
    incidents: int
    first_event: str | None
    last_event: str | None
    fetched_at: str
    source_size: int | None = None
    source_mtime_ns: int | None = None
    demo_seed: int | None = None


@dataclass(frozen=True)
class FetchResult:
    """The outcome of `fetch`: the cache and what happened on the way."""

    cache: CacheInfo
    reused: bool
    notes: list[str] = field(default_factory=list)


def cache_path(data_dir: Path) -> Path:
    return data_dir / CACHE_NAME


def read_cache_info(data_dir: Path) -> CacheInfo | None:
    """The cache's metadata, or None when there is no (readable) cache."""
    path = cache_path(data_dir)
    try:
        metadata = pq.read_schema(path).metadata or {}
        return CacheInfo(**json.loads(metadata[CACHE_METADATA_KEY]))
    except (FileNotFoundError, KeyError, TypeError, ValueError, pa.ArrowInvalid, OSError):
        return None


def write_cache(table: pa.Table, raw: RawLog, data_dir: Path, **extra: Any) -> CacheInfo:
    """Write the typed table as Parquet, with its provenance, atomically."""
    path = cache_path(data_dir)
    updated = table["sys_updated_at"]
    first, last = pc.min(updated).as_py(), pc.max(updated).as_py()
    info = CacheInfo(
        path=str(path),
        source=raw.source,
        csv_sha256=raw.csv_sha256,
        zip_sha256=raw.zip_sha256,
        matches_uci=raw.csv_sha256 == UCI_CSV_SHA256,
        rows=table.num_rows,
        incidents=pc.count_distinct(table["number"].cast(pa.string())).as_py(),
        first_event=first.isoformat() if first else None,
        last_event=last.isoformat() if last else None,
        fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    )
    schema_metadata = {CACHE_METADATA_KEY: json.dumps(asdict(info)).encode()}
    with _atomic_file(path) as out:
        pq.write_table(table.replace_schema_metadata(schema_metadata), out)
    return info


# --- fetch -------------------------------------------------------------------------------------


def fetch(
    source: str | None = None,
    *,
    data_dir: Path,
    url: str | None = None,
    force: bool = False,
    demo_seed: int = 0,
    demo_events: int = DEFAULT_DEMO_EVENTS,
    timeout: float = 30.0,
    progress: ProgressCallback | None = None,
) -> FetchResult:
    """Get the event log into the typed cache, reusing the cache when it already holds it.

    `source` is a local .zip/.csv path or "demo"; without it, `url` (else UCI's current URL,
    then its legacy one) is downloaded. The cache is replaced only once the new data has been
    read and validated in full.
    """
    cached = read_cache_info(data_dir)
    if source == DEMO_SOURCE:
        if (
            not force
            and cached
            and cached.source == DEMO_SOURCE
            and cached.demo_seed == demo_seed
            and cached.rows == demo_events
        ):
            return FetchResult(cached, reused=True)
        raw = RawLog(demo_event_log(demo_events, demo_seed), DEMO_SOURCE)
        return FetchResult(
            write_cache(parse_event_log(raw.csv, name="demo"), raw, data_dir, demo_seed=demo_seed),
            reused=False,
        )
    if source is not None:
        return _fetch_local(Path(source).expanduser(), data_dir, cached, force)
    return _fetch_url(url, data_dir, cached, force, timeout, progress)


def _fetch_local(path: Path, data_dir: Path, cached: CacheInfo | None, force: bool) -> FetchResult:
    try:
        stat = path.stat()
    except OSError:
        raise DataError(
            f"{path} does not exist: give a .zip or .csv of the event log, or 'demo'."
        ) from None
    resolved = str(path.resolve())
    if (
        not force
        and cached
        and cached.source == resolved
        and (cached.source_size, cached.source_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    ):
        return FetchResult(cached, reused=True)
    raw = read_local(path)
    raw = RawLog(raw.csv, resolved, raw.csv_name, raw.zip_sha256)
    table = parse_event_log(raw.csv, name=raw.csv_name)
    info = write_cache(
        table, raw, data_dir, source_size=stat.st_size, source_mtime_ns=stat.st_mtime_ns
    )
    return FetchResult(info, reused=False, notes=_difference_note(info))


def _fetch_url(
    url: str | None,
    data_dir: Path,
    cached: CacheInfo | None,
    force: bool,
    timeout: float,
    progress: ProgressCallback | None,
) -> FetchResult:
    candidates = [url] if url else list(UCI_URLS)
    if not force and cached and cached.source in candidates:
        return FetchResult(cached, reused=True)
    # A name of its own, so overlapping fetches cannot delete each other's download.
    download_path = data_dir / f".download-{uuid.uuid4().hex}.zip"
    failures = []
    for candidate in candidates:
        try:
            download(candidate, download_path, timeout=timeout, progress=progress)
        except DownloadError as error:
            failures.append(str(error))
            continue
        try:
            raw = read_zip(download_path.read_bytes(), source=candidate)
            # The CSV's checksum is the content's; a zip recompressed around the same CSV
            # (a different zip checksum) is still UCI's data.
            if url is None and raw.csv_sha256 != UCI_CSV_SHA256:
                raise DataError(
                    f"{candidate} is not the data UCI published (CSV SHA-256 {raw.csv_sha256} "
                    f"instead of {UCI_CSV_SHA256}; zip {raw.zip_sha256}, UCI's "
                    f"{UCI_ZIP_SHA256}): it is corrupted or has changed. "
                    "Use --source PATH for a copy you trust."
                )
            info = write_cache(parse_event_log(raw.csv, name=raw.csv_name), raw, data_dir)
        finally:
            download_path.unlink(missing_ok=True)
        return FetchResult(info, reused=False, notes=_difference_note(info) if url else [])
    raise DownloadError(
        "; ".join(failure.rstrip(".") for failure in failures)
        + ". No data was changed. Work offline with --source demo, "
        "or download the zip yourself and use --source PATH."
    )


def _difference_note(info: CacheInfo) -> list[str]:
    if info.matches_uci:
        return []
    return [
        "note: this data differs from UCI's published file "
        f"(CSV SHA-256 {info.csv_sha256[:12]}…): accepted."
    ]


def ensure_cache(data_dir: Path, source: str | None = None, **fetch_options: Any) -> CacheInfo:
    """The cache for `source`, fetching it first when it is missing or holds other data."""
    cached = read_cache_info(data_dir)
    if source is None and cached is not None:
        return cached
    return fetch(source, data_dir=data_dir, **fetch_options).cache


# --- A trial: batch, target, model, metrics, summary -------------------------------------------


@dataclass
class Batch:
    """A sample of events, the seed that drew it, and the data it came from."""

    frame: pd.DataFrame
    seed: int
    cache: CacheInfo


Model = Callable[[pd.DataFrame], Any]


def heuristic_model(batch: pd.DataFrame) -> np.ndarray:
    """The reference model: higher-priority tickets close faster (hours per priority)."""
    priority = batch["priority"].astype("category")
    # One look-up per label, not per row; the extra last entry is for code -1 (no priority).
    hours = [
        HEURISTIC_HOURS.get(label, HEURISTIC_DEFAULT_HOURS) for label in priority.cat.categories
    ]
    per_code = np.array([*hours, HEURISTIC_DEFAULT_HOURS], dtype=float) * HOUR
    return per_code[priority.cat.codes.to_numpy()]


heuristic_model.columns = ("priority",)  # type: ignore[attr-defined]


def load_model(spec: str) -> Model:
    """`heuristic`, or `package.module:function` naming a callable batch -> seconds."""
    if spec == "heuristic":
        return heuristic_model
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ModelError(f"model {spec!r} is not 'heuristic' or 'package.module:function'.")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import-time failure of the user's module is theirs to fix
        raise ModelError(
            f"model {spec!r} cannot be imported: {type(error).__name__}: {error}."
        ) from None
    model = getattr(module, attribute, None)
    if not callable(model):
        raise ModelError(f"model {spec!r}: {module_name} has no callable {attribute!r}.")
    return model


def model_columns(model: Model) -> Sequence[str] | None:
    """The columns a model reads (its `columns` attribute); None means all of them."""
    wanted = getattr(model, "columns", None)
    return None if wanted is None else tuple(wanted)


def load_batch(
    data_dir: Path, batch_size: int, seed: int | None = None, columns: Sequence[str] | None = None
) -> Batch:
    """`batch_size` events sampled without replacement from the cache, reproducible by seed.

    Only the needed columns are read, and rows are drawn before the conversion to pandas.
    """
    info = read_cache_info(data_dir)
    if info is None:
        raise DataError(f"no data in {data_dir} yet: run `ticketeval fetch` (or `--source demo`).")
    check_batch_size(batch_size, info)
    wanted = None if columns is None else list(dict.fromkeys([*TRIAL_COLUMNS, *columns]))
    seed = secrets.randbits(32) if seed is None else seed
    # Rows in the cache's order: the metrics do not depend on it, and reading is sequential.
    if batch_size == info.rows:
        rows = np.arange(info.rows)  # the whole log; drawing a permutation would double memory
    else:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(info.rows, size=batch_size, replace=False))
    return Batch(_read_rows(cache_path(data_dir), wanted, rows), seed, info)


def _read_rows(path: Path, columns: list[str] | None, rows: np.ndarray) -> pd.DataFrame:
    """The given rows (sorted) of a Parquet file as a DataFrame.

    Read one column at a time, one row group at a time, so memory holds the finished columns
    plus one column's pieces: near the size of the rows wanted, not of the whole log.
    """
    parquet = pq.ParquetFile(path)
    selections: list[tuple[int, pa.Array | None]] = []  # row group, rows in it (None: all)
    first_row = 0
    for group in range(parquet.num_row_groups):
        group_rows = parquet.metadata.row_group(group).num_rows
        start, stop = np.searchsorted(rows, [first_row, first_row + group_rows])
        if stop - start == group_rows:
            selections.append((group, None))
        elif stop > start:
            selections.append((group, pa.array(rows[start:stop] - first_row)))
        first_row += group_rows

    def pieces(name: str) -> Iterator[pa.Table]:
        for group, taken in selections:
            piece = parquet.read_row_group(group, columns=[name])
            yield piece if taken is None else piece.take(taken)

    frame: dict[str, pd.Series] = {}
    for name in columns or parquet.schema_arrow.names:
        arrow_type = parquet.schema_arrow.field(name).type
        if pa.types.is_timestamp(arrow_type) and arrow_type.tz is None:
            # The largest columns: fill one array piece by piece rather than join the pieces
            # and copy them, which would hold the column twice.
            values = np.empty(len(rows), dtype=f"datetime64[{arrow_type.unit}]")
            position = 0
            for piece in pieces(name):
                values[position : position + len(piece)] = piece.column(0).to_numpy()
                position += len(piece)
            frame[name] = pd.Series(values, name=name, copy=False)
        else:
            # Table.to_pandas, not ChunkedArray's (many times slower on chunked dictionaries);
            # it unites each row group's dictionary into one categorical.
            frame[name] = pa.concat_tables(list(pieces(name))).to_pandas()[name]
    return pd.DataFrame(frame, copy=False)


def check_batch_size(batch_size: int, cache: CacheInfo) -> None:
    """Refuse a batch that cannot be drawn without replacement from the cached data."""
    if batch_size < 1:
        raise UsageError(f"the batch size must be at least 1, not {batch_size}.")
    if batch_size > cache.rows:
        raise UsageError(
            f"the batch size {batch_size:,} is larger than the data ({cache.rows:,} events): "
            f"use at most {cache.rows}."
        )


def compute_target(batch: pd.DataFrame) -> pd.Series:
    """Seconds from the event's update to the ticket's close (NaN when either is missing)."""
    # In NumPy: NaT - x is NaT, and NaT / 1 s is NaN; no intermediate Series copies.
    elapsed = batch["closed_at"].to_numpy() - batch["sys_updated_at"].to_numpy()
    return pd.Series(elapsed / np.timedelta64(1, "s"), index=batch.index, name="target")


def predict(model: Model, batch: pd.DataFrame, *, name: str = "model") -> np.ndarray:
    """The model's predictions, checked: one finite number of seconds per row."""
    try:
        raw = model(batch)
    except Exception as error:  # the user's model failing is reported, not a traceback
        raise ModelError(f"model {name!r} raised {type(error).__name__}: {error}.") from None
    try:
        predictions = np.asarray(raw, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ModelError(f"model {name!r} returned {type(raw).__name__}, not numbers.") from None
    if len(predictions) != len(batch):
        raise ModelError(
            f"model {name!r} returned {len(predictions)} predictions for {len(batch)} rows."
        )
    if not np.isfinite(predictions).all():
        raise ModelError(f"model {name!r} returned NaN or infinite predictions.")
    return predictions


def score_metric(
    name: str, target: pd.Series | np.ndarray, predictions: np.ndarray
) -> float | None:
    """One metric over the rows that have a target; None where it is undefined."""
    from sklearn.metrics import (
        mean_absolute_error,
        mean_squared_error,
        median_absolute_error,
        r2_score,
    )

    functions = {
        "MAE": mean_absolute_error,
        "MedAE": median_absolute_error,
        "MSE": mean_squared_error,
        "R2": r2_score,
        "RMSE": lambda y, p: math.sqrt(mean_squared_error(y, p)),
    }
    y, p = _scored(target, predictions)
    if not len(y) or (name == "R2" and len(y) < 2):
        return None
    return _plain(functions[name](y, p))


def _scored(target: pd.Series | np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, ...]:
    """Target and predictions of the rows that have a target (views, not copies, when all do:
    on a large batch each copy costs as much memory as the batch's target)."""
    y = np.asarray(target, dtype=float)
    p = np.asarray(predictions, dtype=float)
    keep = ~np.isnan(y)
    return (y, p) if keep.all() else (y[keep], p[keep])


def _with_rmse(metrics: dict[str, float | None]) -> dict[str, float | None]:
    """The metrics plus RMSE, the square root of the MSE already computed."""
    mse = metrics.get("MSE")
    return {**metrics, "RMSE": None if mse is None else _plain(math.sqrt(mse))}


def _plain(value: Any) -> float | None:
    """A JSON-safe float: numpy scalars become floats, NaN and infinity become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def summarize(
    *,
    trial_id: str,
    batch: Batch,
    target: pd.Series,
    predictions: np.ndarray,
    metrics: dict[str, float | None],
    model: str,
    runner: str,
) -> dict[str, Any]:
    """The trial summary: the seed's shape, extended with context, baseline and per priority."""
    y = np.asarray(target, dtype=float)
    scored = ~np.isnan(y)
    y_scored = y if scored.all() else y[scored]
    metrics = _with_rmse(metrics)
    baseline_mae = None
    if len(y_scored):
        baseline_mae = _plain(np.abs(y_scored - np.median(y_scored)).mean())
    skill = None
    if metrics.get("MAE") is not None and baseline_mae:
        skill = _plain(1 - metrics["MAE"] / baseline_mae)
    by_priority: dict[str, Any] = {}
    priority = batch.frame["priority"].astype("category")
    codes = priority.cat.codes.to_numpy()
    labels = {code: str(label) for code, label in enumerate(priority.cat.categories)}
    for code, label in sorted({**labels, -1: "(none)"}.items(), key=lambda item: item[1]):
        rows = codes == code
        if not rows.any():
            continue
        by_priority[label] = {
            "num_obs": int((rows & scored).sum()),
            **_with_rmse(
                {name: score_metric(name, y[rows], predictions[rows]) for name in METRIC_NAMES}
            ),
        }
    cache = batch.cache
    return {
        "id": trial_id,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {
            "num_obs": len(batch.frame),
            "num_scored": int(scored.sum()),
            "num_dropped": int((~scored).sum()),
            "metrics": metrics,
            "target": {
                stat: _plain(getattr(np, stat)(y_scored)) if len(y_scored) else None
                for stat in ("mean", "median", "min", "max")
            },
            "baseline": {"MAE": baseline_mae, "skill": skill},
            "by_priority": by_priority,
        },
        "model": model,
        "seed": batch.seed,
        "batch_size": len(batch.frame),
        "runner": runner,
        "source": {
            "name": cache.source,
            "csv_sha256": cache.csv_sha256,
            "matches_uci": cache.matches_uci,
            "rows": cache.rows,
        },
    }


def new_trial_id() -> str:
    return str(uuid.uuid4())


def evaluate(
    *, data_dir: Path, batch_size: int, seed: int | None = None, model: str = "heuristic"
) -> dict[str, Any]:
    """Score `model` on one batch from the cache, without Prefect or Dask."""
    model_function = load_model(model)
    batch = load_batch(data_dir, batch_size, seed, model_columns(model_function))
    target = compute_target(batch.frame)
    predictions = predict(model_function, batch.frame, name=model)
    # From here on only the priority is read (by the summary): free the other columns before
    # the metrics make their temporaries.
    batch = replace(batch, frame=batch.frame[["priority"]])
    metrics = {name: score_metric(name, target, predictions) for name in METRIC_NAMES}
    return summarize(
        trial_id=new_trial_id(),
        batch=batch,
        target=target,
        predictions=predictions,
        metrics=metrics,
        model=model,
        runner="evaluate",
    )


# --- The trial history -------------------------------------------------------------------------

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    runner TEXT,
    model TEXT,
    batch_size INTEGER,
    seed INTEGER,
    num_obs INTEGER,
    mae REAL,
    medae REAL,
    mse REAL,
    r2 REAL,
    rmse REAL,
    summary TEXT NOT NULL
)
"""


@contextlib.contextmanager
def _history(path: Path) -> Iterator[sqlite3.Connection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A generous busy timeout lets overlapping cron runs wait for each other's write lock.
    connection = sqlite3.connect(path, timeout=60.0)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(HISTORY_SCHEMA)
        yield connection
    finally:
        connection.close()


def append_history(path: Path, summary: dict[str, Any]) -> None:
    """Record one trial, in one transaction."""
    metrics = summary["data"]["metrics"]
    row = (
        summary["id"], summary["timestamp"], summary.get("runner"), summary.get("model"),
        summary.get("batch_size"), summary.get("seed"), summary["data"]["num_obs"],
        metrics.get("MAE"), metrics.get("MedAE"), metrics.get("MSE"), metrics.get("R2"),
        metrics.get("RMSE"), json.dumps(summary),
    )  # fmt: skip
    with _history(path) as connection, connection:
        connection.execute("INSERT INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", row)


@dataclass(frozen=True)
class HistoryRow:
    """One trial as the history shows it, with its regression flag."""

    id: str
    timestamp: str
    runner: str | None
    model: str | None
    batch_size: int | None
    num_obs: int | None
    MAE: float | None
    MedAE: float | None
    MSE: float | None
    R2: float | None
    RMSE: float | None
    worse_than_median: bool


def read_history(
    path: Path, *, last: int | None = None, threshold: float = 0.25
) -> list[HistoryRow]:
    """Trials oldest first; each flagged when its MAE exceeds the median of the earlier ones
    by more than `threshold` (a fraction: 0.25 = 25 %)."""
    if not path.exists():
        return []
    with _history(path) as connection:
        rows = connection.execute(
            "SELECT id, timestamp, runner, model, batch_size, num_obs, mae, medae, mse, r2, rmse "
            "FROM trials ORDER BY timestamp, rowid"
        ).fetchall()
    out: list[HistoryRow] = []
    previous: list[float] = []
    for row in rows:
        mae = row[6]
        flagged = (
            bool(previous)
            and mae is not None
            and mae > statistics.median(previous) * (1 + threshold)
        )
        out.append(HistoryRow(*row, worse_than_median=flagged))
        if mae is not None:
            previous.append(mae)
    return out[-last:] if last else out


# --- The Prefect flow --------------------------------------------------------------------------
# Each task is a thin wrapper over the functions above, so `evaluate` and the flow share one copy
# of the logic. They are module-level functions so Dask workers unpickle them by reference.


def _settings_data_dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return data_dir
    from ticketeval.settings import load_settings

    return load_settings().data_dir


def _task_get_ticket_data_batch(
    batch_size: int, seed: int | None, model: str, data_dir: Path | None
) -> Batch:
    directory = _settings_data_dir(data_dir)
    if read_cache_info(directory) is None:
        ensure_cache(directory)  # on a fresh remote worker; run-local fetches on the client first
    return load_batch(directory, int(batch_size), seed, model_columns(load_model(model)))


def _task_get_target(batch: Batch) -> pd.Series:
    return compute_target(batch.frame)


def _task_predict(batch: Batch, model: str) -> np.ndarray:
    return predict(load_model(model), batch.frame, name=model)


def _task_get_trial_summary(
    trial_id: str,
    batch: Batch,
    actuals: pd.Series,
    predictions: np.ndarray,
    metrics: dict[str, float | None],
    model: str,
    runner: str,
) -> dict[str, Any]:
    return summarize(
        trial_id=trial_id,
        batch=batch,
        target=actuals,
        predictions=predictions,
        metrics=metrics,
        model=model,
        runner=runner,
    )


def _task_write_trial_summary(trial_summary: dict[str, Any], history_path: Path | None) -> None:
    import prefect

    prefect.context.get("logger").info(json.dumps(trial_summary))
    if history_path is None:
        from ticketeval.settings import load_settings

        history_path = load_settings().history_file
    append_history(history_path, trial_summary)


def flow_name(username: str) -> str:
    return f"{username}-ticket-model-evaluation-dask"


def build_flow(
    *,
    name: str,
    batch_size: int,
    seed: int | None = None,
    model: str = "heuristic",
    data_dir: Path | None = None,
    history_path: Path | None = None,
    schedule_hours: float | None = None,
    runner: str = "prefect",
) -> Flow:
    """The seed's pipeline as a Prefect 1 flow. Nothing runs until the flow is run.

    `data_dir`/`history_path` of None mean "the settings of the machine the task runs on",
    which is what a flow registered with Prefect Cloud needs.
    """
    from datetime import timedelta

    from prefect import Flow, Parameter, task
    from prefect.schedules import IntervalSchedule

    schedule = None
    if schedule_hours is not None:
        if schedule_hours <= 0:
            raise UsageError(f"the schedule interval must be positive, not {schedule_hours} hours.")
        schedule = IntervalSchedule(interval=timedelta(hours=schedule_hours))
    get_trial_id = task(new_trial_id, name="get_trial_id")
    get_ticket_data_batch = task(
        _task_get_ticket_data_batch,
        name="get_ticket_data_batch",
        max_retries=2,
        retry_delay=timedelta(seconds=2),
    )
    get_target = task(_task_get_target, name="get_target")
    predict_task = task(_task_predict, name="predict")
    evaluate_model = task(score_metric, name="evaluate_model")
    get_trial_summary = task(_task_get_trial_summary, name="get_trial_summary")
    write_trial_summary = task(_task_write_trial_summary, name="write_trial_summary")

    with Flow(name, schedule=schedule) as flow:
        batch_size_parameter = Parameter("batch-size", default=batch_size)
        seed_parameter = Parameter("seed", default=seed)
        model_parameter = Parameter("model", default=model)
        trial_id = get_trial_id()
        batch = get_ticket_data_batch(
            batch_size_parameter, seed_parameter, model_parameter, data_dir
        )
        actuals = get_target(batch)
        predictions = predict_task(batch, model_parameter)
        metrics = {
            name: evaluate_model(
                name, actuals, predictions, task_args={"name": f"evaluate_model[{name}]"}
            )
            for name in METRIC_NAMES
        }
        summary = get_trial_summary(
            trial_id, batch, actuals, predictions, metrics, model_parameter, runner
        )
        write_trial_summary(summary, history_path)
    return flow


@dataclass(frozen=True)
class ClusterOptions:
    """Where run-local runs: a new LocalCluster, or an existing scheduler at `address`."""

    workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | None = None
    address: str | None = None
    verbose: bool = False


def default_threads() -> int:
    """A thread per core, at most 4: the flow never has more than four tasks to run at once."""
    return max(1, min(4, os.cpu_count() or 1))


def check_scheduler_address(address: str, timeout: float = 5.0) -> None:
    """Refuse a malformed or unreachable scheduler address before Dask waits on it."""
    parsed = urlparse(address)
    if parsed.scheme not in ("tcp", "tls") or not parsed.hostname or not parsed.port:
        raise UsageError(
            f"--address {address!r} is not a Dask scheduler address like tcp://host:8786."
        )
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=timeout).close()
    except OSError as error:
        raise DownloadError(
            f"cannot reach the Dask scheduler at {address}: {error.strerror or error}."
        ) from None


def prefect_logs_to_stderr() -> None:
    """Prefect 1 logs to stdout, which Dask workers share with the CLI and which `--json`
    keeps for JSON: move those logs to stderr (here, and on each worker)."""
    import prefect.utilities.logging  # noqa: F401  (configures the "prefect" logger)

    for handler in logging.getLogger("prefect").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def warm_up_worker() -> None:
    """Import what the tasks need, on a worker, while the client builds the flow."""
    import sklearn.metrics  # noqa: F401  (the metric tasks' import, the slowest)

    prefect_logs_to_stderr()


def _warm_up(client: Any) -> None:
    # Only a head start: on Ctrl-C the client closes under it, and the error it then gets must
    # not be printed as a thread's traceback.
    with contextlib.suppress(Exception):
        client.run(warm_up_worker)


def run_flow(
    build_flow: Callable[[], Flow],
    cluster: ClusterOptions,
    *,
    on_cluster: Callable[[str, str | None], None] | None = None,
) -> dict[str, Any]:
    """Start (or connect to) the Dask cluster, build the flow, run it with Prefect's
    DaskExecutor, and return the trial summary.

    The cluster starts first and its workers import the tasks' libraries while this process
    imports Prefect and builds the flow. By default one worker process runs a thread per core:
    the tasks are small, and each extra process costs a second or more of start-up and imports.
    A LocalCluster started here is always closed (also on failure and Ctrl-C); a scheduler given
    by address is left running. A failed task becomes one FlowError naming it.
    """
    from distributed import Client, LocalCluster

    # Harmless: the LocalCluster and Prefect's executor both watch worker status.
    warnings.filterwarnings("ignore", "Scheduler already contains a plugin", UserWarning)
    if not cluster.verbose:
        # On Ctrl-C, gathers still pending die with the client, which asyncio logs as
        # "Task exception was never retrieved" tracebacks.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        address = cluster.address
        if address is None:
            if cluster.workers is not None and cluster.workers < 1:
                raise UsageError(f"--workers must be at least 1, not {cluster.workers}.")
            local = LocalCluster(
                n_workers=cluster.workers or 1,
                threads_per_worker=cluster.threads_per_worker or default_threads(),
                memory_limit=cluster.memory_limit or "auto",
                dashboard_address="127.0.0.1:0",
                host="127.0.0.1",
                # Dask's warnings and errors while it shuts down (killing a busy worker, a
                # heartbeat to a closed scheduler on Ctrl-C, with a traceback) are noise in cron
                # mail; a failed task is reported by the flow's state, in one line.
                silence_logs=logging.INFO if cluster.verbose else logging.CRITICAL,
            )
            stack.callback(local.close)
            address, dashboard = local.scheduler_address, local.dashboard_link
        else:
            check_scheduler_address(address)
            dashboard = None
        client = stack.enter_context(Client(address, set_as_default=False))
        if on_cluster:
            on_cluster(address, dashboard or client.dashboard_link)
        warm_up = threading.Thread(target=_warm_up, args=(client,), daemon=True)
        warm_up.start()
        flow = build_flow()
        from prefect.executors import DaskExecutor

        prefect_logs_to_stderr()
        warm_up.join()
        state = flow.run(executor=DaskExecutor(address=address))
    return _flow_summary(flow, state)


def _flow_summary(flow: Flow, state: Any) -> dict[str, Any]:
    task_states = state.result if isinstance(state.result, dict) else {}
    for task in flow.sorted_tasks():
        task_state = task_states.get(task)
        if task_state is not None and task_state.is_failed():
            error = task_state.result
            if isinstance(error, TicketevalError):
                failure = FlowError(f"task {task.name!r} failed: {error}")
                failure.exit_code = error.exit_code
                raise failure
            detail = (
                f"{type(error).__name__}: {error}"
                if isinstance(error, BaseException)
                else task_state.message
            )
            raise FlowError(f"task {task.name!r} failed: {detail}")
    if not state.is_successful():
        raise FlowError(f"the flow did not succeed: {state.message}")
    summary_task = flow.get_tasks(name="get_trial_summary")[0]
    return task_states[summary_task].result
