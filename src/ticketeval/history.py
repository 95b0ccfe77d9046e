"""The trial history: where trials are recorded, and what happens when it cannot be reached.

Owns the history URL (`sqlite:///absolute/path.sqlite` or `postgresql://user:pw@host/db`), the
`trials` table and its migrations (identical on SQLite and PostgreSQL), turning a trial summary
into rows (one per model), idempotent writes, the local spool that keeps a trial whose history
could not be reached and sends it with the next trial that gets through, reading trials back
(identically on both backends), and the regression flag.

sqlite3, psycopg and platformdirs are imported inside the functions that use them, so that
`import ticketeval.history` stays cheap. URLs appear in messages only through `redact_url`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from ticketeval.errors import (
    HistoryError,
    HistoryUnavailable,
    HistoryUnreachable,
    SummaryError,
    TicketevalError,
    UsageError,
)

# --- URLs and places ---------------------------------------------------------------------------

SQLITE_SCHEME = "sqlite"
POSTGRES_SCHEMES = ("postgresql", "postgres")
HISTORY_FILE = "history.sqlite"
SPOOL_DIR = "spool"
DEFAULT_BUSY_TIMEOUT = 60.0  # seconds a write waits for another process's lock
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to reach a PostgreSQL server


def redact_url(url: str) -> str:
    """The URL with its password (in the user part or a `password=` parameter) as `***`."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:***@{host}"
        query = parts.query
        if netloc == parts.netloc and "password" not in query.lower():
            return url  # nothing secret: as written (urlunsplit would drop sqlite's "//")
        if "password" in query.lower():
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*"
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # unparseable (a bad port, say): show nothing that could be a secret
        scheme = url.partition(":")[0]
        return f"{scheme}://***" if "@" in url or "password" in url.lower() else url


def without_password(url: str) -> str:
    """The URL with no password at all, for a place that is not secret (a registered flow's
    parameter): the machine that uses it supplies the password (PGPASSWORD, ~/.pgpass)."""
    redacted = redact_url(url)
    if redacted == url:
        return url
    parts = urlsplit(redacted)
    userinfo, _, host = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}@{host}" if userinfo else parts.netloc
    pairs = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(pairs), parts.fragment))


def _secrets_of(url: str) -> list[str]:
    """The password of `url` in every spelling a message could contain."""
    found: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    """The first line of `text`, with the URL's password removed (a driver could echo it)."""
    line = " ".join(text.strip().partition("\n")[0].split()).rstrip(".")
    for secret in _secrets_of(url):
        line = line.replace(secret, "***")
    return line


def sqlite_url(path: Path) -> str:
    """The history URL of a SQLite file (made absolute)."""
    return f"{SQLITE_SCHEME}://{quote(str(Path(path).expanduser().absolute()))}"


def default_data_dir() -> Path:
    """The user's data directory for ticketeval (not the cache: users empty caches)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("ticketeval", appauthor=False))


def default_history_url(data_dir: Path | None = None) -> str:
    """`history.sqlite` in `data_dir`, by default the user's data directory."""
    return sqlite_url((data_dir or default_data_dir()) / HISTORY_FILE)


def default_spool_dir(data_dir: Path | None = None) -> Path:
    """Where trials wait when the history cannot be reached: `<data dir>/spool`."""
    return (data_dir or default_data_dir()) / SPOOL_DIR


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

    old = legacy_dir / HISTORY_FILE
    new = (data_dir or default_data_dir()) / HISTORY_FILE
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
            f"could not move the trial history from {old} to {new}: {_scrub(str(error), '')}"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        old.with_name(old.name + suffix).unlink(missing_ok=True)
    return f"Moved the trial history from {old} to {new} (a cache directory is no place for it)."


@dataclass(frozen=True)
class HistoryURL:
    """A parsed history URL: `backend` is "sqlite" or "postgresql"."""

    url: str
    backend: str
    path: Path | None = None  # the SQLite file

    @property
    def redacted(self) -> str:
        return redact_url(self.url)


def parse_history_url(url: str) -> HistoryURL:
    """Check a history URL; a wrong one is a UsageError naming the forms that work."""
    forms = "sqlite:///absolute/path.sqlite or postgresql://user:password@host:5432/database"
    try:
        parts = urlsplit(url.strip())
    except ValueError as error:
        reason = _scrub(str(error), url)
        raise UsageError(
            f"the history URL {redact_url(url)} is invalid ({reason}): use {forms}."
        ) from None
    scheme = parts.scheme.lower()
    if scheme == SQLITE_SCHEME:
        if parts.netloc or not parts.path.startswith("/") or parts.path.rstrip("/") == "":
            raise UsageError(
                f"the history URL {redact_url(url)} needs an absolute file path after "
                f"'sqlite://': use {forms}."
            )
        # sqlite:////abs (SQLAlchemy's spelling of an absolute path) means the same file.
        path = Path("/" + unquote(parts.path).lstrip("/"))
        return HistoryURL(url=url.strip(), backend="sqlite", path=path)
    if scheme in POSTGRES_SCHEMES:
        if not parts.hostname and "host=" not in parts.query:
            raise UsageError(f"the history URL {redact_url(url)} names no host: use {forms}.")
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise UsageError(f"the history URL {redact_url(url)} has an invalid port.") from None
        return HistoryURL(url=url.strip(), backend="postgresql")
    raise UsageError(f"the history URL {redact_url(url)} is not supported: use {forms}.")


