"""An estimate of the model's MAE on the tickets still open at T, before their labels arrive:
direct loss estimation (NannyML's DLE) made to see the censoring.

A second model (the "nanny", scikit-learn's HistGradientBoostingRegressor) learns each
ticket's absolute error from the ticket's features, the model's prediction and its age `c`.
Open tickets are open because they are slow, so the nanny learns from tickets that were open
too: reference snapshots at earlier dates T_k = T - k * step, each ticket then open by its
latest event, labelled where its closure is known by T. Only what was known at T is read.

A ticket open at T_k has its error known when it closed by T. One still open at T is known
only to take longer than its age at T (the censored lower bound); beyond that, its time to
close is imputed under an exponential tail (constant hazard) whose mean is the reference's
mean residual life late in the windows W_k = T - T_k (closures over time at risk, from the
median window to the longest), and its expected absolute error under that tail is the nanny's
target. Every ticket open at a reference date is thus in the reference, the slow ones
included; the tail is an assumption, which the snapshot validation (`ticketeval snapshots`)
holds to hindsight.

Cross-fitted, grouped by incident: each reference row's error is predicted by nannies that
never saw its incident (their residuals give the bias correction and the interval); the open
tickets' by the average of those nannies. The estimate is never below the censored lower
bound: each ticket's is raised to max(0, c - p).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ticketeval.scoring.censoring import lower_bound_errors
from ticketeval.scoring.metrics import CONFIDENCE, plain
from ticketeval.scoring.models import Model, model_columns, predict

if TYPE_CHECKING:
    from ticketeval.scoring.summary import TrialSummary

from ticketeval.scoring.open_tickets import (
    SNAPSHOT_COLUMNS,
    OpenTickets,
    load_open_tickets,
    open_rows,
    with_open_tickets,
)

REFERENCE_EVERY = timedelta(days=7)
# The latest snapshots only: half a year of them keeps the fit under ten seconds on the real
# log, and older tickets say less about today's.
MAX_SNAPSHOTS = 26
FOLDS = 5
BOOTSTRAP_RESAMPLES = 1000
# Smaller, slower-learning trees than the model's: the target (an absolute error) is noisy.
NANNY_HYPERPARAMETERS: dict[str, Any] = {
    "max_iter": 150,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
}
# Below this many reference rows closed by T there is nothing to learn from.
MIN_REFERENCE_ROWS = 50


def estimate_open_mae(
    log: pd.DataFrame,
    tickets: OpenTickets,
    model: Model,
    *,
    name: str,
    every: timedelta = REFERENCE_EVERY,
    seed: int = 0,
) -> dict[str, Any]:
    """The estimated MAE of `model` on `tickets` (the open incidents at their `as_of`), its
    interval and how it was made. `log` is the cached log (every row, in the cache's order,
    with at least the training inputs, SNAPSHOT_COLUMNS and the model's columns);
    `tickets.positions` index it."""
    from ticketeval.scoring.features import (
        CATEGORICAL_FEATURES,
        FEATURES,
        category_map,
        feature_matrix,
    )

    started = time.perf_counter()
    as_of = pd.Timestamp(tickets.as_of)
    assert tickets.positions is not None, "the open tickets must come from the cache"
    # Only what was known at T: the events updated by then; closures after T unknown.
    known = log[(log["sys_updated_at"] <= as_of).to_numpy()]
    known = known.assign(closed_at=known["closed_at"].where(known["closed_at"] <= as_of))
    method: dict[str, Any] = {
        "method": "DLE with censoring-aware reference snapshots (HistGradientBoostingRegressor)",
        "every_days": every / timedelta(days=1),
    }
    nothing = {"estimated_MAE": None, "estimated_MAE_ci": None, "estimate": method}
    if not len(tickets.age):
        return {**nothing, "estimate": {**method, "note": "no open ticket to estimate"}}
    positions, snapshot_at = _reference_rows(known, as_of, every)
    method["snapshots"] = len(np.unique(snapshot_at))
    bound = lower_bound_errors(tickets.age, tickets.predictions)
    frame = known.iloc[positions]
    predicted = _predictions_once(known, positions, model, name)
    age = (snapshot_at - frame["sys_updated_at"].to_numpy()) / np.timedelta64(1, "s")
    closed = frame["closed_at"].to_numpy()
    labelled = ~pd.isna(closed)
    window = (as_of.to_datetime64() - snapshot_at) / np.timedelta64(1, "s")
    remaining = (closed - snapshot_at) / np.timedelta64(1, "s")
    target = (closed - frame["sys_updated_at"].to_numpy()) / np.timedelta64(1, "s")
    incident = _codes(frame["number"])
    if labelled.sum() < MIN_REFERENCE_ROWS or len(np.unique(incident)) < FOLDS:
        return {**nothing, "estimate": {**method, "note": "too few reference tickets"}}
    # A reference ticket still open at T is known only to take longer than it has so far
    # (its age at T); past that, its time to close is imputed under an exponential tail
    # whose mean is the reference's mean residual life late in the windows.
    followed = (as_of.to_datetime64() - frame["sys_updated_at"].to_numpy()) / np.timedelta64(1, "s")
    tail_mean = _tail_mean(remaining, window, labelled)
    error = np.where(
        labelled,
        np.abs(target - predicted),
        _expected_error_beyond(followed, predicted, tail_mean),
    )
    maps = {column: category_map(frame[column]) for column in CATEGORICAL_FEATURES}
    features = np.column_stack([feature_matrix(frame, maps), predicted, age])
    categorical = [feature in CATEGORICAL_FEATURES for feature in FEATURES] + [False, False]
    open_frame = log.iloc[tickets.positions]
    open_features = np.column_stack(
        [feature_matrix(open_frame, maps), tickets.predictions, tickets.age]
    )
    out_of_fold, open_estimates = _cross_fit(
        features, error, incident, open_features, categorical, seed
    )
    floor = float(bound.mean())
    per_ticket = np.maximum(np.clip(open_estimates, 0.0, None), bound)
    residual = error - out_of_fold
    bias = float(residual.mean())
    low, high = _interval(residual, incident, len(per_ticket), seed)
    # The nanny's cross-fitted bias corrects the mean; neither goes below the lower bound.
    estimate = max(float(per_ticket.mean()) + bias, floor)
    interval = [
        max(float(per_ticket.mean()) + low, floor),
        max(float(per_ticket.mean()) + high, floor),
    ]
    pushed = float(np.clip(open_estimates, 0.0, None).mean()) + bias < floor
    return {
        "estimated_MAE": plain(estimate),
        "estimated_MAE_ci": interval,
        "estimate": {
            **method,
            "reference_rows": int(len(positions)),
            "reference_closed_by_as_of": int(labelled.sum()),
            "reference_incidents": int(len(np.unique(incident))),
            "tail_mean_seconds": plain(tail_mean),
            "bias_corrected": plain(bias),
            "clipped_share": plain((open_estimates < bound).mean()),
            "pushed_to_lower_bound": pushed,
            "interval": (
                f"{CONFIDENCE:.0%}: the nanny's cross-fitted bias (incident bootstrap of the "
                "reference residuals) plus the open tickets' sampling error; not the tail's"
            ),
            "seconds": round(time.perf_counter() - started, 2),
        },
        **(
            {
                "estimate_note": (
                    "the estimate was pushed up to the censored lower bound: the reference "
                    "says these tickets close sooner than they already have"
                )
            }
            if pushed
            else {}
        ),
    }


def _tail_mean(remaining: np.ndarray, window: np.ndarray, closed: np.ndarray) -> float:
    """The mean remaining time of a ticket still open past the windows, under a constant
    hazard: closures over time at risk, for remaining times between the median and the
    longest window (each row at risk until it closed or its window ended)."""
    start, stop = float(np.median(window)), float(window.max())
    followed = np.where(closed, np.minimum(remaining, window), window)
    at_risk = float(np.clip(followed - start, 0.0, stop - start).sum())
    closures = int((closed & (remaining >= start) & (remaining < stop)).sum())
    # No closure that late: the windows' own length is the least the tail can be.
    return at_risk / closures if closures else max(stop, at_risk)


def _expected_error_beyond(age: np.ndarray, predicted: np.ndarray, mean: float) -> np.ndarray:
    """E|Y - p| when Y = age + X, X exponential with `mean`: age + mean - p when p <= age,
    else d - mean + 2 mean exp(-d / mean) with d = p - age."""
    ahead = predicted - age
    late = np.maximum(ahead, 0.0)
    beyond = late - mean + 2.0 * mean * np.exp(-late / max(mean, 1e-9))
    return np.where(ahead <= 0, -ahead + mean, beyond)


def _reference_rows(
    known: pd.DataFrame, as_of: pd.Timestamp, every: timedelta
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in `known` of the tickets open at each reference date (before `as_of`, from
    one step after the first event), and each row's date."""
    first = known["sys_updated_at"].min()
    positions: list[np.ndarray] = []
    dates: list[np.ndarray] = []
    snapshot = as_of - every
    while not pd.isna(first) and snapshot >= first + every and len(positions) < MAX_SNAPSHOTS:
        rows = open_rows(known, snapshot)
        positions.append(rows)
        dates.append(np.full(len(rows), snapshot.to_datetime64()))
        snapshot -= every
    if not positions:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype="datetime64[ns]")
    return np.concatenate(positions), np.concatenate(dates)


