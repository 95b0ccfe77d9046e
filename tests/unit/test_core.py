"""The pipeline's pieces against hand-computed values."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.helpers import csv_bytes
from ticketeval.data import batches, cache, demo, parsing, sources
from ticketeval.errors import DataError, ModelError, UsageError
from ticketeval.scoring import metrics, models, trial

HEADER = ",".join(parsing.COLUMNS)


def event_row(**values: str) -> list[str]:
    """One CSV row with plausible defaults, overridden by `values`."""
    row = dict.fromkeys(parsing.COLUMNS, "?")
    row.update(
        number="INC0000045", incident_state="New", active="true", reassignment_count="0",
        reopen_count="0", sys_mod_count="0", made_sla="true", knowledge="false",
        u_priority_confirmation="false", priority="3 - Moderate", opened_at="29/2/2016 01:16",
        sys_updated_at="29/2/2016 01:23", closed_at="5/3/2016 12:00",
    )  # fmt: skip
    row.update(values)
    return [row[column] for column in parsing.COLUMNS]


def event_log(*rows: list[str]) -> bytes:
    """A CSV file of the event log's header and `rows`."""
    return csv_bytes([parsing.COLUMNS, *rows])


def test_parse_types_missing_values_and_unpadded_leap_day() -> None:
    table = parsing.parse_event_log(
        event_log(
            event_row(),
            event_row(sys_mod_count="2", active="false", closed_at="?", priority="4 - Low"),
        )
    )
    assert table.num_rows == 2
    assert table.column_names == list(parsing.COLUMNS)
    frame = table.to_pandas()
    assert frame["sys_updated_at"][0] == pd.Timestamp("2016-02-29 01:23")
    assert frame["opened_at"][0] == pd.Timestamp("2016-02-29 01:16")
    assert frame["closed_at"][0] == pd.Timestamp("2016-03-05 12:00")
    assert pd.isna(frame["closed_at"][1])
    assert pd.isna(frame["resolved_at"][0])  # "?" is missing
    assert frame["active"].tolist() == [True, False]
    assert frame["sys_mod_count"].tolist() == [0, 2]
    assert isinstance(frame["priority"].dtype, pd.CategoricalDtype)
    assert pd.isna(frame["caused_by"][0])


def test_parse_refuses_an_unreadable_date_naming_column_and_value() -> None:
    with pytest.raises(DataError, match=r"'closed_at'.*'2016-03-05 12:00'.*day-first"):
        parsing.parse_event_log(event_log(event_row(closed_at="2016-03-05 12:00")))


def test_parse_names_missing_columns() -> None:
    text = event_log(event_row()).decode().replace("priority", "prio", 1).encode()
    with pytest.raises(DataError, match="lacks the required column.*priority"):
        parsing.parse_event_log(text)


@pytest.mark.parametrize(
    ("content", "message"), [(b"", "is empty"), (HEADER.encode() + b"\n", "no rows")]
)
def test_parse_refuses_empty_input(content: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parsing.parse_event_log(content)


def test_read_zip_finds_the_csv_member_wherever_it_is() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "not the data")
        archive.writestr("nested/incident_event_log.csv", event_log(event_row()))
    raw = sources.read_zip(buffer.getvalue(), source="test.zip")
    assert raw.csv_name == "incident_event_log.csv"
    assert raw.csv == event_log(event_row())
    assert raw.zip_sha256 == hashlib.sha256(buffer.getvalue()).hexdigest()


def test_read_zip_says_an_html_page_is_not_the_data() -> None:
    with pytest.raises(DataError, match="HTML page"):
        sources.read_zip(b"<!DOCTYPE html><html>Not found</html>", source="x.zip")


def test_target_is_seconds_from_update_to_close() -> None:
    frame = pd.DataFrame(
        {
            "sys_updated_at": pd.to_datetime(["2016-02-29 01:00", "2016-03-01 00:00", None]),
            "closed_at": pd.to_datetime(
                ["2016-02-29 02:30", "2016-03-02 00:00", "2016-03-02 00:00"]
            ),
        }
    )
    target = trial.compute_target(frame)
    assert target[:2].tolist() == [5400.0, 86400.0]
    assert np.isnan(target[2])