# --- Summaries to rows -------------------------------------------------------------------------

SCHEMA_VERSION = 2  # 1: the single-table SQLite history of releases up to now (no meta table)
META_TABLE = "ticketeval_meta"

# (name, kind): kind is the portable type, mapped to each backend's below.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "key"), ("model", "key"), ("timestamp", "text!"), ("runner", "text"),
    ("batch_size", "int"), ("seed", "text"), ("num_obs", "int"), ("num_scored", "int"),
    ("mae", "real"), ("medae", "real"), ("mse", "real"), ("r2", "real"), ("rmse", "real"),
    ("mae_low", "real"), ("mae_high", "real"), ("medae_low", "real"), ("medae_high", "real"),
    ("rmse_low", "real"), ("rmse_high", "real"), ("baseline_mae", "real"), ("skill", "real"),
    ("data_sha256", "text"), ("source", "text"), ("closed_from", "text"), ("closed_to", "text"),
    ("run_id", "text"), ("period_label", "text"), ("results_path", "text"), ("alert", "int"),
    ("summary", "text!"),
)  # fmt: skip
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
# Seeds go up to 2**64-1, past SQLite's and PostgreSQL's signed 64-bit integers: stored as text.
_METRICS = {"mae": "MAE", "medae": "MedAE", "mse": "MSE", "r2": "R2", "rmse": "RMSE"}
_INTERVALS = {"mae": "MAE", "medae": "MedAE", "rmse": "RMSE"}

