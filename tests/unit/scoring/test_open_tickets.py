"""`evaluate --as-of T`: the log as known at T, the tickets still open then, and the real
file's figures for T = 2016-05-01."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import expect_error, invoke
from ticketeval.data.cache import cache_path
from ticketeval.scoring.models import heuristic_model
from ticketeval.scoring.open_tickets import load_open_tickets, open_rows


def event(number: str, opened: str, updated: str, mod: int, closed: str | None) -> dict:
    return {
        "number": number,
        "opened_at": pd.Timestamp(opened),
        "sys_updated_at": pd.Timestamp(updated),
        "sys_mod_count": mod,
        "closed_at": pd.Timestamp(closed) if closed else pd.NaT,
    }


def test_open_rows_take_each_open_incident_by_its_latest_event_known_then() -> None:
    as_of = datetime(2016, 5, 1)
    frame = pd.DataFrame(
        [
            # A: two events on the same minute, the later by modification count written first.
            event("A", "2016-04-01", "2016-04-20 10:00", 3, "2016-06-01"),
            event("A", "2016-04-01", "2016-04-20 10:00", 2, "2016-06-01"),
            event("A", "2016-04-01", "2016-04-10", 1, "2016-06-01"),
            event("A", "2016-04-01", "2016-05-02", 4, "2016-06-01"),  # not known yet
            event("B", "2016-04-01", "2016-04-05", 1, "2016-04-30"),  # closed before
            event("C", "2016-05-02", "2016-05-02", 0, "2016-05-09"),  # opened after
            event("D", "2016-04-01", "2016-04-05", 0, "2016-05-01"),  # closed at T: closed
            event("E", "2016-04-01", "2016-04-25", 0, None),  # never closed: open
            event("F", "2016-04-01", "2016-05-03", 0, "2016-05-09"),  # no event known at T
        ]
    )
    frame["number"] = frame["number"].astype("category")
    rows = open_rows(frame, as_of)
    assert rows.tolist() == [0, 7]
    assert open_rows(frame, datetime(2016, 3, 1)).tolist() == []


def test_open_tickets_are_the_incidents_open_at_each_date_and_bounded_by_their_outcome(
    data_dir: Path,
) -> None:
    """Against a plain pandas reading of the definition, on many dates of the demo log; and
    the lower bound never exceeds the realized MAE (hindsight)."""
    log = pd.read_parquet(cache_path(data_dir))
    for as_of in pd.date_range("2016-03-15", "2017-02-10", freq="9D"):
        known = log[log["sys_updated_at"] <= as_of]
        still_open = known[(known["opened_at"] <= as_of) & ~(known["closed_at"] <= as_of)]
        tickets = load_open_tickets(data_dir, as_of.to_pydatetime(), heuristic_model, name="h")
        assert sorted(tickets.frame["number"].astype(str)) == sorted(
            still_open["number"].astype(str).unique()
        )
        latest = still_open.groupby("number", observed=True)["sys_updated_at"].max()
        shown = tickets.frame.set_index(tickets.frame["number"].astype(str))["sys_updated_at"]
        assert (shown.sort_index().to_numpy() == latest.sort_index().to_numpy()).all()
        assert (tickets.age >= 0).all()
        if len(tickets.frame):
            bound = np.maximum(0, tickets.age - tickets.predictions)
            realized = np.abs(tickets.target - tickets.predictions)
            assert (bound <= realized).all()
            assert bound.mean() <= realized.mean()


def test_evaluate_as_of_reports_open_tickets_and_concordance_in_json(data_dir: Path) -> None:
    result = invoke("evaluate", "--as-of", "2016-10-01", "--batch-size", "all", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["period"]["as_of"] == "2016-10-01T00:00:00"
    log = pd.read_parquet(cache_path(data_dir))
    as_of = pd.Timestamp("2016-10-01")
    # The closed part: the events known at T of the incidents closed by T, nothing later.
    closed = log[(log["closed_at"] <= as_of) & (log["sys_updated_at"] <= as_of)]
    assert summary["data"]["num_obs"] == len(closed)
    opened = log[
        (log["sys_updated_at"] <= as_of)
        & (log["opened_at"] <= as_of)
        & ~(log["closed_at"] <= as_of)
    ]
    open_part = summary["data"]["open"]
    assert open_part["incidents"] == opened["number"].nunique() > 0
    assert sum(open_part["by_state"].values()) == open_part["incidents"]
    assert (
        sum(row["incidents"] for row in open_part["by_priority"].values())
        == (open_part["incidents"])
    )
    for key in ("lower_bound_MAE", "overdue_share", "realized_MAE"):
        assert open_part[key] is not None
    assert open_part["lower_bound_MAE"] <= open_part["realized_MAE"]
    assert 0 <= summary["data"]["metrics"]["concordance"] <= 1
    assert {"estimated_MAE", "estimated_MAE_ci"} <= open_part.keys()

    shown = invoke("evaluate", "--as-of", "2016-10-01")
    assert shown.exit_code == 0, shown.output
    assert f"{open_part['incidents']:,}" in shown.stdout
    assert "MAE at least (censored)" in shown.stdout


def test_evaluate_as_of_with_a_challenger_shows_the_champions_open_tickets(
    data_dir: Path, model_dir: Path
) -> None:
    (model_dir / "slow.py").write_text(
        "import numpy as np\n\n\ndef model(batch):\n    return np.full(len(batch), 9e6)\n"
    )
    args = ("evaluate", "--as-of", "2016-10-01", "--no-estimate", "--model", "heuristic")
    result = invoke(*args, "--model", "slow:model", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    champion_alone = json.loads(invoke(*args, "--json").stdout)
    assert summary["data"]["open"] == champion_alone["data"]["open"]
    shown = invoke(*args, "--model", "slow:model")
    assert shown.exit_code == 0, shown.output
    assert "MAE at least (censored)" in shown.stdout


def test_evaluate_without_as_of_has_no_open_part(data_dir: Path) -> None:
    summary = json.loads(invoke("evaluate", "--json").stdout)
    assert "open" not in summary["data"]
    assert "as_of" not in summary["period"]
    assert "concordance" not in summary["data"]["metrics"]


def test_evaluate_as_of_after_every_closure_has_no_open_ticket(data_dir: Path) -> None:
    result = invoke("evaluate", "--as-of", "2030-01-01", "--json")
    assert result.exit_code == 0, result.output
    open_part = json.loads(result.stdout)["data"]["open"]
    assert open_part["incidents"] == 0
    assert open_part["lower_bound_MAE"] is None and open_part["estimated_MAE"] is None
    assert open_part["by_priority"] == {} and open_part["by_state"] == {}
    shown = invoke("evaluate", "--as-of", "2030-01-01")
    assert shown.exit_code == 0, shown.output
    assert "Open by priority" not in shown.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--as-of", "2016-13-01"], ["--as-of", "not a date"]),
        (["--as-of", "2016-05-01", "--since-last"], ["--since-last", "--as-of"]),
        (["--as-of", "2016-05-01", "--closed-from", "2016-06-01"], ["after --as-of"]),
    ],
)
def test_evaluate_as_of_refuses_bad_input_in_one_line(
    data_dir: Path, args: list[str], fragments: list[str]
) -> None:
    expect_error(invoke("evaluate", *args), 2, *fragments)


@pytest.mark.e2e
@pytest.mark.realdata
def test_real_file_as_of_2016_05_01(real_as_of_2016_05_01: dict) -> None:
    # `evaluate --as-of 2016-05-01 --json`, run once for this and test_loss_estimate.py.
    open_part = real_as_of_2016_05_01["data"]["open"]
    assert open_part["incidents"] == 2962
    assert open_part["lower_bound_MAE"] == pytest.approx(450_450, rel=0.01)
    assert open_part["realized_MAE"] == pytest.approx(2_027_080, rel=0.01)
    assert round(open_part["overdue_share"], 2) == 0.29


@pytest.mark.e2e
@pytest.mark.realdata
def test_real_file_lower_bound_never_exceeds_the_realized_mae(real_data_dir: Path) -> None:
    checked = 0
    for as_of in pd.date_range("2016-03-01", "2017-02-15", freq="5D"):
        tickets = load_open_tickets(
            real_data_dir, as_of.to_pydatetime(), heuristic_model, name="heuristic"
        )
        if not len(tickets.age):
            continue
        bound = np.maximum(0, tickets.age - tickets.predictions)
        realized = np.abs(tickets.target - tickets.predictions)
        assert (bound <= realized).all(), as_of
        checked += 1
    assert checked > 60
