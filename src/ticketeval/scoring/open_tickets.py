"""The tickets still open at a date T (`--as-of`): which they are, what is already known about
their errors, and (hindsight) what their errors turned out to be.

An incident is open at T when it was opened at or before T and had not closed by T
(`opened_at <= T < closed_at`, or no `closed_at`). It is represented by its latest event known
at T (`sys_updated_at <= T`; ties on the minute broken by `sys_mod_count`), whose time to close
is right-censored at its age `c = T - sys_updated_at`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ticketeval.scoring.censoring import concordance_index, lower_bound_errors
from ticketeval.scoring.metrics import plain
from ticketeval.scoring.models import Model, model_columns, predict

if TYPE_CHECKING:
    from ticketeval.scoring.summary import TrialSummary

# What finding the open incidents reads of the whole log.
SNAPSHOT_COLUMNS = ("number", "opened_at", "sys_updated_at", "sys_mod_count", "closed_at")
AGE_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
AGE_QUANTILE_NAMES = ("p10", "p25", "p50", "p75", "p90")
# What the open tickets' summary groups by, besides what the model reads.
OPEN_COLUMNS = (*SNAPSHOT_COLUMNS, "priority", "incident_state")


def open_rows(frame: pd.DataFrame, as_of: datetime | pd.Timestamp) -> np.ndarray:
    """Positions in `frame` (the log, at least SNAPSHOT_COLUMNS) of each incident open at
    `as_of`, by its latest event known then; in the incidents' order of that event."""
    at = np.datetime64(pd.Timestamp(as_of).to_datetime64())
    updated = frame["sys_updated_at"].to_numpy()
    opened = frame["opened_at"].to_numpy()
    closed = frame["closed_at"].to_numpy()
    # NaT compares False: an event without an update time is not known; a missing opened_at
    # does not rule the incident out, a missing closed_at keeps it open.
    candidate = (updated <= at) & ~(opened > at) & ~(closed <= at)
    positions = np.flatnonzero(candidate)
    if not len(positions):
        return positions
    incident = _codes(frame["number"])[positions]
    modified = pd.to_numeric(frame["sys_mod_count"]).to_numpy(dtype=float, na_value=-1.0)
    # Sorted by incident, then time, then modification count: the last row of each incident
    # is its latest event.
    order = np.lexsort((modified[positions], updated[positions], incident))
    ranked = incident[order]
    last = np.r_[ranked[1:] != ranked[:-1], True]
    chosen = positions[order[last]]
    return np.sort(chosen)


def _codes(numbers: pd.Series) -> np.ndarray:
    if isinstance(numbers.dtype, pd.CategoricalDtype):
        return numbers.cat.codes.to_numpy()
    return pd.factorize(numbers)[0]


def ages(frame: pd.DataFrame, as_of: datetime | pd.Timestamp) -> np.ndarray:
    """Seconds from each event's update to `as_of`: how long its ticket has been open since."""
    at = np.datetime64(pd.Timestamp(as_of).to_datetime64())
    return (at - frame["sys_updated_at"].to_numpy()) / np.timedelta64(1, "s")


def hindsight_target(frame: pd.DataFrame) -> np.ndarray:
    """Seconds from each event's update to its ticket's close, where the log knows the close."""
    return (frame["closed_at"].to_numpy() - frame["sys_updated_at"].to_numpy()) / np.timedelta64(
        1, "s"
    )


def read_snapshot_log(path: Path, columns: Sequence[str] = SNAPSHOT_COLUMNS) -> pd.DataFrame:
    """The cached log's columns that finding open incidents needs (a small read)."""
    return pq.read_table(path, columns=list(dict.fromkeys(columns))).to_pandas()


@dataclass(frozen=True)
class OpenTickets:
    """The open incidents at `as_of`, each by its latest known event, and the model on them."""

    as_of: datetime
    frame: pd.DataFrame  # one row per open incident
    age: np.ndarray  # c, seconds
    predictions: np.ndarray  # the model's, seconds
    positions: np.ndarray | None = None  # the rows' positions in the cache, when read from it

    @property
    def target(self) -> np.ndarray:
        """Hindsight: the true time to close, NaN where the log does not know it."""
        return hindsight_target(self.frame)


