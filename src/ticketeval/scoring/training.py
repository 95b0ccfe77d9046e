"""Training a time-to-close model: the time split, training and the holdout figures.

The features live in `ticketeval.scoring.features`, the model and its file in
`ticketeval.scoring.model_file`. Never imports typer or rich; scikit-learn is imported inside
the functions that need it, so `ticketeval --help` does not pay for it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ticketeval import __version__
from ticketeval.data.batches import CLOSED_STATE
from ticketeval.data.cache import cache_path, read_cache_info, unreadable_cache
from ticketeval.errors import DataError, UsageError
from ticketeval.scoring.features import (
    CATEGORICAL_FEATURES,
    FEATURES,
    INPUT_COLUMNS,
    MAX_CATEGORIES,
    category_map,
    feature_matrix,
    openmp_threads,
)
from ticketeval.scoring.model_file import FORMAT, FORMAT_VERSION, TrainedModel, TrainingResult
from ticketeval.scoring.models import heuristic_model
from ticketeval.scoring.trial import compute_target

Censoring = Literal["ipcw", "none"]
CENSORINGS: tuple[Censoring, ...] = ("ipcw", "none")
DEFAULT_CENSORING: Censoring = "none"
# Kaplan-Meier's censoring survival below this is clipped: no event weighs more than 20.
IPCW_FLOOR = 0.05

Loss = Literal["absolute_error", "log"]
LOSSES: tuple[Loss, ...] = ("absolute_error", "log")
DEFAULT_LOSS: Loss = "absolute_error"

# scikit-learn's defaults, with a fixed number of trees rather than early stopping: that would
# draw its validation set at random from the training events, where the events of one
# incident are near-copies of each other. On the real log 300 trees at a rate of 0.05, or
# smaller trees, moved the holdout MAE by under 0.2%.
HYPERPARAMETERS: dict[str, Any] = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31}


# --- The time split ----------------------------------------------------------------------------


def time_cut(
    frame: pd.DataFrame,
    *,
    closed_before: datetime | str | None = None,
    train_fraction: float = 0.7,
) -> pd.Timestamp:
    """The date that splits training from holdout: events of incidents closed before it train.

    `closed_before` is used as given. Otherwise the cut is the `train_fraction` point of
    `closed_at` over the events that have one: the closing time of the event at position
    floor(train_fraction * (n - 1)) in time order (a time that occurs in the data, no
    interpolation). Every event of an incident has the same `closed_at`, so the split keeps
    incidents whole. On the real log, 0.7 gives 2016-05-11 15:07, and 70.0% of the events train.
    """
    if closed_before is not None:
        try:
            cut = pd.Timestamp(closed_before)
        except ValueError:
            raise UsageError(f"closed_before {closed_before!r} is not a date.") from None
        if cut is pd.NaT:
            raise UsageError("closed_before must be a date, not empty.")
        return cut.tz_localize(None) if cut.tzinfo else cut
    if not 0.0 < train_fraction < 1.0:
        raise UsageError(
            f"train_fraction must be between 0 and 1 (exclusive), not {train_fraction}."
        )
    if "closed_at" not in frame:
        raise DataError("the data has no closed_at column: cannot split by time.")
    closed = np.sort(frame["closed_at"].dropna().to_numpy(dtype="datetime64[s]"))
    if len(closed) == 0:
        raise DataError("no event has a closed_at: cannot split by time.")
    return pd.Timestamp(closed[int(train_fraction * (len(closed) - 1))])


def _iso(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


def _versions() -> dict[str, str]:
    import sklearn
    import skops

    return {
        "ticketeval": __version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def _estimator(loss: Loss, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    categorical = [feature in CATEGORICAL_FEATURES for feature in FEATURES]
    return HistGradientBoostingRegressor(
        loss="absolute_error" if loss == "absolute_error" else "squared_error",
        categorical_features=categorical,
        early_stopping=False,
        random_state=seed,
        **HYPERPARAMETERS,
    )


def _mae(target: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(np.abs(target - predictions)))


def _skill(mae: float, reference: float) -> float | None:
    return None if reference == 0 else 1.0 - mae / reference


def train(
    frame: pd.DataFrame,
    *,
    closed_before: datetime | str | None = None,
    train_fraction: float = 0.7,
    seed: int = 0,
    loss: Loss = DEFAULT_LOSS,
    max_categories: int = MAX_CATEGORIES,
    data_sha256: str | None = None,
    censoring: Censoring = DEFAULT_CENSORING,
) -> TrainingResult:
    """Train on the events of incidents closed before the cut, score on the others.

    `frame` holds events as the cache stores them (at least INPUT_COLUMNS and closed_at);
    events without a target (no closed_at or sys_updated_at) are dropped. `loss` is
    "absolute_error" (the metric we report) or "log" (squared error on log1p of the seconds,
    predicting expm1). `censoring="ipcw"` also counts the incidents still open at the cut,
    as censored examples (see `censoring_weights`). The same data, options and seed give the
    same model.
    """
    if loss not in LOSSES:
        raise UsageError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}.")
    if not 2 <= max_categories <= MAX_CATEGORIES:
        raise UsageError(f"max_categories must be between 2 and {MAX_CATEGORIES}.")
    missing = [column for column in (*INPUT_COLUMNS, "closed_at") if column not in frame]
    if missing:
        raise DataError(f"the data lacks the column(s) {', '.join(missing)} needed to train.")
    if censoring not in CENSORINGS:
        raise UsageError(f"censoring must be one of {', '.join(CENSORINGS)}, not {censoring!r}.")
    whole_log = frame
    target_all = compute_target(frame).to_numpy()
    scored = ~np.isnan(target_all)
    frame, target_all = frame.loc[scored], target_all[scored]
    cut = time_cut(frame, closed_before=closed_before, train_fraction=train_fraction)
    in_training = (frame["closed_at"] < cut).to_numpy()
    if not in_training.any() or in_training.all():
        raise UsageError(
            f"the cut {cut.isoformat()} leaves no events to "
            f"{'train on' if not in_training.any() else 'evaluate on'}: choose another date."
        )
    training, holdout = frame.loc[in_training], frame.loc[~in_training]
    y_train, y_holdout = target_all[in_training], target_all[~in_training]

    maps = {
        column: category_map(training[column], max_categories) for column in CATEGORICAL_FEATURES
    }
    weights, censoring_info = None, {"method": "none"}
    if censoring == "ipcw":
        weights, censoring_info = censoring_weights(whole_log, cut)
    estimator = _estimator(loss, seed)
    with openmp_threads(len(training)):
        estimator.fit(
            feature_matrix(training, maps),
            np.log1p(y_train) if loss == "log" else y_train,
            sample_weight=weights,
        )

    metadata: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "target": "closed_at - sys_updated_at, seconds",
        "loss": loss,
        "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
        "hyperparameters": {**HYPERPARAMETERS, "random_state": seed},
        "features": list(FEATURES),
        "categorical_features": list(CATEGORICAL_FEATURES),
        "columns": list(INPUT_COLUMNS),
        "category_maps": maps,
        "data_sha256": data_sha256,
        "versions": _versions(),
    }
    model = TrainedModel(estimator, metadata)
    median = float(np.median(y_train))
    predicted, heuristic = model(holdout), heuristic_model(holdout)
    mae = _mae(y_holdout, predicted)
    mae_constant = _mae(y_holdout, np.full(len(y_holdout), median))
    mae_heuristic = _mae(y_holdout, heuristic)
    # The events still open: a Closed-state event's target is about 0 (the closing update
    # itself), a free win that flatters every model. What a team cares about is the rest.
    is_open = (holdout["incident_state"].astype(str) != CLOSED_STATE).to_numpy()
    open_states = None
    if is_open.any():
        y_open = y_holdout[is_open]
        open_mae = _mae(y_open, predicted[is_open])
        open_constant = _mae(y_open, np.full(len(y_open), median))
        open_heuristic = _mae(y_open, heuristic[is_open])
        open_states = {
            "events": int(is_open.sum()),
            "MAE": open_mae,
            "MAE_constant": open_constant,
            "skill": _skill(open_mae, open_constant),
            "MAE_heuristic": open_heuristic,
            "skill_vs_heuristic": _skill(open_mae, open_heuristic),
        }
    metadata["training"] = {
        "cut": cut.isoformat(),
        "train_fraction": None if closed_before is not None else train_fraction,
        "first_closed_at": _iso(training["closed_at"].min()),
        "last_closed_at": _iso(training["closed_at"].max()),
        "events": int(len(training)),
        "incidents": int(training["number"].nunique()) if "number" in training else None,
        "median_target": median,
        "censoring": censoring_info,
    }
    metadata["holdout"] = {
        "first_closed_at": _iso(holdout["closed_at"].min()),
        "last_closed_at": _iso(holdout["closed_at"].max()),
        "events": int(len(holdout)),
        "incidents": int(holdout["number"].nunique()) if "number" in holdout else None,
        "MAE": mae,
        "MAE_constant": mae_constant,
        "skill": _skill(mae, mae_constant),
        "MAE_heuristic": mae_heuristic,
        "skill_vs_heuristic": _skill(mae, mae_heuristic),
        "open_states": open_states,
    }
    return TrainingResult(model)


# --- Censoring-aware training -----------------------------------------------------------------


def censoring_weights(frame: pd.DataFrame, cut: pd.Timestamp) -> tuple[np.ndarray, dict[str, Any]]:
    """Inverse-probability-of-censoring weights for the events that train (incidents closed
    before `cut`, in `frame`'s order), and how they came about.

    At the cut, an event known then (updated before it) of an incident still open is censored:
    its time to close is only known to exceed `cut - sys_updated_at`. Training on the closed
    ones alone under-represents long times to close; weighting each closed event by
    1 / G(Y-), G the Kaplan-Meier estimate of the censoring survival P(C > t) (censoring as
    the event), makes them stand for the censored ones too (Robins & Rotnitzky 1992). G is
    clipped at IPCW_FLOOR; the effective sample size (sum w)^2 / sum w^2 says what is left.
    """
    from ticketeval.scoring.censoring import kaplan_meier, survival_at

    at = np.datetime64(cut.to_datetime64())
    updated = frame["sys_updated_at"].to_numpy()
    closed_at = frame["closed_at"].to_numpy()
    known = updated < at
    closed = closed_at < at  # NaT: never closed, so censored
    seconds = np.timedelta64(1, "s")
    observed = np.where(closed, (closed_at - updated) / seconds, (at - updated) / seconds)
    censored = known & ~closed & ~np.isnan(observed)
    in_curve = (known & closed) | censored
    curve = kaplan_meier(observed[in_curve], censored[in_curve])
    training = closed & ~np.isnan(observed)
    survival = survival_at(curve, observed[training], just_before=True)
    weights = 1.0 / np.maximum(survival, IPCW_FLOOR)
    return weights, {
        "method": "ipcw",
        "censored_events": int(censored.sum()),
        "clipped_events": int((survival < IPCW_FLOOR).sum()),
        "effective_sample_size": float(weights.sum() ** 2 / np.square(weights).sum()),
        "events": int(len(weights)),
        "floor": IPCW_FLOOR,
    }


# --- From the cache ----------------------------------------------------------------------------


def training_frame(data_dir: Path, *, demo: bool = False) -> tuple[pd.DataFrame, str]:
    """The cached events' columns training needs (the demo data's with `demo`), and the
    data's CSV sha256. A damaged cache is one line saying how to fetch it again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = read_cache_info(data_dir, demo=demo)
    if info is None:
        fetch = "ticketeval fetch --source demo" if demo else "ticketeval fetch"
        raise DataError(f"no data in {data_dir} yet: run `{fetch}`.")
    columns = list(dict.fromkeys([*INPUT_COLUMNS, "number", "closed_at"]))
    path = cache_path(data_dir, demo=demo)
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, ValueError, pa.ArrowException) as error:
        raise unreadable_cache(path, error, demo=demo) from None
    return table.to_pandas(), info.csv_sha256


def train_from_cache(data_dir: Path, *, demo: bool = False, **options: Any) -> TrainingResult:
    """`train` on the cached event log (the demo data's with `demo`), recording the cache's
    CSV sha256."""
    frame, sha256 = training_frame(data_dir, demo=demo)
    return train(frame, data_sha256=sha256, **options)
