"""The error metrics and their bootstrap intervals, in NumPy.

The definitions are scikit-learn's (`mean_absolute_error`, `median_absolute_error`,
`mean_squared_error`, `r2_score`); the tests hold them to it. NumPy rather than scikit-learn
because importing `sklearn.metrics` costs more than half of a whole `evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

METRIC_NAMES = ("MAE", "MedAE", "MSE", "R2")  # the seed's, each one task in the flow
INTERVAL_METRICS = ("MAE", "MedAE", "RMSE")
BOOTSTRAP_RESAMPLES = 1000
# Resamples of more incidents than this draw this many and rescale (`bootstrap_intervals`), so
# that the intervals cost no more on a million events than on twenty thousand.
BOOTSTRAP_DRAWS = 2_000
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


def incident_clusters(numbers: pd.Series | np.ndarray | None, size: int) -> np.ndarray:
    """Each event's cluster for the bootstrap: one per incident number, and an event without
    a number a cluster of its own (nothing says which incident it shares its error with).
    None (no numbers known): every event is its own cluster, the plain event bootstrap."""
    if numbers is None:
        return np.arange(size, dtype=np.int64)
    codes = pd.factorize(
        numbers if isinstance(numbers, pd.Series) else pd.Series(numbers), use_na_sentinel=True
    )[0].astype(np.int64)
    missing = codes < 0
    if missing.any():
        codes[missing] = codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    return codes


@dataclass(frozen=True)
class _Clusters:
    """The scored events' clusters (incidents), numbered 0..count-1, and each one's size."""

    codes: np.ndarray
    count: int
    sizes: np.ndarray

    @classmethod
    def of(cls, incidents: np.ndarray | None, keep: np.ndarray) -> _Clusters:
        if incidents is None:
            codes = np.arange(int(keep.sum()), dtype=np.int64)
        else:
            codes = np.asarray(incidents, dtype=np.int64)
            codes = codes if keep.all() else codes[keep]
            sizes = np.bincount(codes)
            if not sizes.all():  # some incident has no scored event: number them again
                codes = np.unique(codes, return_inverse=True)[1].astype(np.int64).ravel()
        sizes = np.bincount(codes)
        return cls(codes=codes, count=len(sizes), sizes=sizes)

    def sums(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.codes, weights=values, minlength=self.count)

    @property
    def draws(self) -> int:
        """Clusters one resample draws: all of them, or at most BOOTSTRAP_DRAWS (m-out-of-n)."""
        return min(self.count, BOOTSTRAP_DRAWS)

    @property
    def shrink(self) -> float:
        """What scales a resample's deviation from the batch's value: sqrt(m / n)."""
        return math.sqrt(self.draws / self.count)

    def resamples(self, rng: np.random.Generator, count: int) -> Iterator[np.ndarray]:
        """Chunks of resamples; each row holds the clusters one resample draws (with
        replacement), so an incident's events always come (or stay out) together."""
        per_chunk = max(1, 2_000_000 // self.draws)
        for start in range(0, count, per_chunk):
            size = (min(per_chunk, count - start), self.draws)
            # Drawn as 32-bit (the stream the seed fixes), indexed as native integers: every
            # gather would otherwise convert them again.
            yield rng.integers(0, self.count, size=size, dtype=np.uint32).astype(np.intp)


def bootstrap_intervals(
    target: pd.Series | np.ndarray,
    predictions: np.ndarray,
    *,
    seed: int,
    incidents: np.ndarray | None = None,
    constant: float | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, list[float] | None]:
    """95% percentile intervals of MAE, MedAE and RMSE by a cluster bootstrap, reproducible by
    `seed`; with `constant` (the baseline's prediction), of the skill `1 - MAE / MAE of the
    constant` too (key "skill"; the constant held fixed).

    The unit resampled is the incident (`incidents`: each event's cluster, from
    `incident_clusters`; None: each event alone): an incident's events share their closure and
    most of their error, so resampling events would treat near-copies as independent evidence
    and give intervals 2-3 times too narrow. Each resample draws incidents with replacement;
    MAE and RMSE are then ratios of per-incident sums (errors over events drawn), so a
    resample costs one gather per incident, not per event. Above BOOTSTRAP_DRAWS incidents a
    resample draws that many (m) and its deviation from the batch's value is scaled by
    sqrt(m / n): the m-out-of-n bootstrap, whose spread is the n-draw one's at a fixed cost.
    The median is the weighted median of the events, each weighted by how often its incident
    was drawn (`_ResampledMedians`). None (no interval) with fewer than two incidents scored.
    """
    y = np.asarray(target, dtype=float)
    keep = ~np.isnan(y)
    if int(keep.sum()) < 2:
        return dict.fromkeys([*INTERVAL_METRICS, *(["skill"] if constant is not None else [])])
    p = np.asarray(predictions, dtype=float)
    y, p = (y, p) if keep.all() else (y[keep], p[keep])
    clusters = _Clusters.of(incidents, keep)
    if clusters.count < 2:  # one incident: resampling it says nothing about another
        return dict.fromkeys([*INTERVAL_METRICS, *(["skill"] if constant is not None else [])])
    absolute = np.abs(y - p)
    rng = np.random.default_rng([seed, 0xB007])  # its own stream: the batch's draw is unchanged
    sums = {"MAE": clusters.sums(absolute), "MSE": clusters.sums(np.square(absolute))}
    if constant is not None:
        sums["constant"] = clusters.sums(np.abs(y - constant))
    sizes = clusters.sizes.astype(np.float64)
    medians = _ResampledMedians(absolute, clusters)
    drawn: dict[str, list[np.ndarray]] = {name: [] for name in [*sums, "MedAE"]}
    for draws in clusters.resamples(rng, resamples):
        events = sizes[draws].sum(axis=1)
        for name, per_incident in sums.items():
            drawn[name].append(per_incident[draws].sum(axis=1) / events)
        drawn["MedAE"].append(medians.of(draws, events.astype(np.int64)))
    shrink = clusters.shrink

    def rescaled(name: str, value: float) -> np.ndarray:
        return value + (np.concatenate(drawn[name]) - value) * shrink

    mae, mean_square = float(absolute.mean()), float(np.square(absolute).mean())
    statistics = {
        "MAE": rescaled("MAE", mae),
        "MedAE": rescaled("MedAE", float(np.median(absolute))),
        "RMSE": np.sqrt(np.maximum(rescaled("MSE", mean_square), 0.0)),
    }
    if constant is not None:
        constant_mae = float(np.abs(y - constant).mean())
        if constant_mae > 0:
            ratio = np.concatenate(drawn["MAE"]) / np.concatenate(drawn["constant"])
            statistics["skill"] = 1 - (mae / constant_mae + (ratio - mae / constant_mae) * shrink)
    intervals: dict[str, list[float] | None] = dict.fromkeys(
        [*INTERVAL_METRICS, *(["skill"] if constant is not None else [])]
    )
    for name, values in statistics.items():
        intervals[name] = percentile_interval(values)
    return intervals


def percentile_interval(values: np.ndarray) -> list[float] | None:
    """The central CONFIDENCE interval of resampled values (None if any is not finite)."""
    if not np.isfinite(values).all():
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


class _ResampledMedians:
    """Medians of cluster resamples: for each resample, the median of the events with each
    event counted as often as its incident was drawn (a weighted median; exact for the
    resample, ties included).

    Only the events ranked near the batch's median can be a resample's median, so the events
    below a window of ranks are counted per incident once (a resample's count below the
    window is then one gather per incident drawn), and only the window's events drawn are
    counted one by one, per distinct error value (errors repeat: minutes, constant models).
    A window that does not hold some resample's median is doubled and that chunk redone.
    """

    def __init__(self, values: np.ndarray, clusters: _Clusters) -> None:
        order = np.argsort(values, kind="stable")
        self.ordered = values[order]
        self.clusters = clusters
        self.ordered_codes = clusters.codes[order]
        # The window: five standard deviations of a resample's median, in ranks. A resample's
        # count below the median is a sum over the incidents drawn of each one's events below
        # it, less half its events: its spread, scaled from a resample to the batch, is that.
        below = clusters.sums((values < np.median(values)).astype(np.float64))
        spread = math.sqrt(np.var(below - clusters.sizes / 2) / clusters.draws) * clusters.count
        self.half_width = int(5 * spread) + 64
        self._window(self.half_width)

    def _window(self, half_width: int) -> None:
        n = len(self.ordered)
        middle = n // 2
        self.low, self.high = max(0, middle - half_width), min(n, middle + half_width + 1)
        self.below = np.bincount(self.ordered_codes[: self.low], minlength=self.clusters.count)
        # The window's distinct values, and for each incident in it (CSR) its events' values.
        self.values, runs = np.unique(self.ordered[self.low : self.high], return_inverse=True)
        present, local = np.unique(self.ordered_codes[self.low : self.high], return_inverse=True)
        by_incident = np.argsort(local, kind="stable")
        self.runs = runs.ravel()[by_incident]
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(local))]).astype(np.int64)
        self.local = np.full(self.clusters.count, -1, dtype=np.int64)
        self.local[present] = np.arange(len(present))

    def of(self, draws: np.ndarray, total: np.ndarray) -> np.ndarray:
        """The median of each resample (row of `draws`, of `total` events), a few rows at a
        time (each row counts up to every value of the window)."""
        step = max(1, 2_000_000 // (self.high - self.low))
        return np.concatenate(
            [self._of(draws[i : i + step], total[i : i + step]) for i in range(0, len(draws), step)]
        )

    def _of(self, draws: np.ndarray, total: np.ndarray) -> np.ndarray:
        # The 1-based ranks of the middle one or two events of each resample.
        k_low, k_high = (total + 1) // 2, total // 2 + 1
        rows = np.arange(len(draws), dtype=np.int64)
        while True:
            below = self.below[draws].sum(axis=1)
            local = self.local[draws]
            chosen = np.flatnonzero(local >= 0)
            incidents = local.ravel()[chosen]
            first, lengths = self.starts[incidents], np.diff(self.starts)[incidents]
            # Every window event of every incident drawn: its resample, and its value.
            offsets = np.cumsum(lengths) - lengths
            events = np.arange(int(lengths.sum())) + np.repeat(first - offsets, lengths)
            resample = np.repeat(chosen // draws.shape[1], lengths)
            width = len(self.values)
            counts = np.bincount(
                resample * width + self.runs[events], minlength=len(draws) * width
            ).reshape(len(draws), width)
            cumulative = np.cumsum(counts, axis=1)
            inside = (below < k_low).all() and (below + cumulative[:, -1] >= k_high).all()
            if inside or (self.low == 0 and self.high == len(self.ordered)):
                break
            self.half_width *= 2
            self._window(self.half_width)
        # Each row's counts rise from 0 to at most its resample's size: lifting row r by r
        # times more than any size makes the whole matrix one sorted array, so one
        # searchsorted finds, in every row, the first value whose count reaches a rank.
        lift = rows * (int(total.max()) + 1)
        cumulative += lift[:, None]
        flat = cumulative.ravel()
        low = np.searchsorted(flat, lift + k_low - below) - rows * width
        high = np.searchsorted(flat, lift + k_high - below) - rows * width
        return (self.values[low] + self.values[high]) / 2


def paired_mae_difference(
    target: pd.Series | np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    seed: int,
    incidents: np.ndarray | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[float | None, list[float] | None]:
    """The challenger's MAE minus the champion's, and its 95% paired cluster-bootstrap interval.

    Paired: each resample draws the incidents once and scores both models on the same draw,
    so what the events have in common (an easy or a hard batch) cancels out and only the
    models' difference varies. MAE is a mean, so the difference on a draw is the sum over the
    drawn incidents of their events' |challenger's error| - |champion's error|, over the events
    drawn. Incidents (`incidents`, None: each event alone) and m-out-of-n as in
    `bootstrap_intervals`, on its own stream of `seed`. None where fewer than two incidents
    have a target (no interval).
    """
    y = np.asarray(target, dtype=float)
    keep = ~np.isnan(y)
    y = y[keep]
    if len(y) == 0:
        return None, None
    champion = np.asarray(champion, dtype=float)[keep]
    challenger = np.asarray(challenger, dtype=float)[keep]
    gain = np.abs(y - challenger) - np.abs(y - champion)
    difference = plain(gain.mean())
    if len(y) < 2:
        return difference, None
    clusters = _Clusters.of(incidents, keep)
    if clusters.count < 2:
        return difference, None
    per_incident, sizes = clusters.sums(gain), clusters.sizes.astype(np.float64)
    rng = np.random.default_rng([seed, 0xC0DE])  # apart from the batch's and the intervals'
    means = [
        per_incident[draws].sum(axis=1) / sizes[draws].sum(axis=1)
        for draws in clusters.resamples(rng, resamples)
    ]
    mean = float(gain.mean())
    return difference, percentile_interval(mean + (np.concatenate(means) - mean) * clusters.shrink)