def test_heuristic_uses_the_real_low_label_and_a_default() -> None:
    frame = pd.DataFrame(
        {"priority": pd.Categorical(["1 - Critical", "2 - High", "3 - Moderate", "4 - Low", None])}
    )
    hours = models.heuristic_model(frame) / 3600
    assert hours.tolist() == [6.0, 24.0, 120.0, 240.0, 180.0]


def test_metrics_match_hand_computed_values() -> None:
    y, p = np.array([0.0, 10.0, 20.0]), np.array([5.0, 10.0, 35.0])
    assert metrics.score_metric("MAE", y, p) == pytest.approx(20 / 3)
    assert metrics.score_metric("MedAE", y, p) == 5.0
    assert metrics.score_metric("MSE", y, p) == pytest.approx(250 / 3)
    assert metrics.score_metric("R2", y, p) == pytest.approx(1 - 250 / 200)
    assert metrics.score_metric("RMSE", y, p) == pytest.approx((250 / 3) ** 0.5)


def test_metrics_skip_rows_without_a_target() -> None:
    y, p = np.array([0.0, np.nan, 20.0]), np.array([5.0, 1e9, 20.0])
    assert metrics.score_metric("MAE", y, p) == 2.5
    assert metrics.score_metric("R2", np.array([np.nan, 3.0]), np.array([1.0, 1.0])) is None


def make_batch(
    priorities: list[str | None], updated: list[str], closed: list[str | None]
) -> batches.Batch:
    frame = pd.DataFrame(
        {
            "priority": pd.Categorical(priorities),
            "sys_updated_at": pd.to_datetime(updated),
            "closed_at": pd.to_datetime(closed),
        }
    )
    info = cache.CacheInfo(
        path="x", source="test", csv_sha256="0" * 64, zip_sha256=None, matches_uci=False,
        rows=len(frame), incidents=1, first_event=None, last_event=None, fetched_at="now",
    )  # fmt: skip
    return batches.Batch(frame, seed=7, cache=info)


def test_summary_has_the_seed_shape_and_counts_dropped_rows() -> None:
    batch = make_batch(
        ["1 - Critical", "3 - Moderate", "3 - Moderate"],
        ["2016-03-01 00:00", "2016-03-01 00:00", "2016-03-01 00:00"],
        ["2016-03-01 06:00", "2016-03-06 00:00", None],
    )
    target = trial.compute_target(batch.frame)
    predictions = models.heuristic_model(batch.frame)
    scores = {
        name: metrics.score_metric(name, target, predictions) for name in metrics.METRIC_NAMES
    }
    summary = trial.summarize(
        trial_id="t", batch=batch, target=target, predictions=predictions, metrics=scores,
        model="heuristic", runner="test",
    )  # fmt: skip
    data = summary["data"]
    assert (summary["id"], summary["seed"], summary["batch_size"]) == ("t", 7, 3)
    assert (data["num_obs"], data["num_scored"], data["num_dropped"]) == (3, 2, 1)
    assert list(data["metrics"]) == ["MAE", "MedAE", "MSE", "R2", "RMSE"]
    # Critical: 6 h predicted, 6 h actual. Moderate: 120 h predicted, 120 h actual.
    assert data["metrics"]["MAE"] == 0.0
    assert data["target"] == {"min": 21600.0, "max": 432000.0, "mean": 226800.0, "median": 226800.0}
    assert data["baseline"]["MAE"] == 205200.0  # |y - median| averaged
    assert data["baseline"]["skill"] == 1.0
    assert data["by_priority"]["1 - Critical"]["num_obs"] == 1
    # Per priority: the events, and those scored (one Moderate has no close time).
    assert data["by_priority"]["3 - Moderate"]["num_obs"] == 2
    assert data["by_priority"]["3 - Moderate"]["num_scored"] == 1


