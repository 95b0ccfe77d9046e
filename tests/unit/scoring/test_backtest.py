"""Evaluating over time: periods, --since-last, bootstrap intervals and the backtest's band, on
small logs whose answers are known."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.support.helpers import runner
from ticketeval import core
from ticketeval.cli.app import app
from ticketeval.data import cache, parsing, periods
from ticketeval.errors import DataError, UsageError
from ticketeval.request import TrialRequest
from ticketeval.scoring import backtest, metrics
from ticketeval.settings import load_settings

HOUR = 3600.0


def known_log(path: Path, closures: dict[str, list[float]]) -> Path:
    """A CSV where each incident has one event, updated `hours` before it closed at the given
    day: the heuristic predicts 120 h for every event (all "3 - Moderate"), so each event's
    error is known."""
    rows = []
    number = 0
    for day, hours_list in closures.items():
        closed = datetime.fromisoformat(day)
        for hours in hours_list:
            number += 1
            updated = closed - timedelta(hours=hours)
            row = dict.fromkeys(parsing.COLUMNS, "?")
            row.update(
                number=f"INC{number:07d}", incident_state="Closed", active="false",
                reassignment_count="0", reopen_count="0", sys_mod_count="1", made_sla="true",
                knowledge="false", u_priority_confirmation="false", priority="3 - Moderate",
                opened_at=f"{updated:%d/%m/%Y %H:%M}", sys_updated_at=f"{updated:%d/%m/%Y %H:%M}",
                closed_at=f"{closed:%d/%m/%Y %H:%M}",
            )  # fmt: skip
            rows.append(",".join(row[column] for column in parsing.COLUMNS))
    path.write_text("\n".join([",".join(parsing.COLUMNS), *rows]) + "\n")
    return path


# March: errors of 20 h each; April: 100 h each; May (a few): 0 h.
CLOSURES = {
    "2016-03-02T10:00": [100.0] * 30,
    "2016-03-20T10:00": [140.0] * 30,
    "2016-04-05T10:00": [20.0] * 40,
    "2016-04-25T10:00": [220.0] * 40,
    "2016-05-10T10:00": [120.0] * 5,
}


@pytest.fixture
def known(isolated_environment: Path, tmp_path: Path) -> Path:
    source = known_log(tmp_path / "known.csv", CLOSURES)
    cache.fetch(str(source), data_dir=isolated_environment)
    return isolated_environment


def evaluate(**options: object) -> dict:
    result = core.evaluate(load_settings(), TrialRequest(**options))
    assert isinstance(result, dict)
    return result


def test_a_period_scores_exactly_the_events_closed_in_it(known: Path) -> None:
    march = evaluate(closed_from="2016-03-01", closed_to="2016-04-01", batch_size="all", seed=1)
    assert march["data"]["num_obs"] == 60
    assert march["data"]["metrics"]["MAE"] == pytest.approx(20 * HOUR)
    assert march["period"] == {
        "closed_from": "2016-03-01T00:00:00",
        "closed_to": "2016-04-01T00:00:00",
    }
    april = evaluate(closed_from="2016-04-01", closed_to="2016-05-01", batch_size="all", seed=1)
    assert april["data"]["num_obs"] == 80
    assert april["data"]["metrics"]["MAE"] == pytest.approx(100 * HOUR)
    # [from, to): the closure at 2016-03-20T10:00 is out of a period ending then.
    before = evaluate(closed_from="2016-03-01", closed_to="2016-03-20T10:00", batch_size="all")
    assert before["data"]["num_obs"] == 30


def test_batch_sizes_within_a_period(known: Path) -> None:
    sampled = evaluate(closed_from="2016-04-01", closed_to="2016-05-01", batch_size=10, seed=3)
    assert sampled["data"]["num_obs"] == 10
    # The default batch size (1000) meets a period of 80 events: it takes them all.
    assert evaluate(closed_from="2016-04-01", closed_to="2016-05-01")["data"]["num_obs"] == 80
    with pytest.raises(UsageError, match="larger than the 80 events closed from 2016-04-01"):
        evaluate(closed_from="2016-04-01", closed_to="2016-05-01", batch_size=81)
    with pytest.raises(DataError, match="no events closed from 2017-01-01"):
        evaluate(closed_from="2017-01-01", closed_to="2017-02-01")
    with pytest.raises(UsageError, match="is not before"):
        evaluate(closed_from="2016-05-01", closed_to="2016-04-01")
    with pytest.raises(UsageError, match="is not a date"):
        evaluate(closed_from="yesterday")
    with pytest.raises(UsageError, match="whole number or 'all'"):
        evaluate(batch_size="lots")


def test_since_last_scores_the_new_tickets_once(known: Path, tmp_path: Path) -> None:
    first = evaluate(since_last=True)
    assert first["data"]["num_obs"] == 145  # everything, the first time
    # The newest closure seen plus the log's resolution (a minute).
    assert first["period"]["closed_to"] == "2016-05-10T10:01:00"
    again = core.evaluate(load_settings(), TrialRequest(since_last=True))
    assert isinstance(again, core.NothingNew)
    assert again.since == "2016-05-10T10:01:00"
    assert len(core.history(load_settings()).rows) == 1  # nothing recorded
    # New tickets arrive: the next run scores those, and only those.
    grown = known_log(tmp_path / "grown.csv", {**CLOSURES, "2016-06-01T10:00": [130.0] * 7})
    cache.fetch(str(grown), data_dir=known)
    newer = evaluate(since_last=True)
    # Another stream (another path, no --stream name): starts from the beginning.
    assert newer["data"]["num_obs"] == 152
    later = core.evaluate(load_settings(), TrialRequest(since_last=True))
    assert isinstance(later, core.NothingNew)


def test_since_last_through_the_cli_says_nothing_new_and_exits_0(known: Path) -> None:
    first = runner.invoke(app, ["evaluate", "--since-last", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["data"]["num_obs"] == 145
    second = runner.invoke(app, ["evaluate", "--since-last"])
    assert second.exit_code == 0, second.output
    assert "no ticket closed since 2016-05-10T10:01:00" in second.stderr
    assert "Nothing new for heuristic on " in second.stderr
    assert second.stdout == ""
    conflict = runner.invoke(app, ["evaluate", "--since-last", "--closed-from", "2016-03-01"])
    assert conflict.exit_code == 2 and "--since-last sets the period itself" in conflict.stderr


def test_bootstrap_intervals_are_reproducible_and_cover_the_metric() -> None:
    rng = np.random.default_rng(0)
    y = rng.lognormal(10, 1.5, 5_000)
    p = np.full_like(y, np.median(y))
    one = metrics.bootstrap_intervals(y, p, seed=7)
    assert one == metrics.bootstrap_intervals(y, p, seed=7)
    assert one != metrics.bootstrap_intervals(y, p, seed=8)
    for name in ("MAE", "MedAE", "RMSE"):
        low, high = one[name]
        assert low < metrics.score_metric(name, y, p) < high, name
    # The MAE's interval is about ±1.96 standard errors of the mean absolute error.
    errors = np.abs(y - p)
    half = 1.96 * errors.std() / np.sqrt(len(errors))
    low, high = one["MAE"]
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)
    assert metrics.bootstrap_intervals(y[:1], p[:1], seed=1) == dict.fromkeys(
        ["MAE", "MedAE", "RMSE"]
    )


def test_split_periods_months_weeks_and_days() -> None:
    first, last = datetime(2016, 2, 29, 17, 47), datetime(2016, 4, 2, 9, 0)
    months = periods.split_periods(first, last, "month")
    assert [p.label for p in months] == ["2016-02", "2016-03", "2016-04"]
    assert months[0].closed_from == datetime(2016, 2, 1) and months[-1].closed_to == datetime(
        2016, 5, 1
    )
    weeks = periods.split_periods(first, last, "week")
    assert weeks[0].closed_from == datetime(2016, 2, 29)  # a Monday
    assert all(p.closed_from.weekday() == 0 for p in weeks) and len(weeks) == 5
    days = periods.split_periods(first, last, "10d")
    # Calendar days, from the first closure's midnight (not 17:47 to 17:47).
    midnight = datetime(2016, 2, 29)
    assert days[0].closed_from == midnight and days[1].closed_from == midnight + timedelta(days=10)
    assert len(days) == 4
    for bad in ("fortnight", "0d", "d", "-3d"):
        with pytest.raises(UsageError, match="is not a period"):
            periods.split_periods(first, last, bad)


def summary_of(mae: float, events: int, constant: float = 200.0, width: float = 0.01) -> dict:
    skill = 1 - mae / constant
    return {
        "id": str(mae),
        "data": {
            "num_obs": events,
            "num_incidents": events,
            "metrics": {"MAE": mae},
            "metrics_ci": {"MAE": [mae - 1, mae + 1]},
            "baseline": {
                "MAE": constant,
                "skill": skill,
                "skill_ci": [skill - width, skill + width],
            },
        },
    }


def test_the_bands_are_mean_plus_minus_three_sd_of_the_reference_periods() -> None:
    maes = [100.0, 110.0, 90.0, 105.0, 95.0, 300.0, 101.0, 40.0]
    summaries = [summary_of(mae, 500) for mae in maes]
    summaries.append(summary_of(900.0, 20))  # too small to judge
    verdict = backtest.judge(summaries, reference=5, min_events=100)
    band = verdict["thresholds"]["model"]
    skills = [1 - mae / 200 for mae in maes[:5]]
    assert band["mean"] == pytest.approx(np.mean(skills))
    assert band["std"] == pytest.approx(np.std(skills))
    assert band["lower"] == pytest.approx(band["mean"] - 3 * band["std"])
    # Only a skill below the band is a model alert (40 s is better: no alert).
    assert [row["alert"] for row in verdict["periods"]] == [False] * 5 + [True] + [False] * 3
    assert [row["too_small"] for row in verdict["periods"]] == [False] * 8 + [True]
    assert verdict["alerts"] == 1 and verdict["data_shifts"] == 0
    # Default reference: the first third (3 of 9 periods).
    assert backtest.judge(summaries)["reference_periods"] == 3
    # One usable reference period: no band, no alert.
    lonely = backtest.judge(summaries, reference=1)
    assert lonely["thresholds"] == {"model": None, "data": None} and lonely["alerts"] == 0


def test_a_harder_mix_is_a_data_shift_and_not_a_model_alert() -> None:
    # The constant's MAE triples and the model's with it: the same skill, harder tickets.
    summaries = [summary_of(100.0 + i, 500, constant=200.0 + i) for i in range(4)]
    summaries += [summary_of(300.0, 500, constant=600.0), summary_of(900.0, 500, constant=600.0)]
    verdict = backtest.judge(summaries, reference=4)
    assert [row["data_shift"] for row in verdict["periods"]] == [False] * 4 + [True, True]
    # The model broke in the last period: its skill fell.
    assert [row["alert"] for row in verdict["periods"]] == [False] * 5 + [True]
    # An interval reaching into the band is not an alert, however low the skill itself.
    summaries[-1] = summary_of(900.0, 500, constant=600.0, width=3.0)
    assert backtest.judge(summaries, reference=4)["alerts"] == 0
