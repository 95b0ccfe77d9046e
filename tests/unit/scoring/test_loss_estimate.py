"""The estimated MAE of the open tickets: known only from what was known at T, never below
the censored lower bound, and on the real file closer to the hindsight than the bound is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import invoke
from ticketeval.data.cache import cache_path
from ticketeval.scoring.loss_estimate import (
    _expected_error_beyond,
    _tail_mean,
    estimate_open_mae,
)
from ticketeval.scoring.models import heuristic_model
from ticketeval.scoring.open_tickets import OpenTickets, ages, open_rows


def open_tickets_of(log: pd.DataFrame, as_of: datetime) -> OpenTickets:
    rows = open_rows(log, as_of)
    frame = log.iloc[rows]
    return OpenTickets(as_of, frame, ages(frame, as_of), heuristic_model(frame), rows)


def test_expected_error_beyond_the_age_matches_a_simulation() -> None:
    rng = np.random.default_rng(0)
    mean = 5.0
    extra = rng.exponential(mean, size=400_000)
    for age, predicted in [(10.0, 3.0), (10.0, 10.0), (10.0, 12.0), (2.0, 30.0)]:
        simulated = np.abs(age + extra - predicted).mean()
        computed = _expected_error_beyond(np.array([age]), np.array([predicted]), mean)[0]
        assert computed == pytest.approx(simulated, rel=0.01)


def test_tail_mean_recovers_a_constant_hazard() -> None:
    rng = np.random.default_rng(1)
    remaining = rng.exponential(20.0, size=200_000)
    window = rng.choice([10.0, 20.0, 30.0, 40.0], size=len(remaining))
    closed = remaining <= window
    assert _tail_mean(remaining, window, closed) == pytest.approx(20.0, rel=0.03)


@dataclass(frozen=True)
class Estimated:
    log: pd.DataFrame
    tickets: OpenTickets
    estimate: dict[str, Any]


@pytest.fixture(scope="module")
def estimated_on_november_1(demo_cache: Path) -> Estimated:
    """The demo log's open tickets on 2016-11-01 and their estimate, made once for the tests
    that start from it (only read)."""
    log = pd.read_parquet(cache_path(demo_cache))
    tickets = open_tickets_of(log, datetime(2016, 11, 1))
    return Estimated(
        log, tickets, estimate_open_mae(log, tickets, heuristic_model, name="heuristic")
    )


def test_the_estimate_reads_nothing_after_as_of(estimated_on_november_1: Estimated) -> None:
    """Rewriting the future (later closures moved, later events changed) changes the hindsight
    but not the estimate."""
    log, tickets = estimated_on_november_1.log, estimated_on_november_1.tickets
    as_of = tickets.as_of
    before = estimated_on_november_1.estimate
    future = log.copy()
    later = future["closed_at"] > pd.Timestamp(as_of)
    future.loc[later, "closed_at"] += pd.Timedelta(days=40)
    after_events = future["sys_updated_at"] > pd.Timestamp(as_of)
    future.loc[after_events, "priority"] = "1 - Critical"
    rewritten = open_tickets_of(future, as_of)
    assert (rewritten.target != tickets.target).any()
    after = estimate_open_mae(future, rewritten, heuristic_model, name="heuristic")
    assert before["estimated_MAE"] is not None
    assert after["estimated_MAE"] == before["estimated_MAE"]
    assert after["estimated_MAE_ci"] == before["estimated_MAE_ci"]


def test_evaluate_as_of_estimates_never_below_the_lower_bound(data_dir: Path) -> None:
    for as_of in ("2016-09-01", "2016-12-01"):
        result = invoke("evaluate", "--as-of", as_of, "--json")
        assert result.exit_code == 0, result.output
        open_part = json.loads(result.stdout)["data"]["open"]
        low, high = open_part["estimated_MAE_ci"]
        assert open_part["lower_bound_MAE"] <= low <= open_part["estimated_MAE"] <= high
        assert open_part["estimate"]["snapshots"] > 1
    skipped = json.loads(
        invoke("evaluate", "--as-of", "2016-09-01", "--no-estimate", "--json").stdout
    )
    assert skipped["data"]["open"]["estimated_MAE"] is None
    assert "estimate" not in skipped["data"]["open"]


def test_an_estimate_below_the_bound_is_pushed_to_it_and_says_so(
    estimated_on_november_1: Estimated,
) -> None:
    """Open tickets far older than any the reference saw: trees do not extrapolate, so the
    nanny's errors fall short of what the tickets' ages already guarantee."""
    log, tickets = estimated_on_november_1.log, estimated_on_november_1.tickets
    as_of = tickets.as_of
    ancient = OpenTickets(
        as_of, tickets.frame, tickets.age + 3e8, tickets.predictions, tickets.positions
    )
    estimated = estimate_open_mae(log, ancient, heuristic_model, name="heuristic")
    bound = np.maximum(0, ancient.age - ancient.predictions).mean()
    # Each ticket's estimate is raised to its own bound (the mean then only corrected for the
    # nanny's measured bias).
    assert estimated["estimated_MAE"] == pytest.approx(bound, rel=0.01)
    assert bound <= estimated["estimated_MAE_ci"][0] <= estimated["estimated_MAE"]
    assert estimated["estimate"]["pushed_to_lower_bound"] is True
    assert "lower bound" in estimated["estimate_note"]
    usual = estimated_on_november_1.estimate  # the same tickets at their own ages
    assert usual["estimate"]["pushed_to_lower_bound"] is False
    assert "estimate_note" not in usual


@pytest.mark.e2e
@pytest.mark.realdata
def test_real_file_estimate_is_closer_to_the_realized_mae_than_the_bound(
    real_as_of_2016_05_01: dict,
) -> None:
    # `evaluate --as-of 2016-05-01 --json`, run once for this and test_open_tickets.py.
    open_part = real_as_of_2016_05_01["data"]["open"]
    realized, bound = open_part["realized_MAE"], open_part["lower_bound_MAE"]
    assert abs(open_part["estimated_MAE"] - realized) < abs(bound - realized)
    assert open_part["estimate"]["seconds"] < 30
