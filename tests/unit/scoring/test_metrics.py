"""The NumPy metrics against scikit-learn's, the independent oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import (
    mean_absolute_error,
    mean_squared_error,
    median_absolute_error,
    r2_score,
)

from ticketeval.scoring import metrics

ORACLE = {
    "MAE": mean_absolute_error,
    "MedAE": median_absolute_error,
    "MSE": mean_squared_error,
    "R2": r2_score,
    "RMSE": lambda y, p: math.sqrt(mean_squared_error(y, p)),
}
# Durations to the millisecond: no subnormal numbers, whose squares underflow to 0 in both.
seconds = st.floats(min_value=-1e8, max_value=1e8, allow_nan=False, allow_infinity=False).map(
    lambda value: round(value, 3)
)


def assert_same(name: str, y: np.ndarray, p: np.ndarray) -> None:
    ours = metrics.score_metric(name, y, p)
    expected = ORACLE[name](y, p)
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-9), (name, ours, expected)


@pytest.mark.parametrize("name", list(ORACLE))
def test_random_batches_match_scikit_learn(name: str) -> None:
    rng = np.random.default_rng(7)
    for size in (2, 3, 10, 101, 10_000):
        y = rng.lognormal(10, 2, size)
        p = y * rng.lognormal(0, 1, size)
        assert_same(name, y, p)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(2, 60), elements=seconds), st.data())
def test_any_batch_matches_scikit_learn(y: np.ndarray, data: st.DataObject) -> None:
    p = data.draw(arrays(np.float64, len(y), elements=seconds))
    for name in ("MAE", "MedAE", "MSE", "RMSE"):
        assert_same(name, y, p)
    if np.ptp(y) > 0:
        assert_same("R2", y, p)


def test_edge_cases() -> None:
    # A perfect prediction, an even count (the median averages the middle two), one row.
    y = np.array([1.0, 2.0, 3.0, 10.0])
    for name in ORACLE:
        assert_same(name, y, y.copy())
        assert_same(name, y, y[::-1].copy())
    assert metrics.score_metric("MAE", np.array([5.0]), np.array([2.0])) == 3.0
    assert metrics.score_metric("R2", np.array([5.0]), np.array([2.0])) is None
    assert metrics.score_metric("MAE", np.array([]), np.array([])) is None


def test_r2_of_a_constant_target_is_undefined_not_zero_or_one() -> None:
    constant = np.full(5, 7.0)
    # scikit-learn says 1.0 for a perfect and 0.0 for an imperfect prediction there.
    assert metrics.score_metric("R2", constant, constant) is None
    assert metrics.score_metric("R2", constant, constant + 1) is None


def test_rows_without_a_target_are_left_out() -> None:
    y = np.array([1.0, np.nan, 3.0])
    p = np.array([2.0, 100.0, 3.0])
    assert metrics.score_metric("MAE", y, p) == 0.5
    assert metrics.score_metric("MSE", y, p) == 0.5


def test_unknown_metric_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.score_metric("MAPE", np.ones(2), np.ones(2))


@pytest.mark.parametrize("n", [301, 300])
def test_the_bootstrap_median_is_distributed_as_resampled_medians(n: int) -> None:
    # The medians are drawn through order statistics, not by resampling: check them against
    # brute-force resampling of the same errors (odd and even n).
    rng = np.random.default_rng(n)
    y = rng.lognormal(10, 2, n)
    p = np.zeros(n)
    ours = metrics.bootstrap_intervals(y, p, seed=1, resamples=20_000)["MedAE"]
    brute = np.median(y[rng.integers(0, n, size=(20_000, n))], axis=1)
    assert ours == pytest.approx(list(np.percentile(brute, [2.5, 97.5])), rel=0.03)


def test_intervals_of_a_large_batch_keep_their_width_at_a_fixed_cost() -> None:
    # Above BOOTSTRAP_DRAWS events the resamples are smaller and rescaled: the interval of a
    # mean still has the width of 1.96 standard errors of the whole batch, not of the draws.
    rng = np.random.default_rng(5)
    n = 5 * metrics.BOOTSTRAP_DRAWS
    y = rng.lognormal(10, 1, n)
    p = np.full(n, np.median(y))
    low, high = metrics.bootstrap_intervals(y, p, seed=2)["MAE"]
    errors = np.abs(y - p)
    standard_error = errors.std() / np.sqrt(n)
    assert (high - low) / 2 == pytest.approx(1.96 * standard_error, rel=0.1)
    assert low < errors.mean() < high
