"""The history's databases: connecting to SQLite or PostgreSQL, the `trials` table and its
migrations (identical on both), idempotent writes and ordered reads, and each driver's errors
turned into one line that never shows the password.

sqlite3 and psycopg are imported inside the functions that use them, so that importing this
module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from ticketeval.errors import HistoryError, HistoryUnreachable, TicketevalError
from ticketeval.files import output_target
from ticketeval.history.rows import (
    COLUMN_NAMES,
    COLUMNS,
    META_TABLE,
    SCHEMA_VERSION,
    V1_COLUMNS,
    V3_COLUMNS,
    HistoryRow,
    order_key,
    population,
    rows_from_summary,
    rows_from_v1,
    to_int,
)
from ticketeval.history.urls import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    HistoryURL,
    scrub,
)


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


# The settings that choose where the SQLite history is, named when its path is refused.
HISTORY_CHOICE = "TICKETEVAL_HISTORY_URL, TICKETEVAL_HISTORY_PATH or TICKETEVAL_HISTORY_DIR"


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
        return connection

    def _connect_sqlite(self, create: bool) -> _Connection:
        import sqlite3

        path = self.target.path
        assert path is not None
        # A device, FIFO, socket or directory in the history's place is refused, not opened.
        path = output_target(path, chosen_by=HISTORY_CHOICE)
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
        text = scrub(str(error), self.target.url) or type(error).__name__
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
                f"cannot {action} the history {name}: {scrub(first, self.target.url)}."
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
            version = to_int(row[0]) if row else None
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

    def _use_wal(self) -> None:
        """WAL mode: readers never block the writer, and overlapping runs queue on the lock.

        Switching needs the only open connection, and SQLite answers "locked" at once rather
        than wait (no busy timeout there): when several processes create the history at the
        same moment, retry until one of them has switched it, within the busy timeout.
        """
        import sqlite3

        deadline = time.monotonic() + self.busy_timeout
        while True:
            mode = self._execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() == "wal":
                return
            try:
                self._execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _prepare(self, create: bool) -> int:
        version = self._read_version()
        # A legacy history is migrated by any use that may write it, a read included; a new
        # one is created only by a write (reading an empty database leaves it empty).
        if version == SCHEMA_VERSION or self.read_only or (version == 0 and not create):
            return version
        if self.backend == "sqlite":
            self._use_wal()
        with self._transaction(exclusive=True):
            version = self._read_version()  # another process may have done it meanwhile
            if version == 0:
                for statement in _create_statements(self.backend):
                    self._execute(statement)
            elif version == 1:
                self._migrate_from_v1()
            elif version == 2:
                self._migrate_from_v2()
            if version < SCHEMA_VERSION:
                for statement in _INDEXES:
                    self._execute(statement)
                self._execute(
                    f"INSERT INTO {META_TABLE} (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
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
            self._insert(rows_from_v1(record), table="trials_v2")
        kept = self._execute("SELECT COUNT(DISTINCT id) FROM trials_v2").fetchone()[0]
        if kept != len({record[0] for record in old}):  # never swap in a table missing trials
            raise HistoryError(
                f"migrating the history {self.target.redacted} kept {kept} of {len(old)} "
                "trials; it was left as it was."
            )
        self._execute("DROP TABLE trials")
        self._execute("ALTER TABLE trials_v2 RENAME TO trials")
        return int(kept)

    def _migrate_from_v2(self) -> None:
        """Version 2 → 3 inside the caller's transaction: the stream and population columns
        added. The population is derived from each trial's summary; the stream is left NULL
        (those trials named none): `--since-last` matches them by checksum or source."""
        types = _TYPES[self.backend]
        present = set(self._columns("trials"))
        kinds = dict(COLUMNS)
        for name in V3_COLUMNS:
            if name not in present:
                self._execute(f"ALTER TABLE trials ADD COLUMN {name} {types[kinds[name]]}")
        for trial_id, summary in self._execute("SELECT id, summary FROM trials").fetchall():
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                self._execute(
                    self._sql("UPDATE trials SET population = ? WHERE id = ?"),
                    (population(json.loads(summary)), trial_id),
                )

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
                rows = [HistoryRow.from_row(r) for record in old for r in rows_from_v1(record)]
                rows = [
                    row
                    for row in sorted(rows, key=order_key)
                    if (model is None or row.model == model)
                    and (run_id is None or row.run_id == run_id)
                ]
                return rows[-last:] if last else rows
            return self._read_v2(model=model, last=last, run_id=run_id)

    def _read_v2(
        self, *, model: str | None, last: int | None, run_id: str | None
    ) -> list[HistoryRow]:
        selected = [name for name in COLUMN_NAMES if name != "summary"]
        if self.version < SCHEMA_VERSION:  # a version-2 history we may not migrate (read-only)
            present = set(self._columns("trials"))
            selected = [name for name in selected if name in present]
        conditions: list[str] = []
        parameters: list[str | int] = []
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
