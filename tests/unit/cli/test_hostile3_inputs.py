"""Issue 21, inputs: what used to be a traceback, a hang or a silent wrong result is one line
with its exit code (or a counted, reported fact): --every beyond dates, a damaged cache page
under train, model file metadata of the wrong shape, predictions whose errors overflow, too
many workers, UTC offsets, negative times to close, backtest given two models, train --quiet
and --source demo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.helpers import csv_bytes, csv_rows, expect_error, invoke
from ticketeval.data.cache import cache_path
from ticketeval.errors import ExitCode
from ticketeval.scoring.model_file import TrainedModel, TrainingResult, model_bytes

# --- Tracebacks --------------------------------------------------------------------------------


@pytest.mark.parametrize("every", ["999999999d", "1000000000d", "36501d"])
def test_an_every_beyond_dates_is_one_line(data_dir: Path, every: str) -> None:
    expect_error(invoke("backtest", "--every", every), 2, "--every", "36,500d")


def test_train_on_a_damaged_cache_page_is_one_line(data_dir: Path) -> None:
    path = cache_path(data_dir)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = b"\xff" * 2000  # a page, not the footer
    path.write_bytes(bytes(data))
    expect_error(invoke("train", "--out", "m.skops"), 3, "cannot be read", "fetch --force")
    assert not Path("m.skops").exists()


@pytest.fixture
def trained_model(demo_training: TrainingResult) -> TrainedModel:
    """The session's demo model (only read: each test changes a copy of its metadata)."""
    return demo_training.model


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"versions": "1.0"}, "versions"),
        ({"training": {"first_closed_at": "garbage", "last_closed_at": None}}, "training"),
        ({"category_maps": {"priority": [1, 2]}}, "category_maps"),
        ({"loss": "hinge"}, "loss"),
    ],
)
def test_model_metadata_of_the_wrong_shape_is_refused_on_load(
    data_dir: Path, tmp_path: Path, trained_model: TrainedModel, change: dict, field: str
) -> None:
    metadata = {**trained_model.metadata, **change}
    path = tmp_path / "bad.skops"
    path.write_bytes(model_bytes(TrainedModel(trained_model.estimator, metadata)))
    expect_error(invoke("train", "--show", str(path)), 5, "invalid metadata", field)
    expect_error(invoke("evaluate", "--batch-size", "100", "--model", str(path)), 5, field)


HUGE = """
import numpy as np


def model(batch):
    return np.full(len(batch), 1e308)
"""


def test_predictions_whose_errors_overflow_are_refused(data_dir: Path, model_dir: Path) -> None:
    (model_dir / "huge.py").write_text(HUGE)
    result = invoke("evaluate", "--batch-size", "100", "--model", "huge:model", "--json")
    expect_error(result, 5, "huge:model", "beyond")
    assert "NaN" not in result.stdout
    assert json.loads(invoke("history", "--json").stdout) == []


# --- Hang --------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--workers", "--threads-per-worker"])
def test_too_many_workers_are_refused_at_once(data_dir: Path, option: str) -> None:
    too_many = str(4 * (os.cpu_count() or 1) + 1)
    for command in ("run-local", "backtest"):
        expect_error(invoke(command, option, too_many), 2, option, "at most")


# --- Silent wrong results ----------------------------------------------------------------------


def test_a_utc_offset_is_refused_never_dropped(data_dir: Path) -> None:
    for option in ("--closed-from", "--closed-to"):
        expect_error(invoke("evaluate", option, "2016-05-01T00:00+05:00"), 2, option, "UTC offset")


def test_negative_times_to_close_are_counted_and_said(tmp_path: Path) -> None:
    from ticketeval.data.demo import demo_event_log

    rows = csv_rows(demo_event_log(400, 0))
    header, body = rows[0], rows[1:]
    closed, updated = header.index("closed_at"), header.index("sys_updated_at")
    flipped = 0
    for row in body[:50]:
        if row[closed] not in ("?", "") and row[updated] not in ("?", ""):
            row[closed], row[updated] = row[updated], row[closed]
            flipped += row[closed] != row[updated]
    source = tmp_path / "log.csv"
    source.write_bytes(csv_bytes([header, *body]))
    assert invoke("fetch", "--source", str(source)).exit_code == 0
    result = invoke("evaluate", "--batch-size", "all", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["num_negative"] == flipped > 0
    assert f"{flipped:,} event(s) close before their update" in result.stderr
    dropped = invoke(
        "evaluate", "--batch-size", "all", "--json", env={"TICKETEVAL_NEGATIVE_TARGETS": "drop"}
    )
    assert dropped.exit_code == 0, dropped.output
    kept_data = json.loads(dropped.stdout)["data"]
    assert kept_data["num_negative"] == flipped
    assert kept_data["num_scored"] == data["num_scored"] - flipped


def test_backtest_refuses_two_models(data_dir: Path) -> None:
    expect_error(
        invoke("backtest", "--model", "heuristic", "--model", "other:model"), 2, "one model"
    )


# --- Unclear messages --------------------------------------------------------------------------


def test_train_source_demo_trains_on_the_demo_data(isolated_environment: Path) -> None:
    assert invoke("fetch", "--source", "demo", "--demo-events", "3000").exit_code == 0
    result = invoke("train", "--source", "demo", "--out", "m.skops", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["training"]["events"] > 0


def test_train_quiet_prints_nothing_and_its_model_file_follows_the_umask(data_dir: Path) -> None:
    # One training for both: what --quiet prints, and the mode of the file it writes.
    previous = os.umask(0o022)
    try:
        result = invoke("train", "--quiet", "--out", "m.skops")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""
    assert Path("m.skops").stat().st_mode & 0o777 == 0o644


def test_a_history_end_that_is_not_a_date_names_no_option(data_dir: Path) -> None:
    import sqlite3

    assert invoke("evaluate", "--closed-to", "2016-05-01", "--batch-size", "10").exit_code == 0
    with sqlite3.connect(data_dir / "history.sqlite") as connection:
        connection.execute("UPDATE trials SET closed_to = 'not-a-date'")
    line = expect_error(invoke("evaluate", "--since-last"), ExitCode.DATA, "not-a-date")
    assert "--date" not in line