# The table releases up to now wrote (schema version 1), kept to recognise and migrate it.
V1_COLUMNS = (
    "id", "timestamp", "runner", "model", "batch_size", "seed", "num_obs",
    "mae", "medae", "mse", "r2", "rmse", "summary",
)  # fmt: skip


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None  # NaN is undefined: null, as in summaries


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def utc_iso(value: Any) -> str:
    """An ISO timestamp in UTC (a naive one is taken as UTC), so text order is time order."""
    if not isinstance(value, str):
        raise SummaryError(f"the trial's timestamp {value!r} is not an ISO 8601 string.")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SummaryError(f"the trial's timestamp {value!r} is not ISO 8601.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _period_bound(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    with contextlib.suppress(ValueError):
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            return moment.astimezone(UTC).isoformat()
    return text  # a date, or a naive timestamp: kept as written


def _metric_columns(block: Mapping[str, Any]) -> dict[str, Any]:
    metrics = block.get("metrics") or {}
    intervals = block.get("metrics_ci") or {}
    baseline = block.get("baseline") or {}
    row: dict[str, Any] = {
        "num_obs": _int(block.get("num_obs")),
        "num_scored": _int(block.get("num_scored")),
        "baseline_mae": _float(baseline.get("MAE")),
        "skill": _float(baseline.get("skill")),
    }
    for column, name in _METRICS.items():
        row[column] = _float(metrics.get(name))
    for column, name in _INTERVALS.items():
        bounds = intervals.get(name)
        low, high = bounds if isinstance(bounds, list | tuple) and len(bounds) == 2 else (None,) * 2
        row[f"{column}_low"], row[f"{column}_high"] = _float(low), _float(high)
    return row


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None: summaries hold null for undefined values."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def rows_from_summary(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The history rows of one trial summary: one per model it scored, keyed by (id, model).

    Several models scored on one batch come as `"models": {name: data block}`; otherwise the
    trial's `"model"` and `"data"` make the one row. Optional keys (period, intervals, run,
    results, alert) give NULL when absent. Raises SummaryError when id, timestamp or the
    model's data are missing.
    """
    if not isinstance(summary, Mapping) or not summary.get("id"):
        raise SummaryError("a trial summary needs an 'id'.")
    blocks = summary.get("models")
    if not isinstance(blocks, Mapping) or not blocks:
        if not summary.get("model") or not isinstance(summary.get("data"), Mapping):
            raise SummaryError(f"trial {summary['id']}: the summary has no 'model' and 'data'.")
        blocks = {summary["model"]: summary["data"]}
    source = summary.get("source")
    source = source if isinstance(source, Mapping) else {"name": source}
    period = summary.get("period") or {}
    alert = summary.get("alert")
    flagged = alert.get("flagged") if isinstance(alert, Mapping) else alert
    common = {
        "id": str(summary["id"]),
        "timestamp": utc_iso(summary.get("timestamp")),
        "runner": _text(summary.get("runner")),
        "batch_size": _int(summary.get("batch_size")),
        "seed": _text(_int(summary.get("seed"))),
        "data_sha256": _text(source.get("csv_sha256")),
        "source": _text(source.get("name")),
        "closed_from": _period_bound(period.get("closed_from")),
        "closed_to": _period_bound(period.get("closed_to")),
        "run_id": _text(summary.get("run_id")),
        "period_label": _text(summary.get("period_label")),
        "results_path": _text(summary.get("results_path")),
        "alert": None if flagged is None else int(bool(flagged)),
        "summary": json.dumps(_finite(summary), allow_nan=False, default=str),
    }
    rows = []
    for model, block in blocks.items():
        if not isinstance(block, Mapping):
            raise SummaryError(f"trial {summary['id']}: model {model!r} has no data block.")
        rows.append({**common, "model": str(model), **_metric_columns(block)})
    return [{name: row[name] for name in COLUMN_NAMES} for row in rows]


def _rows_from_v1(old: Sequence[Any]) -> list[dict[str, Any]]:
    """The rows of one trial of a version-1 history: from its summary JSON where it parses,
    else from the old columns (so no trial is dropped)."""
    record = dict(zip(V1_COLUMNS, old, strict=True))
    with contextlib.suppress(ValueError, TypeError, SummaryError):
        summary = json.loads(record["summary"])
        rows = rows_from_summary(summary)
        timestamp = rows[0]["timestamp"]
        with contextlib.suppress(SummaryError):
            timestamp = utc_iso(record["timestamp"])
        for row in rows:  # the columns as stored are what users saw: they win over the JSON
            row.update(id=str(record["id"]), timestamp=timestamp, summary=record["summary"])
        return rows
    row = dict.fromkeys(COLUMN_NAMES)
    row.update(
        id=str(record["id"]),
        model=str(record["model"] or ""),
        timestamp=record["timestamp"],
        runner=record["runner"],
        batch_size=_int(record["batch_size"]),
        seed=_text(_int(record["seed"])),
        num_obs=_int(record["num_obs"]),
        summary=record["summary"],
        **{column: _float(record[column]) for column in _METRICS},
    )
    with contextlib.suppress(SummaryError):
        row["timestamp"] = utc_iso(record["timestamp"])
    return [row]


# --- Rows read back ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    """One model's result in one trial, as the history holds it."""

    id: str
    model: str
    timestamp: str
    runner: str | None
    batch_size: int | None
    seed: int | None
    num_obs: int | None
    num_scored: int | None
    MAE: float | None
    MedAE: float | None
    MSE: float | None
    R2: float | None
    RMSE: float | None
    MAE_low: float | None
    MAE_high: float | None
    MedAE_low: float | None
    MedAE_high: float | None
    RMSE_low: float | None
    RMSE_high: float | None
    baseline_MAE: float | None
    skill: float | None
    data_sha256: str | None
    source: str | None
    closed_from: str | None
    closed_to: str | None
    run_id: str | None
    period_label: str | None
    results_path: str | None
    alert: bool | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> HistoryRow:
        """From a row of the `trials` table (as `rows_from_summary` makes or a query returns)."""
        return cls(
            id=row["id"],
            model=row["model"],
            timestamp=row["timestamp"],
            runner=row["runner"],
            batch_size=_int(row["batch_size"]),
            seed=_int(row["seed"]),
            num_obs=_int(row["num_obs"]),
            num_scored=_int(row["num_scored"]),
            MAE=_float(row["mae"]),
            MedAE=_float(row["medae"]),
            MSE=_float(row["mse"]),
            R2=_float(row["r2"]),
            RMSE=_float(row["rmse"]),
            MAE_low=_float(row["mae_low"]),
            MAE_high=_float(row["mae_high"]),
            MedAE_low=_float(row["medae_low"]),
            MedAE_high=_float(row["medae_high"]),
            RMSE_low=_float(row["rmse_low"]),
            RMSE_high=_float(row["rmse_high"]),
            baseline_MAE=_float(row["baseline_mae"]),
            skill=_float(row["skill"]),
            data_sha256=row["data_sha256"],
            source=row["source"],
            closed_from=row["closed_from"],
            closed_to=row["closed_to"],
            run_id=row["run_id"],
            period_label=row["period_label"],
            results_path=row["results_path"],
            alert=None if row["alert"] is None else bool(row["alert"]),
        )


def _order_key(row: HistoryRow) -> tuple[str, str, str]:
    # Python compares code points, as SQLite's BINARY and PostgreSQL's "C" collation do.
    return (row.timestamp, row.id, row.model)


