"""What a trained model may read, and how it reads it: the feature columns (only what is known
when the event happens; never the incident's outcomes), the category maps and the feature
matrix, and how many OpenMP threads scikit-learn gets.

Shared by training (`ticketeval.scoring.training`) and the model file
(`ticketeval.scoring.model_file`), so that a model can be loaded and used without the
training code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ticketeval.errors import ModelError

# --- What the model may read -------------------------------------------------------------------

# The incident's outcomes, repeated on every one of its events: known only once it has closed.
LEAKY_COLUMNS = ("closed_at", "resolved_at", "closed_code", "resolved_by", "knowledge")

CATEGORICAL_FEATURES = (
    "priority", "impact", "urgency", "incident_state", "contact_type", "location", "category",
    "subcategory", "u_symptom", "assignment_group", "assigned_to", "opened_by", "sys_updated_by",
    "notify",
)  # fmt: skip
NUMERIC_FEATURES = ("active", "reassignment_count", "reopen_count", "sys_mod_count")
# Derived from the event's own timestamps: its age and when in the week it happened.
TIME_FEATURES = ("seconds_since_opened", "hour", "weekday")
FEATURES = (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES, *TIME_FEATURES)
# made_sla is left out on purpose: on the real log it turns False almost only on the closing
# event (9,154 of its 9,215 False values), i.e. it records how the ticket ended. Before that
# it says nothing, and on the closing event incident_state already says "Closed".
INPUT_COLUMNS = (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES, "opened_at", "sys_updated_at")
assert not set(INPUT_COLUMNS) & set(LEAKY_COLUMNS), "an outcome column is a model input"

# HistGradientBoosting takes at most 255 categories per feature: the 254 most frequent values
# of the training data keep their own, every other value (and any unseen later) shares one.
MAX_CATEGORIES = 255


# --- Features ----------------------------------------------------------------------------------


def category_map(values: pd.Series, max_categories: int = MAX_CATEGORIES) -> list[str]:
    """The values that keep their own category: the most frequent, ties by value, as text.

    At most `max_categories - 1`, leaving one code for "other"; missing values are not counted.
    """
    counts = values.astype("string").value_counts(dropna=True)
    ranked = sorted(counts[counts > 0].items(), key=lambda item: (-item[1], item[0]))
    return [value for value, _ in ranked[: max_categories - 1]]


def category_codes(values: pd.Series, kept: Sequence[str]) -> np.ndarray:
    """Codes as floats: a kept value's position, len(kept) ("other") for any other value
    (rare or unseen), NaN for a missing one."""
    categorical = (
        values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")
    )
    position = {value: code for code, value in enumerate(kept)}
    # One look-up per distinct value, not per row; the extra last entry is code -1 (missing).
    per_value = [position.get(str(value), len(kept)) for value in categorical.cat.categories]
    lookup = np.array([*per_value, np.nan], dtype=float)
    return lookup[categorical.cat.codes.to_numpy()]


def feature_matrix(frame: pd.DataFrame, category_maps: Mapping[str, Sequence[str]]) -> np.ndarray:
    """The model's inputs, one row per event, columns in FEATURES' order (floats, NaN missing)."""
    missing = [column for column in INPUT_COLUMNS if column not in frame]
    if missing:
        raise ModelError(f"the data lacks the model's input column(s) {', '.join(missing)}.")
    matrix = np.empty((len(frame), len(FEATURES)), dtype=float)
    for index, column in enumerate(CATEGORICAL_FEATURES):
        matrix[:, index] = category_codes(frame[column], category_maps[column])
    offset = len(CATEGORICAL_FEATURES)
    for index, column in enumerate(NUMERIC_FEATURES, start=offset):
        matrix[:, index] = pd.to_numeric(frame[column].astype("Float64")).to_numpy(
            dtype=float, na_value=np.nan
        )
    updated = pd.to_datetime(frame["sys_updated_at"]).astype("datetime64[s]")
    opened = pd.to_datetime(frame["opened_at"]).astype("datetime64[s]")
    offset += len(NUMERIC_FEATURES)
    matrix[:, offset] = (updated - opened).to_numpy() / np.timedelta64(1, "s")
    matrix[:, offset + 1] = updated.dt.hour.to_numpy(dtype=float, na_value=np.nan)
    matrix[:, offset + 2] = updated.dt.weekday.to_numpy(dtype=float, na_value=np.nan)
    return matrix


# Below this many events, OpenMP's threads cost more than they save: each tree's work is small,
# and on a busy machine their barriers spin (on 2 busy cores, a fit of 1,200 events took 24 s
# instead of 0.7 s, and the real file's 99,168 events 11.5 s instead of 4.6 s).
PARALLEL_FROM_EVENTS = 1_000_000


@contextlib.contextmanager
def openmp_threads(events: int) -> Iterator[None]:
    """scikit-learn's OpenMP on one thread for small data; as it is for large."""
    if events >= PARALLEL_FROM_EVENTS:
        yield
        return
    with _openmp_controller().limit(limits=1):
        yield


_openmp: list[Any] = []  # the OpenMP runtimes' controller, once one is loaded


def _openmp_controller() -> Any:
    """threadpoolctl's controller of the loaded OpenMP runtimes, found once: finding them scans
    every loaded library (about 3 ms, paid per predicted batch before). Not kept while no OpenMP
    runtime is loaded yet, so that one loaded later is found."""
    if _openmp:
        return _openmp[0]
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController().select(user_api="openmp")
    if controller.lib_controllers:
        _openmp.append(controller)
    return controller
