"""Backtest signals: a data shift (the constant's MAE leaves its band: harder tickets) apart
from a model alert (the skill against the period's constant falls below its band, judged with
incident-level intervals); the fixes around the bands and periods. Each backtest runs its flow
on a LocalCluster; the options refused before any cluster starts are in
tests/unit/scoring/test_backtest_alerts.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import invoke
from ticketeval.errors import ExitCode

pytestmark = pytest.mark.usefixtures("without_dashboard")  # the cluster is not the point here

# A model that breaks: the heuristic's predictions until BREAK, 365 days for every event
# updated after it.
BROKEN = """
import numpy as np
import pandas as pd

from ticketeval.scoring.models import heuristic_model

BREAK = pd.Timestamp("{moment}")


def broken(batch):
    predictions = heuristic_model(batch)
    after = (batch["sys_updated_at"] >= BREAK).to_numpy()
    return np.where(after, 365 * 86_400.0, predictions)


broken.columns = ("priority", "sys_updated_at")
"""


def _backtest(*args: str) -> dict:
    result = invoke("backtest", *args, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _logged(log: Path) -> dict:
    """The result a backtest wrote to its --log-file: what --json prints (the same dump), so a
    test checks a run's exit code or table and its figures without running it twice."""
    entries = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    [logged] = [json.loads(entry) for entry in entries if entry.startswith("{")]
    return dict(logged)


def test_a_model_that_breaks_alerts_after_and_not_before(
    data_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Demo data, monthly: the first four months are the reference; the model breaks after.
    (model_dir / "breaking.py").write_text(BROKEN.format(moment="2016-07-01"))
    # --fail-on-alert: the alert's exit code (data shifts alone do not set it).
    failing = invoke(
        "backtest", "--every", "month", "--model", "breaking:broken", "--reference", "4",
        "--quiet", "--fail-on-alert", "--log-file", str(tmp_path / "broken.log"),
    )  # fmt: skip
    assert failing.exit_code == ExitCode.MODEL_ALERT, failing.output
    assert "MODEL ALERT 2016-0" in failing.stderr
    verdict = _logged(tmp_path / "broken.log")
    rows = verdict["periods"]
    judged = [row for row in rows if not row["reference"] and not row["too_small"]]
    before = [row for row in judged if row["closed_to"] <= "2016-07-01"]
    after = [row for row in judged if row["closed_from"] >= "2016-07-01"]
    assert after and all(row["alert"] for row in after), [r["skill"] for r in after]
    assert not any(row["alert"] for row in before + rows[:4])
    assert verdict["alerts"] == len(after)
    # The plain heuristic exits 0 with --fail-on-alert: the next test (one cluster less).


def test_the_bands_say_how_many_periods_set_them_and_the_clipped_first_one(
    data_dir: Path, tmp_path: Path
) -> None:
    # The table, and the same run's figures from its log. The plain heuristic raises no model
    # alert, so --fail-on-alert exits 0.
    result = invoke(
        "backtest", "--every", "month", "--closed-from", "2016-03-16T12:00", "--reference", "4",
        "--min-events", "140", "--fail-on-alert", "--log-file", str(tmp_path / "backtest.log"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    verdict = _logged(tmp_path / "backtest.log")
    assert verdict["alerts"] == 0
    first = verdict["periods"][0]
    assert first["clipped"] and first["closed_from"] == "2016-03-16T12:00:00"
    assert not any(row["clipped"] for row in verdict["periods"][1:])
    contributed = verdict["thresholds"]["model"]["reference_periods"]
    small = sum(row["too_small"] for row in verdict["periods"][:4])
    assert contributed == 4 - small and small >= 1  # the clipped March, at least
    text = " ".join(result.stdout.split())
    assert f"from {contributed} of the first 4 periods" in text
    assert "clipped by --closed-from, a reference all the same" in text


def test_a_period_smaller_than_the_batch_size_does_not_fail_the_backtest(data_dir: Path) -> None:
    verdict = _backtest("--every", "month", "--batch-size", "130", "--min-events", "100")
    # The demo log's last month holds few events: it gives what it has, marked too small.
    last = verdict["periods"][-1]
    assert 0 < last["events"] < 100 and last["too_small"]
    assert sum(row["events"] == 130 for row in verdict["periods"]) >= 10


def test_days_are_calendar_days(data_dir: Path) -> None:
    verdict = _backtest("--every", "7d", "--closed-to", "2016-04-01")
    assert all(row["closed_from"].endswith("T00:00:00") for row in verdict["periods"])


@pytest.mark.e2e
@pytest.mark.realdata
@pytest.mark.usefixtures("real_data_dir")
def test_weekly_on_the_real_file_data_shifts_not_model_alerts(model_dir: Path) -> None:
    plain = _backtest("--every", "week")
    assert plain["alerts"] <= 3, [row["label"] for row in plain["periods"] if row["alert"]]
    assert plain["data_shifts"] >= 10
    # The model breaks where the reference weeks end (the first 17 of 51); the same reference
    # weeks and the eight after them are enough to see it (half the periods to score).
    reference = plain["reference_periods"]
    reference_end = plain["periods"][reference]["closed_from"]
    (model_dir / "breaking.py").write_text(BROKEN.format(moment=reference_end))
    broken = _backtest(
        "--every", "week", "--model", "breaking:broken", "--reference", str(reference),
        "--closed-to", plain["periods"][reference + 8]["closed_from"],
    )  # fmt: skip
    assert len(broken["periods"]) == reference + 8
    judged = [row for row in broken["periods"] if not row["reference"] and not row["too_small"]]
    assert sum(row["alert"] for row in judged) > len(judged) / 2
    assert not any(row["alert"] for row in broken["periods"] if row["reference"])
