"""The backtest on a LocalCluster, on a small log whose answers are known and on the real file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.support.helpers import run_ticketeval, runner
from tests.unit.scoring.test_backtest import (  # noqa: F401  (known: a fixture)
    HOUR,
    evaluate,
    known,
    known_log,
)
from ticketeval import core
from ticketeval.cli.app import app
from ticketeval.data import cache, parsing
from ticketeval.settings import load_settings

pytestmark = pytest.mark.usefixtures("without_dashboard")  # the cluster is not the point here


@pytest.mark.usefixtures("known")
def test_backtest_by_month_on_a_local_cluster() -> None:
    result = runner.invoke(
        app, ["backtest", "--every", "month", "--min-events", "10", "--reference", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    rows = out["periods"]
    assert [row["label"] for row in rows] == ["2016-03", "2016-04", "2016-05"]
    assert [row["events"] for row in rows] == [60, 80, 5]
    assert [row["MAE"] / HOUR for row in rows] == pytest.approx([20.0, 100.0, 0.0])
    assert [row["too_small"] for row in rows] == [False, False, True]
    # Each period's MAE is the MAE evaluate gives for the same period.
    april = evaluate(closed_from="2016-04-01", closed_to="2016-05-01", batch_size="all")
    assert rows[1]["MAE"] == april["data"]["metrics"]["MAE"]
    # Recorded as one run: the periods share its id, each with its verdict.
    recorded = [row for row in core.history(load_settings()).rows if row.run_id == out["run_id"]]
    assert sorted(row.period_label for row in recorded) == ["2016-03", "2016-04", "2016-05"]


@pytest.mark.realdata
@pytest.mark.usefixtures("real_data_dir")
def test_monthly_backtest_of_the_real_file_matches_an_independent_count(real_zip: Path) -> None:
    result = runner.invoke(app, ["backtest", "--every", "month", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["periods"]
    # Independently: pandas over the CSV itself, events by the month of closed_at.
    import zipfile

    with zipfile.ZipFile(real_zip) as archive, archive.open(parsing.CSV_NAME) as csv:
        closed = pd.read_csv(csv, usecols=["closed_at"], na_values="?")["closed_at"]
    months = pd.to_datetime(closed, format="%d/%m/%Y %H:%M").dt.strftime("%Y-%m")
    expected = months.value_counts().sort_index()
    assert {row["label"]: row["events"] for row in rows if row["events"]} == expected.to_dict()
    assert expected["2016-04"] > 40_000 and expected["2016-10"] < 1_000
    may = next(row for row in rows if row["label"] == "2016-05")
    evaluated = evaluate(closed_from="2016-05-01", closed_to="2016-06-01", batch_size="all")
    assert may["MAE"] == evaluated["data"]["metrics"]["MAE"]


@pytest.mark.usefixtures("known")
def test_a_backtest_of_a_period_scores_only_the_tickets_closed_in_it() -> None:
    result = runner.invoke(
        app,
        ["backtest", "--every", "month", "--closed-from", "2016-03-15", "--closed-to"]
        + ["2016-05-01", "--min-events", "10", "--reference", "1", "--json"],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    rows = out["periods"]
    # March from the 15th (the closures of the 20th only), all of April, nothing of May.
    assert [row["label"] for row in rows] == ["2016-03", "2016-04"]
    assert [(row["closed_from"], row["closed_to"]) for row in rows] == [
        ("2016-03-15T00:00:00", "2016-04-01T00:00:00"),
        ("2016-04-01T00:00:00", "2016-05-01T00:00:00"),
    ]
    assert [row["events"] for row in rows] == [30, 80]
    assert [row["MAE"] / HOUR for row in rows] == pytest.approx([20.0, 100.0])
    march = evaluate(closed_from="2016-03-15", closed_to="2016-04-01", batch_size="all")
    assert rows[0]["MAE"] == march["data"]["metrics"]["MAE"]
    recorded = [row for row in core.history(load_settings()).rows if row.run_id == out["run_id"]]
    assert sorted(row.period_label for row in recorded) == ["2016-03", "2016-04"]


# Four months: errors of 20, 22 and 18 h (the reference band), then 100 h (an alert).
DRIFTING = {
    "2016-01-10T10:00": [100.0] * 20 + [140.0] * 20,
    "2016-02-10T10:00": [98.0] * 20 + [142.0] * 20,
    "2016-03-10T10:00": [102.0] * 20 + [138.0] * 20,
    # The same spread around another middle: the tickets are as hard as before (the constant's
    # MAE stays 20 h), the heuristic's 120 h is now 200 h off. A model alert, no data shift.
    "2016-04-10T10:00": [300.0] * 20 + [340.0] * 20,
}


def test_backtest_quiet_prints_only_the_alerts_as_cron_mails_them(
    isolated_environment: Path, tmp_path: Path
) -> None:
    cache.fetch(str(known_log(tmp_path / "drifting.csv", DRIFTING)), data_dir=isolated_environment)
    log = tmp_path / "backtest.log"
    result = run_ticketeval(
        "backtest", "--every", "month", "--min-events", "10", "--reference", "3", "--quiet",
        "--log-file", str(log),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "MODEL ALERT 2016-04: skill -9.000 is below the band the reference periods set."
    ]
    entries = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    [logged] = [json.loads(entry) for entry in entries if entry.startswith("{")]
    assert entries[-1] == result.stderr.strip()  # the alert is in the log too
    assert [row["alert"] for row in logged["periods"]] == [False, False, False, True]
    assert logged["alerts"] == 1 and logged["data_shifts"] == 0