def test_load_batch_samples_without_replacement_reproducibly(demo_cache: Path) -> None:
    first = batches.load_batch(demo_cache, 1_500, seed=3, columns=("number",))
    again = batches.load_batch(demo_cache, 1_500, seed=3, columns=("number",))
    other = batches.load_batch(demo_cache, 1_500, seed=4, columns=("number",))
    assert len(first.frame) == 1_500
    # Without replacement: no event drawn twice (events are unique by number + update).
    keys = first.frame["number"].astype(str) + first.frame["sys_updated_at"].astype(str)
    assert keys.is_unique
    assert first.frame.equals(again.frame)
    assert not first.frame.equals(other.frame)
    # Only the columns the trial and the model read are loaded; a model without a
    # `columns` attribute gets all of them.
    assert set(first.frame.columns) == {*batches.TRIAL_COLUMNS, "number"}
    assert list(batches.load_batch(demo_cache, 5).frame.columns) == list(parsing.COLUMNS)


def test_load_batch_draws_a_fresh_seed_and_records_it(demo_cache: Path) -> None:
    batch = batches.load_batch(demo_cache, 10)
    assert batches.load_batch(demo_cache, 10, seed=batch.seed).frame.equals(batch.frame)


def test_a_batch_larger_than_the_data_names_both_numbers(demo_cache: Path) -> None:
    with pytest.raises(UsageError, match="2,001.*2,000 events"):
        batches.load_batch(demo_cache, 2_001)


def test_models_are_imported_by_spec_and_checked(model_dir: Path) -> None:
    (model_dir / "my_models.py").write_text(
        "def constant(batch):\n    return [3600.0] * len(batch)\n"
        "def short(batch):\n    return [1.0]\n"
        "def words(batch):\n    return ['soon'] * len(batch)\n"
        "def boom(batch):\n    raise RuntimeError('no coffee')\n"
    )
    frame = pd.DataFrame({"priority": ["3 - Moderate", "4 - Low"]})
    assert models.predict(models.load_model("my_models:constant"), frame).tolist() == [3600.0] * 2
    with pytest.raises(ModelError, match="'my_models:short' returned 1 predictions for 2 rows"):
        models.predict(models.load_model("my_models:short"), frame, name="my_models:short")
    with pytest.raises(ModelError, match="returned strings"):
        models.predict(models.load_model("my_models:words"), frame, name="my_models:words")
    with pytest.raises(ModelError, match="raised RuntimeError: no coffee"):
        models.predict(models.load_model("my_models:boom"), frame, name="my_models:boom")
    with pytest.raises(ModelError, match="cannot be imported"):
        models.load_model("no_such_module:f")
    with pytest.raises(ModelError, match="no callable 'missing'"):
        models.load_model("my_models:missing")
    with pytest.raises(ModelError, match="not 'heuristic'"):
        models.load_model("heuristics")


def test_evaluate_scores_a_batch_from_the_cache(demo_cache: Path) -> None:
    summary = trial.score_trial(data_dir=demo_cache, batch_size=500, seed=11)
    assert summary["data"]["num_obs"] == 500
    assert summary["source"]["name"] == "demo"
    assert summary["runner"] == "evaluate"
    assert summary["data"]["metrics"]["MAE"] > 0
    again = trial.score_trial(data_dir=demo_cache, batch_size=500, seed=11)
    assert again["data"] == summary["data"]


# --- The demo data -------------------------------------------------------------------------------


