"""The trial history: every trial recorded, read back with its regression flag."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def last_period_end(path: Path, *, model: str, data_sha256: str) -> str | None:
    """Where the latest trial of `model` on this data with a period ended (ISO), or None."""
    if not path.exists():
        return None
    with _history(path) as connection:
        summaries = connection.execute("SELECT summary FROM trials").fetchall()
    ends = []
    for (text,) in summaries:
        summary = json.loads(text)
        end = (summary.get("period") or {}).get("closed_to")
        source = summary.get("source") or {}
        if end and summary.get("model") == model and source.get("csv_sha256") == data_sha256:
            ends.append(end)
    return max(ends, default=None)