def to_json(rows: Sequence[HistoryRow]) -> str:
    """The rows as a JSON array: the same trials give the same bytes on every backend."""
    return json.dumps([asdict(row) for row in rows], allow_nan=False)


def flag_regressions(
    rows: Sequence[HistoryRow], *, threshold: float = 0.25, window: int | None = 10
) -> list[bool]:
    """For each row (in the given order, oldest first), whether its MAE is a regression.

    A row is compared only with EARLIER rows of the SAME model on the SAME data (equal,
    non-null `data_sha256`) that have an MAE: its reference, the last `window` of those (all of
    them when `window` is None). A row without a reference, an MAE or a `data_sha256` is never
    flagged. Otherwise:

    - when the row has an interval (`MAE_low`): flagged iff `MAE_low` is above the reference's
      upper bound, the median of the reference trials' `MAE_high` (their MAE when they have no
      interval). The row's interval then lies entirely above the reference's; one that overlaps
      it is not flagged, so noise the intervals already show is never called a regression, and
      one earlier trial with a wide interval cannot hide every later regression.
    - when it has none (trials recorded before intervals existed): flagged iff its MAE exceeds
      the median of the reference MAEs by more than `threshold` (0.25 = 25 %).

    Pass the whole history (then keep the last rows you show): a row's reference is only what
    precedes it in `rows`.
    """
    history: dict[tuple[str, str], list[HistoryRow]] = {}
    flags: list[bool] = []
    for row in rows:
        if row.MAE is None or row.data_sha256 is None:
            flags.append(False)
            continue
        earlier = history.setdefault((row.model, row.data_sha256), [])
        reference = earlier[-window:] if window else earlier
        flagged = False
        if reference:
            if row.MAE_low is not None:
                upper = statistics.median(
                    r.MAE_high if r.MAE_high is not None else r.MAE  # type: ignore[misc]
                    for r in reference
                )
                flagged = row.MAE_low > upper
            else:
                median = statistics.median(r.MAE for r in reference if r.MAE is not None)
                flagged = row.MAE > median * (1 + threshold)
        flags.append(flagged)
        earlier.append(row)
    return flags


# --- Backends ----------------------------------------------------------------------------------


class _Connection(Protocol):
    def execute(self, sql: Any, parameters: Any = ...) -> Any: ...
    def cursor(self) -> Any: ...
    def close(self) -> None: ...


_TYPES = {
    # SQLite: REAL and INTEGER read back as float and int; TEXT compares by bytes (BINARY).
    "sqlite": {"key": "TEXT NOT NULL", "text!": "TEXT NOT NULL", "text": "TEXT", "int": "INTEGER",
               "real": "REAL"},
    # PostgreSQL: "C" collation so ORDER BY is byte order, as in SQLite, whatever the database's
    # locale; BIGINT because counts are not bounded by 2**31.
    "postgresql": {"key": 'TEXT COLLATE "C" NOT NULL', "text!": 'TEXT COLLATE "C" NOT NULL',
                   "text": 'TEXT COLLATE "C"', "int": "BIGINT", "real": "DOUBLE PRECISION"},
}  # fmt: skip
_ADVISORY_LOCK = 0x7469636B  # "tick": serialises schema changes between PostgreSQL clients


def _create_statements(backend: str, table: str = "trials") -> list[str]:
    types = _TYPES[backend]
    columns = ",\n    ".join(f"{name} {types[kind]}" for name, kind in COLUMNS)
    return [
        f"CREATE TABLE {table} (\n    {columns},\n    PRIMARY KEY (id, model)\n)",
        f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ]


_INDEXES = (
    "CREATE INDEX IF NOT EXISTS trials_by_time ON trials (timestamp, id, model)",
    "CREATE INDEX IF NOT EXISTS trials_by_run ON trials (run_id)",
)


