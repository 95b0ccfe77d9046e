"""`ticketeval history`'s flags: like compared with like, beyond the intervals' noise."""

from __future__ import annotations

import uuid
from pathlib import Path

from ticketeval import core
from ticketeval.history.store import record_trial
from ticketeval.settings import load_settings

REAL = "fd184bbfd62329cfe093e99da2ea7071905f2ead91900b448eb2635870821bef"
DEMO = "0" * 64


def summary(
    mae: float,
    interval: tuple[float, float] | None,
    *,
    day: int,
    model: str = "heuristic",
    data: str = REAL,
    run_id: str | None = None,
    alert: bool | None = None,
) -> dict:
    metrics = {"MAE": mae, "MedAE": 1.0, "MSE": 2.0, "R2": 0.5, "RMSE": 1.4}
    return {
        "id": str(uuid.uuid4()),
        "timestamp": f"2026-01-{day:02d}T00:00:00+00:00",
        "runner": "test",
        "model": model,
        "batch_size": 10,
        "seed": 1,
        "source": {"name": "x", "csv_sha256": data, "matches_uci": data == REAL, "rows": 10},
        "data": {
            "num_obs": 10,
            "metrics": metrics,
            "metrics_ci": {"MAE": list(interval) if interval else None},
            "baseline": {"MAE": 1.0, "skill": 0.0},
        },
        **({"run_id": run_id} if run_id else {}),
        **({"alert": {"flagged": alert}} if alert is not None else {}),
    }


def write(*summaries: dict) -> None:
    settings = load_settings()
    for trial in summaries:
        assert record_trial(trial, settings.history, settings.spool_dir).recorded


def flags(**options: object) -> list[bool]:
    return core.history(load_settings(), **options).flagged  # type: ignore[arg-type]


def test_a_trial_is_flagged_only_against_the_same_model_on_the_same_data(
    isolated_environment: Path,
) -> None:
    write(
        summary(100.0, (90.0, 110.0), day=1, model="challenger"),
        summary(100.0, (90.0, 110.0), day=2, data=DEMO),
        # The heuristic's first trial on the real data: nothing to compare it with.
        summary(500.0, (450.0, 550.0), day=3),
        # Worse beyond noise than the heuristic's earlier trial on the same data.
        summary(900.0, (800.0, 1000.0), day=4),
    )
    assert flags() == [False, False, False, True]
    assert flags(model="heuristic") == [False, False, True]


def test_a_trial_whose_interval_overlaps_the_reference_is_not_flagged(
    isolated_environment: Path,
) -> None:
    write(
        summary(500.0, (450.0, 560.0), day=1),
        # 40% worse, but its interval reaches into the earlier one's: noise, not a regression.
        summary(700.0, (555.0, 850.0), day=2),
        # Above the reference's upper bound (the median of 560 and 850): a regression.
        summary(900.0, (706.0, 950.0), day=3),
    )
    assert flags() == [False, False, True]


def test_a_backtests_periods_keep_their_own_verdict(isolated_environment: Path) -> None:
    run = str(uuid.uuid4())
    write(
        summary(100.0, (90.0, 110.0), day=1, run_id=run, alert=False),
        # Far above the first period, but the backtest judged it within its band.
        summary(900.0, (850.0, 950.0), day=2, run_id=run, alert=False),
        summary(150.0, (140.0, 160.0), day=3, run_id=run, alert=True),
        # A single trial is not compared with the backtest's periods.
        summary(900.0, (850.0, 950.0), day=4),
    )
    assert flags() == [False, False, True, False]


def test_last_keeps_the_flags_computed_on_the_whole_history(isolated_environment: Path) -> None:
    write(
        summary(100.0, (90.0, 110.0), day=1),
        summary(300.0, (200.0, 400.0), day=2),
        summary(100.0, (90.0, 110.0), day=3),
    )
    view = core.history(load_settings(), last=2)
    assert [row.MAE for row in view.rows] == [300.0, 100.0]
    assert view.flagged == [True, False]