def _predictions_once(
    log: pd.DataFrame, positions: np.ndarray, model: Model, name: str
) -> np.ndarray:
    """The model's predictions on the reference rows, each distinct event predicted once."""
    unique, inverse = np.unique(positions, return_inverse=True)
    if not len(unique):
        return np.empty(0, dtype=float)
    rows = log.iloc[unique].reset_index(drop=True)
    return predict(model, rows, name=name)[inverse]


def _codes(numbers: pd.Series) -> np.ndarray:
    if isinstance(numbers.dtype, pd.CategoricalDtype):
        return numbers.cat.codes.to_numpy()
    return pd.factorize(numbers)[0]


def _cross_fit(
    features: np.ndarray,
    error: np.ndarray,
    incident: np.ndarray,
    open_features: np.ndarray,
    categorical: Sequence[bool],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold estimates of the reference errors (folds grouped by incident), and the
    open tickets' estimates averaged over the fold nannies."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import GroupKFold

    from ticketeval.scoring.features import openmp_threads

    out_of_fold = np.empty(len(error))
    open_estimates = np.zeros(len(open_features))
    folds = GroupKFold(n_splits=FOLDS)
    with openmp_threads(len(error)):
        for train, held_out in folds.split(features, error, groups=incident):
            nanny = HistGradientBoostingRegressor(
                loss="squared_error",
                categorical_features=list(categorical),
                early_stopping=False,
                random_state=seed,
                **NANNY_HYPERPARAMETERS,
            )
            nanny.fit(features[train], error[train])
            out_of_fold[held_out] = nanny.predict(features[held_out])
            open_estimates += nanny.predict(open_features) / FOLDS
    return out_of_fold, open_estimates


def _interval(
    residual: np.ndarray, incident: np.ndarray, open_count: int, seed: int
) -> tuple[float, float]:
    """The interval's offsets around the nanny's mean: its mean residual over incident
    resamples (Poisson weights per incident, each incident's rows together), plus the open
    tickets' own sampling error (the residuals' spread over sqrt(open_count))."""
    codes, grouped = np.unique(incident, return_inverse=True)
    sums = np.bincount(grouped, weights=residual, minlength=len(codes))
    counts = np.bincount(grouped, minlength=len(codes)).astype(float)
    rng = np.random.default_rng([seed, 0xD1E])
    bias = np.empty(BOOTSTRAP_RESAMPLES)
    for start in range(0, BOOTSTRAP_RESAMPLES, 100):  # 100 resamples at a time: flat memory
        draws = rng.poisson(1.0, size=(min(100, BOOTSTRAP_RESAMPLES - start), len(codes)))
        bias[start : start + len(draws)] = (draws @ sums) / np.maximum(draws @ counts, 1.0)
    spread = float(residual.std())
    noise = rng.normal(0.0, spread / np.sqrt(max(open_count, 1)), size=BOOTSTRAP_RESAMPLES)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(bias + noise, [tail, 100 - tail])
    return float(low), float(high)


def read_estimation_log(path: Path, model: Model, *, name: str) -> pd.DataFrame:
    """The cached log's columns the estimate reads: the training inputs, what finds the open
    incidents and what the model reads."""
    import pyarrow.parquet as pq

    from ticketeval.scoring.features import INPUT_COLUMNS

    wanted = model_columns(model, name=name)
    columns = None
    if wanted is not None:
        columns = list(dict.fromkeys([*INPUT_COLUMNS, *SNAPSHOT_COLUMNS, *wanted]))
    return pq.read_table(path, columns=columns).to_pandas()


def estimate_for(
    data_dir: Path, tickets: OpenTickets, model: Model, *, name: str, demo: bool = False
) -> dict[str, Any]:
    """`estimate_open_mae` on the cache."""
    from ticketeval.data.cache import read_cache_info

    info = read_cache_info(data_dir, demo=demo)
    assert info is not None
    return estimate_open_mae(
        read_estimation_log(Path(info.path), model, name=name), tickets, model, name=name
    )


def add_open_tickets(
    summary: TrialSummary,
    *,
    data_dir: Path,
    as_of: datetime,
    model: Model,
    name: str,
    closed_target: np.ndarray,
    closed_predictions: np.ndarray,
    demo: bool = False,
    estimate: bool = False,
) -> TrialSummary:
    """`summary` with the tickets open at `as_of` (and, with `estimate`, their estimated MAE):
    what `evaluate` and the flow's `add_open_tickets` task both do."""
    tickets = load_open_tickets(data_dir, as_of, model, name=name, demo=demo)
    estimated = estimate_for(data_dir, tickets, model, name=name, demo=demo) if estimate else None
    return with_open_tickets(summary, closed_target, closed_predictions, tickets, estimated)
