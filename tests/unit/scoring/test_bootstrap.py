"""Incident-level (cluster) bootstrap intervals: against a brute-force oracle, invariant to
duplicated events of an incident, and on the real file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ticketeval import core
from ticketeval.data import cache
from ticketeval.request import TrialRequest
from ticketeval.scoring import metrics
from ticketeval.scoring.models import load_model, predict
from ticketeval.settings import load_settings


def _clustered_log(incidents: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets, predictions and incident numbers whose errors are shared within an incident
    (as the log's are): 1 to 10 events an incident."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 11, incidents)
    numbers = np.repeat(np.array([f"INC{i:05d}" for i in range(incidents)], dtype=object), sizes)
    shared = np.repeat(rng.lognormal(11, 1.5, incidents), sizes)
    target = shared * rng.uniform(0.8, 1.2, len(shared))
    return target, np.full(len(target), np.median(target)), numbers


def _widths(intervals: dict[str, list[float] | None]) -> dict[str, float]:
    return {name: pair[1] - pair[0] for name, pair in intervals.items() if pair is not None}


def test_one_incident_has_no_interval() -> None:
    y, p = np.array([1.0, 5.0, 9.0]), np.zeros(3)
    one = np.zeros(3, dtype=np.int64)
    assert metrics.bootstrap_intervals(y, p, seed=1, incidents=one)["MAE"] is None
    assert metrics.paired_mae_difference(y, p, p + 1, seed=1, incidents=one)[1] is None
    assert metrics.bootstrap_intervals(y, p, seed=1)["MAE"] is not None  # three events alone


def test_events_without_a_number_are_clusters_of_their_own() -> None:
    codes = metrics.incident_clusters(np.array(["A", None, "B", "A", None], dtype=object), 5)
    assert codes[0] == codes[3] and codes[0] != codes[2]
    assert len({codes[1], codes[4], codes[0], codes[2]}) == 4
    assert list(metrics.incident_clusters(None, 3)) == [0, 1, 2]


@pytest.mark.parametrize("k", [4, 9])
def test_repeating_every_incident_s_events_k_times_leaves_the_interval_as_wide(k: int) -> None:
    y, p, numbers = _clustered_log(300, seed=k)
    once = metrics.incident_clusters(numbers, len(y))
    repeated = np.repeat(np.arange(len(y)), k)
    before = metrics.bootstrap_intervals(y, p, seed=3, incidents=once, constant=float(p[0]))
    after = metrics.bootstrap_intervals(
        y[repeated], p[repeated], seed=3, incidents=once[repeated], constant=float(p[0])
    )
    for name in ("MAE", "MedAE", "RMSE", "skill"):
        assert after[name] == pytest.approx(before[name], rel=1e-9), name
    # An event bootstrap takes the copies for evidence: sqrt(k) narrower.
    events_before = _widths(metrics.bootstrap_intervals(y, p, seed=3))
    events_after = _widths(metrics.bootstrap_intervals(y[repeated], p[repeated], seed=3))
    assert events_after["MAE"] == pytest.approx(events_before["MAE"] / np.sqrt(k), rel=0.15)
    # The paired difference too.
    other = y * np.random.default_rng(k).uniform(0.5, 1.5, len(y))
    _, paired = metrics.paired_mae_difference(y, p, other, seed=4, incidents=once)
    _, paired_after = metrics.paired_mae_difference(
        y[repeated], p[repeated], other[repeated], seed=4, incidents=once[repeated]
    )
    assert paired_after == pytest.approx(paired, rel=1e-9)


def _brute_force(
    y: np.ndarray, p: np.ndarray, other: np.ndarray, numbers: np.ndarray, resamples: int
) -> dict[str, np.ndarray]:
    """The cluster bootstrap as its definition says: draw incidents with replacement, put
    their events together, compute each statistic. One resample at a time."""
    rng = np.random.default_rng(99)
    groups = [np.flatnonzero(numbers == number) for number in dict.fromkeys(numbers)]
    constant = float(np.median(y))
    out: dict[str, list[float]] = {"MAE": [], "MedAE": [], "RMSE": [], "skill": [], "paired": []}
    for _ in range(resamples):
        rows = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        errors = np.abs(y[rows] - p[rows])
        out["MAE"].append(errors.mean())
        out["MedAE"].append(np.median(errors))
        out["RMSE"].append(np.sqrt(np.square(errors).mean()))
        out["skill"].append(1 - errors.mean() / np.abs(y[rows] - constant).mean())
        out["paired"].append((np.abs(y[rows] - other[rows]) - errors).mean())
    return {name: np.array(values) for name, values in out.items()}


def test_the_intervals_agree_with_a_brute_force_cluster_bootstrap() -> None:
    y, _, numbers = _clustered_log(80, seed=1)
    rng = np.random.default_rng(2)
    p = y * rng.uniform(0.3, 1.7, len(y))  # errors that differ within an incident too
    other = y * rng.uniform(0.2, 1.8, len(y))
    brute = _brute_force(y, p, other, numbers, resamples=6_000)
    clusters = metrics.incident_clusters(numbers, len(y))
    ours = metrics.bootstrap_intervals(
        y, p, seed=5, incidents=clusters, constant=float(np.median(y)), resamples=6_000
    )
    for name in ("MAE", "MedAE", "RMSE", "skill"):
        expected = np.percentile(brute[name], [2.5, 97.5])
        width = expected[1] - expected[0]
        assert ours[name] is not None
        # Two Monte Carlo estimates of the same quantiles: within a tenth of the width.
        assert np.abs(np.array(ours[name]) - expected).max() < 0.1 * width, name
    _, paired = metrics.paired_mae_difference(
        y, p, other, seed=6, incidents=clusters, resamples=6_000
    )
    expected = np.percentile(brute["paired"], [2.5, 97.5])
    assert paired is not None
    assert np.abs(np.array(paired) - expected).max() < 0.1 * (expected[1] - expected[0])


def test_many_incidents_are_drawn_m_out_of_n_and_keep_the_cluster_width() -> None:
    # Above BOOTSTRAP_DRAWS incidents a resample draws fewer and is rescaled: the MAE interval
    # still has the width of 1.96 cluster standard errors of a ratio estimator.
    y, p, numbers = _clustered_log(5 * metrics.BOOTSTRAP_DRAWS, seed=8)
    clusters = metrics.incident_clusters(numbers, len(y))
    low, high = metrics.bootstrap_intervals(y, p, seed=2, incidents=clusters)["MAE"]
    errors = np.abs(y - p)
    sums, sizes = np.bincount(clusters, errors), np.bincount(clusters)
    mae = errors.mean()
    residual = sums - mae * sizes  # the ratio's linearization, per incident
    standard_error = np.sqrt(np.square(residual).sum()) / sizes.sum()
    assert (high - low) / 2 == pytest.approx(1.96 * standard_error, rel=0.1)
    assert low < mae < high
    median = metrics.bootstrap_intervals(y, p, seed=2, incidents=clusters)["MedAE"]
    assert median is not None and median[0] < np.median(errors) < median[1]


def test_an_evaluate_summary_carries_incident_level_intervals(data_dir: Path) -> None:
    summary = core.evaluate(load_settings(), TrialRequest(batch_size="all", seed=3))
    assert isinstance(summary, dict)
    data = summary["data"]
    low, high = data["baseline"]["skill_ci"]
    assert low <= data["baseline"]["skill"] <= high
    low, high = data["metrics_ci"]["MAE"]
    assert low <= data["metrics"]["MAE"] <= high


@pytest.mark.e2e
@pytest.mark.realdata
@pytest.mark.usefixtures("real_data_dir")
def test_april_2016_intervals_are_incident_level(model_dir: Path) -> None:
    # A challenger that predicts four days for every event: the paired interval is over
    # incidents too.
    (model_dir / "flat.py").write_text(
        "import numpy as np\n\n\ndef four_days(batch):\n"
        "    return np.full(len(batch), 4 * 86_400.0)\n"
    )
    settings = load_settings()
    april = {"closed_from": "2016-04-01", "closed_to": "2016-05-01", "batch_size": "all"}
    summary = core.evaluate(
        settings, TrialRequest(model=("heuristic", "flat:four_days"), seed=1, **april)
    )
    assert isinstance(summary, dict)
    data = summary["models"]["heuristic"]
    assert data["num_obs"] == 46_106 and data["num_incidents"] == 8_326
    low, high = data["metrics_ci"]["MAE"]
    assert 17_000 <= high - low <= 32_000, (low, high)
    assert low < data["metrics"]["MAE"] < high
    # The same events, resampled one by one: the paired interval of the trial is wider.
    frame = pd.read_parquet(cache.cache_path(settings.data_dir))
    closed = frame["closed_at"]
    frame = frame[(closed >= "2016-04-01") & (closed < "2016-05-01")]
    y = (frame["closed_at"] - frame["sys_updated_at"]).dt.total_seconds().to_numpy()
    heuristic = predict(load_model("heuristic"), frame)
    _, by_event = metrics.paired_mae_difference(y, heuristic, np.full(len(y), 345_600.0), seed=1)
    (comparison,) = summary["comparison"]
    assert by_event is not None and comparison["ci"] is not None
    assert comparison["ci"][1] - comparison["ci"][0] > 1.5 * (by_event[1] - by_event[0])
