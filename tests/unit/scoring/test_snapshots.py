"""`ticketeval snapshots`: the estimate replayed at each period's end and held to hindsight."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import expect_error, invoke
from ticketeval.data.cache import cache_path


def test_snapshots_replay_each_month_end_and_summarize_the_estimate(data_dir: Path) -> None:
    result = invoke("snapshots", "--every", "month", "--json")
    assert result.exit_code == 0, result.output
    replay = json.loads(result.stdout)
    log = pd.read_parquet(cache_path(data_dir))
    last = log["sys_updated_at"].max()
    dates = [row["as_of"] for row in replay["snapshots"]]
    expected = pd.date_range(
        log["sys_updated_at"].min().normalize().replace(day=1), last, freq="MS"
    )[1:]
    assert dates == [date.isoformat() for date in expected if date < last]
    judged = [row for row in replay["snapshots"] if row["relative_error"] is not None]
    assert judged, replay
    for row in replay["snapshots"]:
        if row["realized_MAE"] is not None:
            assert row["lower_bound_MAE"] <= row["realized_MAE"]
        if row["estimated_MAE"] is not None:
            low, high = row["estimated_MAE_ci"]
            assert row["lower_bound_MAE"] <= low <= row["estimated_MAE"] <= high
            assert row["covered"] == (low <= row["realized_MAE"] <= high)
    summary = replay["summary"]
    assert summary["judged"] == len(judged)
    assert summary["mean_absolute_relative_error"] == pytest.approx(
        sum(abs(row["relative_error"]) for row in judged) / len(judged)
    )
    assert summary["covered"] == sum(bool(row["covered"]) for row in judged)

    # The table, on fewer snapshots (each one fits five nannies): 120-day periods from the
    # first update's day.
    shown = invoke("snapshots", "--every", "120d")
    assert shown.exit_code == 0, shown.output
    assert "mean absolute relative error" in shown.stdout
    first_end = log["sys_updated_at"].min().normalize() + pd.Timedelta(days=120)
    assert first_end.date().isoformat() in shown.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--every", "fortnight"], ["--every", "not a period"]),
        (["--model", "heuristic,tests.nothing:here"], ["one model", "--model once"]),
    ],
)
def test_snapshots_refuse_bad_input_in_one_line(
    data_dir: Path, args: list[str], fragments: list[str]
) -> None:
    expect_error(invoke("snapshots", *args), 2, *fragments)