def summarize_open(tickets: OpenTickets) -> dict[str, Any]:
    """What is known at T about the model's errors on the open tickets, and, when the log
    knows how they ended, what the errors turned out to be (hindsight)."""
    frame, age, predicted = tickets.frame, tickets.age, tickets.predictions
    bound = lower_bound_errors(age, predicted)
    overdue = predicted < age
    target = tickets.target
    known = ~np.isnan(target)
    realized = np.abs(target[known] - predicted[known])

    def mean(values: np.ndarray) -> float | None:
        return plain(values.mean()) if len(values) else None

    by_priority: dict[str, dict[str, Any]] = {}
    priority = frame["priority"].astype("string").fillna("(none)").to_numpy()
    for label in sorted(set(priority)):
        rows = priority == label
        by_priority[str(label)] = {
            "incidents": int(rows.sum()),
            "lower_bound_MAE": mean(bound[rows]),
            "overdue_share": mean(overdue[rows].astype(float)),
            "realized_MAE": mean(np.abs(target[rows & known] - predicted[rows & known])),
            # How long they have been open, against what the model predicts (the report's chart).
            "age_quantiles": dict(
                zip(
                    AGE_QUANTILE_NAMES,
                    (plain(value) for value in np.quantile(age[rows], AGE_QUANTILES)),
                    strict=True,
                )
            ),
            "mean_prediction": mean(predicted[rows]),
        }
    states = frame["incident_state"].astype("string").fillna("(none)").value_counts()
    return {
        "as_of": tickets.as_of.isoformat(timespec="seconds"),
        "incidents": len(frame),
        "lower_bound_MAE": mean(bound),
        "overdue_share": mean(overdue.astype(float)),
        "age": {
            "median": plain(np.median(age)) if len(age) else None,
            "max": plain(age.max()) if len(age) else None,
        },
        "estimated_MAE": None,
        "estimated_MAE_ci": None,
        # Hindsight: only when replaying the past, from the closures the log records after T.
        "realized_MAE": mean(realized),
        "realized_incidents": int(known.sum()),
        "by_priority": by_priority,
        "by_state": {str(state): int(count) for state, count in sorted(states.items())},
    }


def censored_concordance(
    closed_target: np.ndarray,
    closed_predictions: np.ndarray,
    tickets: OpenTickets,
) -> float | None:
    """Harrell's concordance index over the closed events (their time to close observed) and
    the open tickets (censored at their age) together."""
    target = np.asarray(closed_target, dtype=float)
    times = np.concatenate([target, tickets.age])
    predictions = np.concatenate([np.asarray(closed_predictions, dtype=float), tickets.predictions])
    observed = np.r_[np.ones(len(target), dtype=bool), np.zeros(len(tickets.age), dtype=bool)]
    return concordance_index(times, predictions, observed)


def load_open_tickets(
    data_dir: Path,
    as_of: datetime,
    model: Model,
    *,
    name: str,
    demo: bool = False,
) -> OpenTickets:
    """The incidents open at `as_of` in the cache, with `model`'s predictions for them."""
    from ticketeval.data.batches import read_events
    from ticketeval.data.cache import read_cache_info, unreadable_cache
    from ticketeval.errors import DataError

    info = read_cache_info(data_dir, demo=demo)
    if info is None:
        raise DataError(f"no data in {data_dir} yet: run `ticketeval fetch` (or `--source demo`).")
    path = Path(info.path)
    try:
        log = read_snapshot_log(path)
    except (OSError, pa.ArrowException) as error:
        raise unreadable_cache(path, error, demo=demo) from None
    rows = open_rows(log, as_of)
    wanted = model_columns(model, name=name)
    columns = None if wanted is None else list(dict.fromkeys([*OPEN_COLUMNS, *wanted]))
    frame = read_events(path, columns, rows, demo=demo)
    predictions = predict(model, frame, name=name) if len(frame) else np.empty(0, dtype=float)
    return OpenTickets(as_of, frame, ages(frame, as_of), predictions, rows)


def with_open_tickets(
    summary: TrialSummary,
    closed_target: np.ndarray,
    closed_predictions: np.ndarray,
    tickets: OpenTickets,
    estimate: dict[str, Any] | None = None,
) -> TrialSummary:
    """The trial's summary with its open tickets (`data.open`, with `estimate`'s figures when
    given) and the concordance index over closed and open tickets (`data.metrics.concordance`)."""
    data = summary["data"].copy()
    data["metrics"] = {
        **data["metrics"],
        "concordance": censored_concordance(closed_target, closed_predictions, tickets),
    }
    data["open"] = {**summarize_open(tickets), **(estimate or {})}
    result = summary.copy()
    result["data"] = data
    return result
