"""The trial history: durable, transactional, and safe under overlapping runs."""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid
from pathlib import Path

from ticketeval import history


def summary(mae: float | None, timestamp: str = "2026-01-01T00:00:00+00:00") -> dict:
    metrics = {"MAE": mae, "MedAE": 1.0, "MSE": 2.0, "R2": 0.5, "RMSE": 1.4}
    return {
        "id": str(uuid.uuid4()),
        "timestamp": timestamp,
        "runner": "test",
        "model": "heuristic",
        "batch_size": 10,
        "seed": 1,
        "data": {"num_obs": 10, "metrics": metrics},
    }


def test_append_and_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "history.sqlite"
    for day, mae in enumerate([100.0, 110.0, 90.0], start=1):
        history.append_history(path, summary(mae, f"2026-01-0{day}T00:00:00+00:00"))
    rows = history.read_history(path)
    assert [row.MAE for row in rows] == [100.0, 110.0, 90.0]
    assert [row.MAE for row in history.read_history(path, last=2)] == [110.0, 90.0]


def test_a_trial_worse_than_the_median_of_the_earlier_ones_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    for day, mae in enumerate([100.0, 120.0, 80.0, 124.0, 126.0, None], start=1):
        history.append_history(path, summary(mae, f"2026-01-0{day}T00:00:00+00:00"))
    flags = [row.worse_than_median for row in history.read_history(path, threshold=0.25)]
    # Medians of the earlier trials: -, 100, 110, 100, 110, ... ; 126 > 110 * 1.25 is false.
    assert flags == [False, False, False, False, False, False]
    flags = [row.worse_than_median for row in history.read_history(path, threshold=0.2)]
    assert flags == [False, False, False, True, False, False]


def test_reading_a_missing_history_creates_nothing(tmp_path: Path) -> None:
    assert history.read_history(tmp_path / "none.sqlite") == []
    assert not (tmp_path / "none.sqlite").exists()


def append_many(path: str, count: int, start: multiprocessing.synchronize.Event) -> None:
    start.wait()
    for _ in range(count):
        history.append_history(Path(path), summary(1.0))


def test_concurrent_appends_from_many_processes_all_land(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=append_many, args=(str(path), 25, start)) for _ in range(8)]
    for worker in workers:
        worker.start()
    start.set()  # all eight write at once
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert len(history.read_history(path)) == 8 * 25
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT COUNT(DISTINCT id) FROM trials").fetchone() == (200,)
