"""The local columnar cache of the event log (Parquet with its provenance), and `fetch`."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ticketeval.data.demo import DEFAULT_DEMO_EVENTS, DEMO_SOURCE, demo_event_log
from ticketeval.data.parsing import parse_event_log
from ticketeval.data.sources import (
    UCI_CSV_SHA256,
    UCI_URLS,
    UCI_ZIP_SHA256,
    ProgressCallback,
    RawLog,
    ZipLimits,
    download,
    read_local,
    read_zip,
    unreadable_source,
)
from ticketeval.errors import DataError, DownloadError
from ticketeval.files import atomic_file, file_kind, shorten, unwritable

if TYPE_CHECKING:
    from ticketeval.settings import Settings

CACHE_NAME = "events.parquet"
# The demo data's own cache, so trying the demo never replaces the real data a nightly run
# scores; read only when `--source demo` is given.
DEMO_CACHE_NAME = "demo-events.parquet"
CACHE_METADATA_KEY = b"ticketeval"
DEMO_NOTE = (
    "note: demo data is synthetic; it is cached apart from the real data and used only with "
    "--source demo."
)


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


def cache_path(data_dir: Path, *, demo: bool = False) -> Path:
    """The cache file in `data_dir`: the real data's, or with `demo` the demo data's."""
    return data_dir / (DEMO_CACHE_NAME if demo else CACHE_NAME)


def read_cache_info(data_dir: Path, *, demo: bool = False) -> CacheInfo | None:
    """The cache's metadata, or None when nothing is cached yet.

    A file that is there but cannot be read is a DataError saying how to fetch it again, never
    taken for "no cache". The path is where the cache is now (a data directory may have been
    moved or copied since it was written).
    """
    path = cache_path(data_dir, demo=demo)
    with contextlib.suppress(OSError):  # then reading it says what is wrong
        # Never opened when it is not a regular file: a FIFO would block, a device never end.
        kind = file_kind(os.stat(path).st_mode)
        if kind is not None:
            raise unreadable_cache(path, f"it is {kind}, not a file", demo=demo)
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, pa.ArrowException) as error:
        raise unreadable_cache(path, error, demo=demo) from None
    try:
        info = CacheInfo(**json.loads((schema.metadata or {})[CACHE_METADATA_KEY]))
    except (KeyError, TypeError, ValueError):
        raise unreadable_cache(path, "it has no ticketeval provenance", demo=demo) from None
    return replace(info, path=str(path))


def unreadable_cache(path: Path, error: BaseException | str, *, demo: bool = False) -> DataError:
    """The error for a cache file that is there but cannot be read, with the way out."""
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        detail = error.strerror
    command = "ticketeval fetch --source demo --force" if demo else "ticketeval fetch --force"
    return DataError(
        f"the cache {shorten(path)} cannot be read ({detail}): run `{command}` to fetch the "
        "data again."
    )


def _reusable(data_dir: Path, *, demo: bool = False) -> CacheInfo | None:
    """The cache `fetch` may reuse: readable to the last page, else None (it is replaced)."""
    try:
        info = read_cache_info(data_dir, demo=demo)
        if info is None:
            return None
        parquet = pq.ParquetFile(info.path, page_checksum_verification=True)
        if parquet.metadata.num_rows != info.rows:
            return None
        for group in range(parquet.num_row_groups):
            parquet.read_row_group(group)
    except (DataError, OSError, ValueError, pa.ArrowException):
        return None
    return info


def write_cache(
    table: pa.Table, raw: RawLog, data_dir: Path, *, demo: bool = False, **extra: Any
) -> CacheInfo:
    """Write the typed table as Parquet, with its provenance and page checksums, atomically."""
    path = cache_path(data_dir, demo=demo)
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
    with atomic_file(path) as out, unwritable(path):
        pq.write_table(
            table.replace_schema_metadata(schema_metadata), out, write_page_checksum=True
        )
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
    retry_backoff: float = 0.5,
    progress: ProgressCallback | None = None,
    limits: ZipLimits | None = None,
) -> FetchResult:
    """Get the event log into the typed cache, reusing the cache when it already holds it.

    `source` is a local .zip/.csv path or "demo"; without it, `url` (else UCI's current URL,
    then its legacy one) is downloaded. The cache is replaced only once the new data has been
    read and validated in full.
    """
    if source == DEMO_SOURCE:
        return _fetch_demo(data_dir, force, demo_seed, demo_events)
    cached = None if force else _reusable(data_dir)
    if source is not None:
        return _fetch_local(Path(source).expanduser(), data_dir, cached, force, limits)
    return _fetch_url(url, data_dir, cached, force, timeout, retry_backoff, progress, limits)


def _fetch_demo(data_dir: Path, force: bool, demo_seed: int, demo_events: int) -> FetchResult:
    cached = None if force else _reusable(data_dir, demo=True)
    if cached and (cached.demo_seed, cached.rows) == (demo_seed, demo_events):
        return FetchResult(cached, reused=True, notes=[DEMO_NOTE])
    raw = RawLog(demo_event_log(demo_events, demo_seed), DEMO_SOURCE)
    table = parse_event_log(raw.csv, name="demo")
    info = write_cache(table, raw, data_dir, demo=True, demo_seed=demo_seed)
    return FetchResult(info, reused=False, notes=[DEMO_NOTE])


def _fetch_local(
    path: Path,
    data_dir: Path,
    cached: CacheInfo | None,
    force: bool,
    limits: ZipLimits | None = None,
) -> FetchResult:
    try:
        stat = path.stat()
    except OSError as error:
        raise unreadable_source(path, error) from None
    resolved = str(path.resolve())
    if (
        not force
        and cached
        and cached.source == resolved
        and (cached.source_size, cached.source_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    ):
        return FetchResult(cached, reused=True)
    raw = read_local(path, limits)
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
    retry_backoff: float,
    progress: ProgressCallback | None,
    limits: ZipLimits | None = None,
) -> FetchResult:
    candidates = [url] if url else list(UCI_URLS)
    # UCI's data is reused whichever way it came (a download, or a local copy of the zip).
    if cached and (cached.source in candidates or (url is None and cached.matches_uci)):
        return FetchResult(cached, reused=True)
    # A name of its own, so overlapping fetches cannot delete each other's download.
    download_path = data_dir / f".download-{uuid.uuid4().hex}.zip"
    failures = []
    for candidate in candidates:
        try:
            download(
                candidate,
                download_path,
                timeout=timeout,
                retry_backoff=retry_backoff,
                progress=progress,
            )
        except DownloadError as error:
            failures.append(str(error))
            continue
        try:
            raw = read_zip(download_path.read_bytes(), source=candidate, limits=limits)
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


def ensure_cache(settings: Settings, source: str | None = None) -> FetchResult:
    """The cache for `source`, fetched with the settings' URL, timeout and retries when it is
    missing or holds other data; the real data's cache when no source is named (never the demo
    data's: that is read only with `source="demo"`). A cache that is there but unreadable is a
    DataError, not a reason to download.

    The one way every command and every flow task (also on a remote worker) gets its data.
    """
    if source is None:
        cached = read_cache_info(settings.data_dir)
        if cached is not None:
            return FetchResult(cached, reused=True)
    return fetch(
        source,
        data_dir=settings.data_dir,
        url=settings.data_url,
        timeout=settings.timeout,
        retry_backoff=settings.retry_backoff,
        limits=zip_limits(settings),
    )


def zip_limits(settings: Settings) -> ZipLimits:
    """The zip limits the settings give (TICKETEVAL_MAX_CSV_BYTES, TICKETEVAL_MAX_ZIP_RATIO)."""
    return ZipLimits(settings.max_csv_bytes, settings.max_zip_ratio)