def test_demo_log_has_the_real_schema_and_formats() -> None:
    text = demo.demo_event_log(3_000, seed=5)
    assert text == demo.demo_event_log(3_000, seed=5)
    assert text != demo.demo_event_log(3_000, seed=6)
    frame = pd.read_csv(io.BytesIO(text), dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(parsing.COLUMNS)
    assert len(frame) == 3_000
    assert set(frame["priority"]) == set(parsing.PRIORITIES)
    assert set(frame["active"]) == {"true", "false"}
    assert (frame["resolved_at"] == "?").any()
    # Unpadded day-first dates, as UCI writes them: "29/2/2016 01:16".
    assert frame["sys_updated_at"].str.fullmatch(r"[1-9]\d?/[1-9]\d?/20\d\d \d\d:\d\d").all()


def test_demo_log_statistics_look_like_the_real_data() -> None:
    table = parsing.parse_event_log(demo.demo_event_log(60_000, seed=1))
    frame = table.to_pandas()
    mix = frame.groupby("number", observed=True)["priority"].first().value_counts(normalize=True)
    assert mix["3 - Moderate"] == pytest.approx(0.935, abs=0.02)
    assert mix["1 - Critical"] == pytest.approx(0.016, abs=0.01)
    events_per_incident = frame.groupby("number", observed=True).size()
    assert events_per_incident.min() >= 2 and 4.5 < events_per_incident.mean() < 7
    target = trial.compute_target(frame)
    assert (target >= 0).all()
    # Heavy-tailed: the mean is well above the median and the maximum far above both.
    assert target.mean() > target.median() and target.max() > 10 * target.median()


def test_every_demo_incident_has_at_least_two_events_whatever_the_size() -> None:
    for n_events in range(2, 40):
        frame = parsing.parse_event_log(demo.demo_event_log(n_events, seed=n_events)).to_pandas()
        sizes = frame.groupby("number", observed=True).size()
        assert len(frame) == n_events and sizes.min() >= 2, (n_events, sizes.tolist())


def test_fetch_demo_reuses_the_cache_until_forced(tmp_path: Path) -> None:
    first = cache.fetch("demo", data_dir=tmp_path, demo_events=500)
    again = cache.fetch("demo", data_dir=tmp_path, demo_events=500)
    forced = cache.fetch("demo", data_dir=tmp_path, demo_events=500, force=True)
    assert (first.reused, again.reused, forced.reused) == (False, True, False)
    assert first.cache.csv_sha256 == forced.cache.csv_sha256
    assert first.cache.rows == 500
    # Kept apart from real data, and no temporary left.
    assert [p.name for p in tmp_path.iterdir()] == ["demo-events.parquet"]


def test_fetch_a_local_csv_notes_it_differs_from_uci(tmp_path: Path) -> None:
    source = tmp_path / "mine.csv"
    source.write_bytes(event_log(event_row(), event_row(number="INC0000047")))
    result = cache.fetch(str(source), data_dir=tmp_path / "data")
    assert result.cache.rows == 2 and result.cache.incidents == 2
    assert result.cache.source == str(source.resolve())
    assert any("differs from UCI" in note for note in result.notes)


def test_cache_loads_with_proper_types(demo_cache: Path) -> None:
    frame = pa.parquet.read_table(cache.cache_path(demo_cache)).to_pandas()
    assert frame["closed_at"].dtype.kind == "M"
    assert frame["active"].dtype == bool
    assert frame["reassignment_count"].dtype == np.int64
    assert isinstance(frame["priority"].dtype, pd.CategoricalDtype)


# --- The real file -------------------------------------------------------------------------------


def test_read_rows_picks_the_same_rows_across_row_groups(demo_cache: Path, tmp_path: Path) -> None:
    """Rows are read a row group at a time; the result must not depend on where groups end."""
    table = pq.read_table(cache.cache_path(demo_cache), columns=list(batches.TRIAL_COLUMNS))
    split = tmp_path / "split.parquet"
    pq.write_table(table, split, row_group_size=300)  # 2,000 rows: 7 groups, the last short
    rows = np.sort(np.random.default_rng(5).choice(table.num_rows, size=700, replace=False))

    read = batches._read_rows(split, list(batches.TRIAL_COLUMNS), rows)

    expected = table.take(pa.array(rows)).to_pandas()
    assert read.equals(expected)
    assert read["priority"].dtype == "category"  # one categorical across the groups' dictionaries
    everything = batches._read_rows(split, None, np.arange(table.num_rows))
    assert everything.equals(table.to_pandas())


def test_a_batch_of_the_whole_log_is_the_whole_log(demo_cache: Path) -> None:
    rows = cache.read_cache_info(demo_cache).rows
    batch = batches.load_batch(demo_cache, rows, seed=1, columns=("number",))
    whole = pq.read_table(cache.cache_path(demo_cache), columns=batch.frame.columns.tolist())
    assert batch.frame.equals(whole.to_pandas())