class HistoryStore:
    """An open history. Use `open_history(url)`; close it (or use it in `with`).

    Every method turns the driver's errors into HistoryError / HistoryUnreachable with one line
    that names the history by its redacted URL.
    """

    def __init__(
        self,
        target: HistoryURL,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        create: bool = True,
    ) -> None:
        self.target = target
        self.backend = target.backend
        self.busy_timeout = busy_timeout
        self.connect_timeout = connect_timeout
        self.read_only = False
        self.version = 0
        self.migrated_trials: int | None = None  # set when this open migrated a legacy history
        self._connection: _Connection | None = None
        with self._errors("open"):
            self._connection = self._connect(create)
            try:
                self.version = self._prepare(create)
            except BaseException:
                self.close()
                raise

    def __repr__(self) -> str:
        return f"HistoryStore({self.target.redacted!r})"

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    @property
    def connection(self) -> _Connection:
        if self._connection is None:
            raise HistoryError(f"the history {self.target.redacted} is closed.")
        return self._connection

    # -- connecting and errors

    def _connect(self, create: bool) -> _Connection:
        if self.backend == "sqlite":
            return self._connect_sqlite(create)
        import psycopg

        connection = psycopg.connect(
            self.target.url,
            connect_timeout=max(1, round(self.connect_timeout)),
            autocommit=True,  # transactions are explicit (BEGIN/COMMIT), as with SQLite
            application_name="ticketeval",
        )
        # Waiting for another client's lock is bounded like SQLite's busy timeout.
        connection.execute(f"SET lock_timeout = {int(self.busy_timeout * 1000)}")
        return connection  # type: ignore[return-value]

    def _connect_sqlite(self, create: bool) -> _Connection:
        import sqlite3

        path = self.target.path
        assert path is not None
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        mode = "rwc" if create else "rw"
        try:
            connection = sqlite3.connect(
                f"file:{quote(str(path))}?mode={mode}",
                uri=True,
                timeout=self.busy_timeout,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE for writes
            )
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            # SQLite opens a file it may not write read-only without a word: say so up front.
            self.read_only = path.exists() and not os.access(path, os.W_OK)
            return connection
        except sqlite3.OperationalError:
            if not path.exists() or os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
                raise
        # A file we may only read (its directory too, so SQLite cannot make the WAL index):
        # read it without locks, which is safe only when no WAL holds unmerged pages.
        self.read_only = True
        wal = path.with_name(path.name + "-wal")
        immutable = "&immutable=1" if not wal.exists() or wal.stat().st_size == 0 else ""
        connection = sqlite3.connect(
            f"file:{quote(str(path))}?mode=ro{immutable}", uri=True, isolation_level=None
        )
        connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return connection

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn a driver error into one line naming the history (password redacted)."""
        try:
            yield
        except TicketevalError:
            raise
        except Exception as error:
            raise self._translate(error, action) from None

    def _translate(self, error: Exception, action: str) -> TicketevalError:
        name = self.target.redacted
        text = _scrub(str(error), self.target.url) or type(error).__name__
        if isinstance(error, OSError) and self.backend != "postgresql":
            return HistoryError(f"cannot {action} the history {name}: {text}.")
        if self.backend == "sqlite":
            lowered = text.lower()
            if "locked" in lowered or "busy" in lowered:
                return HistoryError(
                    f"the history {name} stayed locked by another process for more than "
                    f"{self.busy_timeout:g} s."
                )
            if "readonly" in lowered or "read-only" in lowered:
                return HistoryError(
                    f"the history {name} is read-only: trials can be read but not recorded "
                    "(check the file's permissions, or set TICKETEVAL_HISTORY_URL)."
                )
            if "disk is full" in lowered:
                return HistoryError(f"the disk holding the history {name} is full.")
            if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
                return HistoryError(
                    f"the history {name} is not a SQLite database or is corrupt ({text}): "
                    "restore it from a backup, or move it aside to start a new one."
                )
            return HistoryError(f"cannot {action} the history {name}: {text}.")
        import psycopg

        if isinstance(error, psycopg.OperationalError):
            # The server's reason is its last clause ("Connection refused", "password
            # authentication failed for user ..."); libpq's preamble repeats host and port.
            reason = text.rpartition(" failed: ")[2] if " failed: " in text else text
            reason = reason.removeprefix("FATAL: ").strip()
            if "password" in reason.lower() or "authentication" in reason.lower():
                return HistoryUnreachable(f"the history server {name} refused the login: {reason}.")
            return HistoryUnreachable(f"cannot reach the history server {name}: {reason}.")
        if isinstance(error, psycopg.errors.LockNotAvailable):
            return HistoryError(
                f"the history {name} stayed locked by another client for more than "
                f"{self.busy_timeout:g} s."
            )
        if isinstance(error, psycopg.Error):
            first = str(error).strip().splitlines()[0] if str(error).strip() else text
            return HistoryError(
                f"cannot {action} the history {name}: {_scrub(first, self.target.url)}."
            )
        return HistoryError(f"cannot {action} the history {name}: {text}.")

    # -- SQL helpers

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.backend == "postgresql" else sql

    def _execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        return self.connection.execute(self._sql(sql), tuple(parameters))

    @contextlib.contextmanager
    def _transaction(self, *, exclusive: bool = False) -> Iterator[None]:
        """One transaction; `exclusive` takes the write lock at once (SQLite's BEGIN IMMEDIATE,
        a PostgreSQL advisory lock), so a check made inside stays true until COMMIT."""
        if self.backend == "sqlite":
            self._execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
        else:
            self._execute("BEGIN")
            if exclusive:
                self._execute(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self._execute("ROLLBACK")
            raise
        self._execute("COMMIT")

    def _tables(self) -> set[str]:
        if self.backend == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        else:
            sql = (
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        return {str(name) for (name,) in self._execute(sql).fetchall()}

    def _columns(self, table: str) -> list[str]:
        if self.backend == "sqlite":
            return [str(row[1]) for row in self._execute(f"PRAGMA table_info({table})").fetchall()]
        sql = (
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = ? ORDER BY ordinal_position"
        )
        return [str(name) for (name,) in self._execute(sql, (table,)).fetchall()]

    # -- schema

    def _read_version(self) -> int:
        """The schema version on disk: 0 for none yet, 1 for the legacy table, else the meta's."""
        tables = self._tables()
        name = self.target.redacted
        if META_TABLE in tables:
            row = self._execute(
                f"SELECT value FROM {META_TABLE} WHERE key = 'schema_version'"
            ).fetchone()
            version = _int(row[0]) if row else None
            if version is None:
                raise HistoryError(f"the history {name} has no valid schema version in its meta.")
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"the history {name} was written by a newer ticketeval (schema {version}; "
                    f"this one knows up to {SCHEMA_VERSION}): upgrade ticketeval to use it."
                )
            missing = set(COLUMN_NAMES) - set(self._columns("trials"))
            if version == SCHEMA_VERSION and missing:
                raise HistoryError(
                    f"the history {name} lacks columns {', '.join(sorted(missing))}: it was "
                    "altered outside ticketeval."
                )
            return version
        if "trials" in tables:
            columns = self._columns("trials")
            if tuple(columns) != V1_COLUMNS:
                raise HistoryError(
                    f"{name} has a 'trials' table that is not a ticketeval history (columns: "
                    f"{', '.join(columns)}): point TICKETEVAL_HISTORY_URL elsewhere."
                )
            return 1
        if self.backend == "sqlite" and tables:
            # A SQLite file is the history's own; one holding other tables is someone else's.
            raise HistoryError(
                f"{name} is a SQLite database but not a ticketeval history (tables: "
                f"{', '.join(sorted(tables))}): point TICKETEVAL_HISTORY_URL elsewhere."
            )
        return 0

    def _prepare(self, create: bool) -> int:
        version = self._read_version()
        # A legacy history is migrated by any use that may write it, a read included; a new
        # one is created only by a write (reading an empty database leaves it empty).
        if version == SCHEMA_VERSION or self.read_only or (version == 0 and not create):
            return version
        if self.backend == "sqlite":
            mode = self._execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                # Readers never block the writer, and overlapping runs queue on the lock.
                self._execute("PRAGMA journal_mode=WAL")
        with self._transaction(exclusive=True):
            version = self._read_version()  # another process may have done it meanwhile
            if version == 0:
                for statement in _create_statements(self.backend):
                    self._execute(statement)
            elif version == 1:
                self.migrated_trials = self._migrate_from_v1()
            if version < SCHEMA_VERSION:
                for statement in _INDEXES:
                    self._execute(statement)
                self._execute(
                    f"INSERT INTO {META_TABLE} (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
        return SCHEMA_VERSION

    def _migrate_from_v1(self) -> int:
        """Version 1 → 2 inside the caller's transaction: a new table holding every old trial,
        its new columns derived from the summary JSON, then swapped in for the old one."""
        old = self._execute(
            f"SELECT {', '.join(V1_COLUMNS)} FROM trials ORDER BY timestamp, id"
        ).fetchall()
        statements = _create_statements(self.backend, table="trials_v2")
        for statement in statements:
            self._execute(statement)
        for record in old:
            self._insert(_rows_from_v1(record), table="trials_v2")
        kept = self._execute("SELECT COUNT(DISTINCT id) FROM trials_v2").fetchone()[0]
        if kept != len({record[0] for record in old}):  # never swap in a table missing trials
            raise HistoryError(
                f"migrating the history {self.target.redacted} kept {kept} of {len(old)} "
                "trials; it was left as it was."
            )
        self._execute("DROP TABLE trials")
        self._execute("ALTER TABLE trials_v2 RENAME TO trials")
        return int(kept)

    # -- writing

    def _insert(self, rows: Sequence[Mapping[str, Any]], table: str = "trials") -> int:
        placeholders = ", ".join("?" * len(COLUMN_NAMES))
        sql = self._sql(
            f"INSERT INTO {table} ({', '.join(COLUMN_NAMES)}) VALUES ({placeholders}) "
            "ON CONFLICT (id, model) DO NOTHING"
        )
        inserted = 0
        cursor = self.connection.cursor()
        for row in rows:
            cursor.execute(sql, tuple(row[name] for name in COLUMN_NAMES))
            inserted += max(cursor.rowcount, 0)
        return inserted

    def _require_writable(self) -> None:
        if self.read_only:
            raise HistoryError(
                f"the history {self.target.redacted} is read-only: trials can be read but not "
                "recorded (check the file's permissions, or set TICKETEVAL_HISTORY_URL)."
            )

    def append(self, summary: Mapping[str, Any]) -> int:
        """Record one trial (one row per model) in one transaction; return the rows added.

        Idempotent on (id, model): writing a trial again (a retried task) adds nothing.
        """
        rows = rows_from_summary(summary)
        self._require_writable()
        if self.version == 0:  # opened for reading before anything was written
            with self._errors("create"):
                self.version = self._prepare(create=True)
        with self._errors("write to"), self._transaction(exclusive=self.backend == "sqlite"):
            return self._insert(rows)

    # -- reading

    def read(
        self, *, model: str | None = None, last: int | None = None, run_id: str | None = None
    ) -> list[HistoryRow]:
        """Rows ordered by timestamp, id, model; filtered by model and run; the last `last`."""
        with self._errors("read"):
            if self.version == 0:
                return []
            if self.version == 1:  # a legacy file we may not migrate (read-only)
                old = self._execute(f"SELECT {', '.join(V1_COLUMNS)} FROM trials").fetchall()
                rows = [HistoryRow.from_row(r) for record in old for r in _rows_from_v1(record)]
                rows = [
                    row
                    for row in sorted(rows, key=_order_key)
                    if (model is None or row.model == model)
                    and (run_id is None or row.run_id == run_id)
                ]
                return rows[-last:] if last else rows
            return self._read_v2(model=model, last=last, run_id=run_id)

    def _read_v2(
        self, *, model: str | None, last: int | None, run_id: str | None
    ) -> list[HistoryRow]:
        selected = [name for name in COLUMN_NAMES if name != "summary"]
        conditions, parameters = [], []
        for column, value in (("model", model), ("run_id", run_id)):
            if value is not None:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT {', '.join(selected)} FROM trials{where}"
        if last:
            sql = (
                f"SELECT * FROM ({sql} ORDER BY timestamp DESC, id DESC, model DESC LIMIT ?) "
                "AS recent"
            )
            parameters.append(int(last))
        sql += " ORDER BY timestamp, id, model"
        records = self._execute(sql, parameters).fetchall()
        return [HistoryRow.from_row(dict(zip(selected, record, strict=True))) for record in records]

    def summaries(self) -> list[dict[str, Any]]:
        """Every stored summary, oldest first (to copy a history to another backend)."""
        with self._errors("read"):
            if self.version == 0:
                return []
            records = self._execute("SELECT DISTINCT timestamp, id, summary FROM trials").fetchall()
        return [json.loads(summary) for _, _, summary in sorted(records)]


def open_history(
    url: str,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    create: bool = True,
) -> HistoryStore:
    """Open the history at `url`: migrated when it is a legacy one that can be written,
    created when it does not exist yet and `create` (else it is created by the first append).

    Raises UsageError for a URL of another form, HistoryUnreachable when the server cannot be
    reached or refuses the login, HistoryError when the history cannot be used.
    """
    return HistoryStore(
        parse_history_url(url),
        busy_timeout=busy_timeout,
        connect_timeout=connect_timeout,
        create=create,
    )


def read_trials(
    url: str,
    *,
    model: str | None = None,
    last: int | None = None,
    run_id: str | None = None,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> list[HistoryRow]:
    """The recorded rows, ordered by timestamp, id, model; the same on every backend.

    `model` and `run_id` (a backtest's rows) filter; `last` keeps the last N rows. A history
    that does not exist yet reads as empty and is not created; a legacy one is migrated when
    it can be written, read as it is when it cannot.
    """
    target = parse_history_url(url)
    if target.backend == "sqlite" and target.path is not None and not target.path.exists():
        return []
    with HistoryStore(
        target, busy_timeout=busy_timeout, connect_timeout=connect_timeout, create=False
    ) as store:
        return store.read(model=model, last=last, run_id=run_id)


# --- The spool: nothing lost -------------------------------------------------------------------


def _spool_name(summary: Mapping[str, Any]) -> str:
    # Named by time then id, so sorted names are the order trials ran in; the same trial
    # spooled twice lands on the same file.
    stamp = datetime.fromisoformat(utc_iso(summary.get("timestamp"))).strftime("%Y%m%dT%H%M%S%fZ")
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", str(summary["id"]))[:100]
    return f"{stamp}-{safe_id}.json"


def spool_trial(summary: Mapping[str, Any], spool_dir: Path) -> Path:
    """Write the trial to the spool atomically (a temporary name, fsync, then rename)."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    final = spool_dir / _spool_name(summary)
    temporary = spool_dir / f".{final.name}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(_finite(summary), handle, allow_nan=False, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return final


def spooled_files(spool_dir: Path) -> list[Path]:
    """The spooled trials, oldest first."""
    if not spool_dir.is_dir():
        return []
    return sorted(path for path in spool_dir.glob("*.json") if not path.name.startswith("."))


def pending_spool(spool_dir: Path) -> int:
    """How many trials wait in the spool for the history to be reachable."""
    return len(spooled_files(spool_dir))


@dataclass(frozen=True)
class SpoolResult:
    sent: int = 0
    rejected: list[Path] = field(default_factory=list)  # unreadable files, renamed *.rejected


def _send_spool(store: HistoryStore, spool_dir: Path, sent_so_far: list[int]) -> SpoolResult:
    """Send every spooled trial, each in its own transaction, deleting its file once committed.

    A crash between the commit and the delete leaves a file whose trial is already recorded;
    sending it again adds nothing (the write is idempotent), so that is harmless.
    """
    rejected = []
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
                rejected.append(rejected_path)
            continue
        store.append(summary)
        path.unlink(missing_ok=True)
        sent_so_far[0] += 1
    return SpoolResult(sent=sent_so_far[0], rejected=rejected)


@dataclass(frozen=True)
class RecordOutcome:
    """What `record_trial` did: recorded in the history, or kept in the spool (and why)."""

    trial_id: str
    history: str  # the redacted URL
    recorded: bool
    spooled: bool
    reason: str | None = None  # one line, why the history could not be reached
    spool_file: Path | None = None
    sent_from_spool: int = 0  # earlier spooled trials sent before this one
    pending: int = 0  # trials still waiting in the spool
    rejected: list[Path] = field(default_factory=list)

    @property
    def message(self) -> str:
        """One line for the user."""
        if self.recorded:
            line = f"Recorded trial {self.trial_id} in {self.history}."
            if self.sent_from_spool:
                line += f" Sent {self.sent_from_spool} spooled trial(s) first."
        else:
            line = (
                f"Trial {self.trial_id} was not recorded ({self.reason}); it is spooled in "
                f"{self.spool_file} ({self.pending} waiting) and will be sent with the next "
                "trial that reaches the history."
            )
        if self.rejected:
            line += f" {len(self.rejected)} unreadable spool file(s) set aside as *.rejected."
        return line

    def raise_if_spooled(self) -> None:
        """Raise HistoryUnavailable (exit code 7) when the trial only reached the spool."""
        if self.spooled:
            raise HistoryUnavailable(self.message)


def record_trial(
    summary: Mapping[str, Any],
    url: str,
    spool_dir: Path,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> RecordOutcome:
    """Record a trial so that it is never lost.

    Trials waiting in `spool_dir` are sent first, then this one. When the history cannot be
    reached or used (server down, login refused, disk full, locked for longer than
    `busy_timeout`, read-only, newer schema...) the trial goes to the spool instead and the
    outcome says so with the reason. Raises SummaryError for a malformed summary, and
    HistoryError only when the spool cannot be written either.
    """
    rows_from_summary(summary)  # a malformed summary would never be accepted: fail now
    trial_id = str(summary["id"])
    sent = [0]
    try:
        target = parse_history_url(url)
        with HistoryStore(
            target, busy_timeout=busy_timeout, connect_timeout=connect_timeout
        ) as store:
            spool = _send_spool(store, spool_dir, sent)
            store.append(summary)
    except (HistoryError, UsageError) as error:
        try:
            spool_file = spool_trial(summary, spool_dir)
        except OSError as spool_error:
            raise HistoryError(
                f"trial {trial_id} is lost: {error} And the spool {spool_dir} cannot be "
                f"written either: {spool_error}."
            ) from None
        return RecordOutcome(
            trial_id=trial_id,
            history=redact_url(url),
            recorded=False,
            spooled=True,
            reason=str(error).rstrip("."),
            spool_file=spool_file,
            sent_from_spool=sent[0],
            pending=pending_spool(spool_dir),
        )
    return RecordOutcome(
        trial_id=trial_id,
        history=target.redacted,
        recorded=True,
        spooled=False,
        sent_from_spool=spool.sent,
        pending=pending_spool(spool_dir),
        rejected=spool.rejected,
    )


def flush_spool(url: str, spool_dir: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> int:
    """Send the spooled trials now (without a new trial); return how many were sent."""
    sent = [0]
    with open_history(url, busy_timeout=busy_timeout) as store:
        _send_spool(store, spool_dir, sent)
    return sent[0]


def copy_history(from_url: str, to_url: str) -> int:
    """Copy every trial of one history into another (e.g. a local file into a team's server);
    return the rows added. Idempotent: copying again adds nothing."""
    with open_history(from_url, create=False) as source:
        summaries = source.summaries()
    added = 0
    with open_history(to_url) as target:
        for summary in summaries:
            added += target.append(summary)
    return added
