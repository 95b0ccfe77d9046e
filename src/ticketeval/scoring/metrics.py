"""The error metrics and their bootstrap intervals, in NumPy.

The definitions are scikit-learn's (`mean_absolute_error`, `median_absolute_error`,
`mean_squared_error`, `r2_score`); the tests hold them to it. NumPy rather than scikit-learn
because importing `sklearn.metrics` costs more than half of a whole `evaluate`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

METRIC_NAMES = ("MAE", "MedAE", "MSE", "R2")  # the seed's, each one task in the flow
INTERVAL_METRICS = ("MAE", "MedAE", "RMSE")
BOOTSTRAP_RESAMPLES = 1000
# Resamples of more events than this draw this many and rescale (below), so that the intervals
# cost no more on a million events than on twenty thousand.
BOOTSTRAP_DRAWS = 20_000
CONFIDENCE = 0.95


def score_metric(
    name: str, target: pd.Series | np.ndarray, predictions: np.ndarray
) -> float | None:
    """One metric over the rows that have a target; None where it is undefined."""
    y, p = scored(target, predictions)
    if not len(y):
        return None
    errors = y - p
    if name == "MAE":
        return plain(np.mean(np.abs(errors)))
    if name == "MedAE":
        return plain(np.median(np.abs(errors)))
    if name == "MSE":
        return plain(np.mean(np.square(errors)))
    if name == "RMSE":
        return plain(math.sqrt(np.mean(np.square(errors))))
    if name == "R2":
        # Undefined for one row or a constant target (scikit-learn says 1.0 or 0.0 there).
        total = np.sum(np.square(y - y.mean())) if len(y) > 1 else 0.0
        if total == 0:
            return None
        return plain(1 - np.sum(np.square(errors)) / total)
    raise ValueError(f"unknown metric {name!r}")


def scored(target: pd.Series | np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, ...]:
    """Target and predictions of the rows that have a target (views, not copies, when all do:
    on a large batch each copy costs as much memory as the batch's target)."""
    y = np.asarray(target, dtype=float)
    p = np.asarray(predictions, dtype=float)
    keep = ~np.isnan(y)
    return (y, p) if keep.all() else (y[keep], p[keep])


def with_rmse(metrics: dict[str, float | None]) -> dict[str, float | None]:
    """The metrics plus RMSE, the square root of the MSE already computed."""
    mse = metrics.get("MSE")
    return {**metrics, "RMSE": None if mse is None else plain(math.sqrt(mse))}


def plain(value: Any) -> float | None:
    """A JSON-safe float: numpy scalars become floats, NaN and infinity become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def bootstrap_intervals(
    target: pd.Series | np.ndarray,
    predictions: np.ndarray,
    *,
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, list[float] | None]:
    """95% percentile-bootstrap intervals of MAE, MedAE and RMSE, reproducible by `seed`.

    The rows are resampled with replacement `resamples` times (vectorised, in chunks of about
    two million draws, so memory stays flat); MAE and RMSE are the means over each resample.
    Above BOOTSTRAP_DRAWS events, each resample draws that many (m) rather than all n, and its
    deviation from the batch's value is scaled by sqrt(m / n): the m-out-of-n bootstrap, whose
    spread is the n-draw one's (a mean's standard error goes as 1 / sqrt(draws)) at a fixed
    cost. The median of a resample needs no resample drawn: with the errors sorted, it is the
    error at the k-th smallest of n uniform row numbers, and the k-th smallest of n uniforms on
    (0, 1) is Beta(k, n - k + 1) (the next one, for an even n, adds Beta(1, n - k) of what is
    left); so its bootstrap distribution is sampled exactly, for any n, at two draws a resample.
    """
    y, p = scored(target, predictions)
    n = len(y)
    if n < 2:
        return dict.fromkeys(INTERVAL_METRICS)
    absolute = np.abs(y - p)
    rng = np.random.default_rng([seed, 0xB007])  # its own stream: the batch's draw is unchanged
    # float32 halves the memory traffic of the gather; the sums are kept in float64.
    values = absolute.astype(np.float32)
    draws = min(n, BOOTSTRAP_DRAWS)
    per_chunk = max(1, 2_000_000 // draws)
    means, mean_squares = [], []
    for start in range(0, resamples, per_chunk):
        size = (min(per_chunk, resamples - start), draws)
        sample = values[rng.integers(0, n, size=size, dtype=np.uint32)]
        means.append(sample.sum(axis=1, dtype=np.float64) / draws)
        mean_squares.append(np.square(sample, out=sample).sum(axis=1, dtype=np.float64) / draws)
    shrink = np.sqrt(draws / n)
    mean, mean_square = absolute.mean(), np.square(absolute).mean()
    statistics = {
        "MAE": mean + (np.concatenate(means) - mean) * shrink,
        "MedAE": _resampled_medians(np.sort(absolute), rng, resamples),
        "RMSE": np.sqrt(mean_square + (np.concatenate(mean_squares) - mean_square) * shrink),
    }
    tail = (1 - CONFIDENCE) / 2 * 100
    intervals: dict[str, list[float] | None] = {}
    for name in INTERVAL_METRICS:
        low, high = np.percentile(statistics[name], [tail, 100 - tail])
        intervals[name] = [float(low), float(high)]
    return intervals


def _resampled_medians(ordered: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """The medians of `count` bootstrap resamples of the sorted `ordered`, drawn exactly
    through the order statistics of uniform row numbers (see `bootstrap_intervals`)."""
    n = len(ordered)
    k = (n + 1) // 2 if n % 2 else n // 2
    lower = rng.beta(k, n - k + 1, size=count)
    # The row number of the k-th smallest draw is floor(n * U_(k)).
    low_rows = np.minimum((lower * n).astype(np.int64), n - 1)
    if n % 2:
        return ordered[low_rows]
    upper = lower + (1 - lower) * rng.beta(1, n - k, size=count)
    high_rows = np.minimum((upper * n).astype(np.int64), n - 1)
    return (ordered[low_rows] + ordered[high_rows]) / 2


def paired_mae_difference(
    target: pd.Series | np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[float | None, list[float] | None]:
    """The challenger's MAE minus the champion's, and its 95% paired-bootstrap interval.

    Paired: each resample draws the events once and scores both models on the same draw, so
    what the events have in common (an easy or a hard batch) cancels out and only the models'
    difference varies. MAE is a mean, so the difference on a draw is the mean over the drawn
    events of |challenger's error| - |champion's error|. Vectorised in chunks like
    `bootstrap_intervals`, on its own stream of `seed`. None where fewer than two events have
    a target (no interval).
    """
    y = np.asarray(target, dtype=float)
    keep = ~np.isnan(y)
    y = y[keep]
    n = len(y)
    if n == 0:
        return None, None
    champion = np.asarray(champion, dtype=float)[keep]
    challenger = np.asarray(challenger, dtype=float)[keep]
    gain = np.abs(y - challenger) - np.abs(y - champion)
    difference = plain(gain.mean())
    if n < 2:
        return difference, None
    rng = np.random.default_rng([seed, 0xC0DE])  # apart from the batch's and the intervals'
    per_chunk = max(1, 2_000_000 // n)
    means = []
    for start in range(0, resamples, per_chunk):
        rows = rng.integers(0, n, size=(min(per_chunk, resamples - start), n), dtype=np.uint32)
        means.append(gain[rows].mean(axis=1))
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(np.concatenate(means), [tail, 100 - tail])
    return difference, [float(low), float(high)]
