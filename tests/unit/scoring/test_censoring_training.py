"""Censoring-aware training: inverse-probability-of-censoring weights from Kaplan-Meier, and
`train --censoring ipcw` against today's training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import expect_error, invoke
from ticketeval.scoring.censoring_comparison import compare_censoring
from ticketeval.scoring.model_file import load_model_file
from ticketeval.scoring.training import IPCW_FLOOR, censoring_weights, train, training_frame


def km_censoring_survival_just_before(times: list[float], censored: list[bool], at: float) -> float:
    """P(C >= at) by the product-limit formula, written out: over the distinct censoring
    times before `at`, (1 - censored then / at risk then)."""
    survival = 1.0
    for moment in sorted({t for t, c in zip(times, censored, strict=True) if c and t < at}):
        at_risk = sum(t >= moment for t in times)
        dropped = sum(t == moment and c for t, c in zip(times, censored, strict=True))
        survival *= 1 - dropped / at_risk
    return survival


def test_censoring_weights_are_one_over_the_censoring_survival() -> None:
    cut = pd.Timestamp("2016-05-01")
    day = pd.Timedelta(days=1)
    frame = pd.DataFrame(
        {
            "sys_updated_at": [cut - 10 * day, cut - 9 * day, cut - 3 * day, cut - 6 * day,
                               cut - 8 * day, cut + day],
            "closed_at": [cut - 8 * day, cut - 1 * day, cut + 30 * day, pd.NaT,
                          cut - 2 * day, cut + 40 * day],
        }
    )  # fmt: skip
    weights, info = censoring_weights(frame, cut)
    # Observed: 2 d and 8 d closed, 6 d closed; censored at 3 d and at 6 d (tied with the
    # closure at 6 d, which is weighted by G just before 6 d); the last not known at the cut.
    times = [2.0, 8.0, 3.0, 6.0, 6.0]
    censored = [False, False, True, True, False]
    expected = [
        1 / max(km_censoring_survival_just_before(times, censored, t), IPCW_FLOOR)
        for t in (2.0, 8.0, 6.0)
    ]
    assert weights == pytest.approx(expected)
    assert info["censored_events"] == 2
    assert info["effective_sample_size"] == pytest.approx(
        sum(expected) ** 2 / sum(w * w for w in expected)
    )
    assert info["effective_sample_size"] <= info["events"] == 3


def test_without_censored_events_every_weight_is_one(data_dir: Path) -> None:
    frame, _ = training_frame(data_dir)
    after_everything = frame["closed_at"].max() + pd.Timedelta(days=1)
    weights, info = censoring_weights(frame, after_everything)
    assert (weights == 1).all()
    assert info["censored_events"] == 0


def test_train_ipcw_weights_the_fit_and_records_how(data_dir: Path) -> None:
    frame, _ = training_frame(data_dir)
    today = train(frame, closed_before="2016-10-01")
    # The weighted model as the command trains it (the same data and cut): one fit, not two.
    result = invoke(
        "train", "--censoring", "ipcw", "--closed-before", "2016-10-01", "--out", "ipcw.skops",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["training"]["censoring"]["method"] == "ipcw"
    ipcw = load_model_file("ipcw.skops")
    censoring = ipcw.metadata["training"]["censoring"]
    assert censoring["method"] == "ipcw" and censoring["censored_events"] > 0
    assert today.metadata["training"]["censoring"] == {"method": "none"}
    sample = frame.head(200)
    assert not np.allclose(today.model(sample), ipcw(sample))
    expect_error(invoke("train", "--censoring", "km"), 2, "censoring", "ipcw, none")


def test_compare_censoring_on_the_open_state_events(data_dir: Path) -> None:
    frame, _ = training_frame(data_dir)
    compared = compare_censoring(frame, "2016-10-01", resamples=200)
    mae = compared["MAE"]
    assert compared["ipcw_vs_today"]["skill"] == pytest.approx(1 - mae["ipcw"] / mae["today"])
    assert compared["today_vs_constant"]["skill"] == pytest.approx(
        1 - mae["today"] / mae["constant"]
    )
    low, high = compared["ipcw_vs_constant"]["ci"]
    assert low <= compared["ipcw_vs_constant"]["skill"] <= high
    assert compared["open_state_events"] > compared["open_state_incidents"] > 0


@pytest.mark.e2e
@pytest.mark.realdata
def test_real_file_ipcw_at_2016_06_01(real_data_dir: Path) -> None:
    frame, _ = training_frame(real_data_dir)
    compared = compare_censoring(frame, "2016-06-01")
    assert compared["open_state_events"] == 14537
    assert compared["ipcw_vs_today"]["skill"] == pytest.approx(0.010, abs=0.002)
    assert compared["ipcw_vs_today"]["ci"][0] > 0
