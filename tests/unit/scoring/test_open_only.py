"""Which tickets are scored: a `by_state` breakdown beside `by_priority`, `--open-only` (the
events whose incident was still open), train's open-state holdout figures, and history trends
that compare only like with like (model, stream, population)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import invoke
from ticketeval import core
from ticketeval.data import cache
from ticketeval.history.store import HistoryRow, flag_regressions
from ticketeval.scoring.training import train
from ticketeval.settings import load_settings

from .test_training import demo_events

pytestmark = pytest.mark.usefixtures("without_dashboard")  # the cluster is not the point here


def _json(*args: str) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _events(data_dir: Path) -> pd.DataFrame:
    frame = pd.read_parquet(cache.cache_path(data_dir))
    return frame[frame["closed_at"].notna()]


def test_open_only_scores_the_events_not_in_state_closed(data_dir: Path) -> None:
    events = _events(data_dir)
    open_events = events[events["incident_state"].astype(str) != "Closed"]
    assert 0 < len(open_events) < len(events)
    every = _json("evaluate", "--batch-size", "all", "--closed-from", "2016-03-01")
    in_period = events[events["closed_at"] >= "2016-03-01"]
    by_state = every["data"]["by_state"]
    assert sum(state["num_obs"] for state in by_state.values()) == every["data"]["num_obs"]
    closed = int((in_period["incident_state"].astype(str) == "Closed").sum())
    assert by_state["Closed"]["num_obs"] == closed
    only = _json("evaluate", "--batch-size", "all", "--closed-from", "2016-03-01", "--open-only")
    assert only["data"]["num_obs"] == len(in_period) - closed
    assert "Closed" not in only["data"]["by_state"]
    assert only["period"]["open_only"] is True
    # A sample of the open events only, and the table shows both breakdowns.
    sampled = invoke("evaluate", "--batch-size", "50", "--open-only", "--seed", "1")
    assert sampled.exit_code == 0, sampled.output
    assert "By state" in sampled.stdout and "By priority" in sampled.stdout
    assert "Closed" not in sampled.stdout.split("By state")[1]


@pytest.mark.e2e  # the backtest runs its flow on a LocalCluster
def test_a_backtest_of_open_events_is_its_own_population(data_dir: Path) -> None:
    verdict = _json("backtest", "--every", "month", "--open-only", "--quiet")
    events = _events(data_dir)
    open_events = events[events["incident_state"].astype(str) != "Closed"]
    assert sum(row["events"] for row in verdict["periods"]) == len(open_events)
    rows = core.history(load_settings()).rows
    assert {row.population for row in rows} == {"backtest-month/open"}


def test_train_reports_its_holdout_on_open_state_events_too() -> None:
    frame = demo_events()
    result = train(frame, seed=3)
    holdout = result.metadata["holdout"]
    opened = holdout["open_states"]
    assert 0 < opened["events"] < holdout["events"]
    assert opened["skill"] == pytest.approx(1 - opened["MAE"] / opened["MAE_constant"])


def _row(model: str, mae: float, *, stream: str, population: str, when: int) -> HistoryRow:
    return HistoryRow(
        id=f"{stream}-{population}-{when}", model=model, timestamp=f"2026-01-{when:02d}T00:00:00",
        runner="evaluate", batch_size=None, seed=None, num_obs=100, num_scored=100, MAE=mae,
        MedAE=None, MSE=None, R2=None, RMSE=None, MAE_low=mae - 10, MAE_high=mae + 10,
        MedAE_low=None, MedAE_high=None, RMSE_low=None, RMSE_high=None, baseline_MAE=None,
        skill=None, data_sha256="a" * 64, source=stream, closed_from=None, closed_to=None,
        run_id=None, period_label=None, results_path=None, alert=None, stream=stream,
        population=population,
    )  # fmt: skip


def test_regressions_compare_the_same_stream_and_population_only() -> None:
    rows = [
        _row("heuristic", 100.0, stream="/data/log.zip", population="sample", when=1),
        _row("heuristic", 100.0, stream="demo", population="sample", when=2),
        # A period of harder tickets: not compared with the random samples.
        _row("heuristic", 900.0, stream="/data/log.zip", population="period", when=3),
        # A demo trial never enters the real stream's trend.
        _row("heuristic", 500.0, stream="demo", population="sample", when=4),
        _row("heuristic", 500.0, stream="/data/log.zip", population="sample", when=5),
    ]
    assert flag_regressions(rows) == [False, False, False, True, True]


def test_history_draws_one_trend_per_stream_and_population(data_dir: Path) -> None:
    _json("evaluate", "--batch-size", "100", "--seed", "1")
    _json("evaluate", "--batch-size", "all", "--closed-from", "2016-06-01")
    result = invoke("history")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "MAE trend heuristic on" in text
    assert "(sample)" in text and "(period)" in text


@pytest.mark.e2e
@pytest.mark.realdata
@pytest.mark.usefixtures("real_data_dir")
def test_the_real_holdout_open_states() -> None:
    every = _json("evaluate", "--closed-from", "2016-05-11", "--batch-size", "all")
    assert every["data"]["by_state"]["Closed"]["num_obs"] == 7_520
    only = _json("evaluate", "--closed-from", "2016-05-11", "--batch-size", "all", "--open-only")
    assert only["data"]["num_obs"] == 35_881
    assert every["data"]["num_obs"] == 35_881 + 7_520


@pytest.mark.e2e
def test_run_local_scores_the_same_open_events_as_evaluate(data_dir: Path) -> None:
    options = ("--batch-size", "all", "--closed-from", "2016-05-01", "--open-only")
    flow = _json("run-local", *options)
    same = _json("evaluate", *options)
    assert flow["data"]["num_obs"] == same["data"]["num_obs"]
    assert flow["data"]["metrics"]["MAE"] == pytest.approx(same["data"]["metrics"]["MAE"])
    assert flow["period"]["open_only"] and "Closed" not in flow["data"]["by_state"]
