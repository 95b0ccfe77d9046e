"""Training a time-to-close model, and its model file.

Owns: which columns may be features (only what is known when the event happens; never the
incident's outcomes), the category maps, the time split, training and the holdout figures,
the skops model file (written atomically, read with an explicit allow-list of types), its
description, and the period check the leakage guard uses.

Never imports typer or rich; scikit-learn and skops are imported inside the functions that
need them, so `ticketeval --help` does not pay for them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ticketeval import __version__
from ticketeval.data.batches import CLOSED_STATE
from ticketeval.data.cache import cache_path, read_cache_info
from ticketeval.errors import DataError, ModelError, UsageError
from ticketeval.scoring.models import heuristic_model
from ticketeval.scoring.trial import compute_target

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

Loss = Literal["absolute_error", "log"]
LOSSES: tuple[Loss, ...] = ("absolute_error", "log")
DEFAULT_LOSS: Loss = "absolute_error"

# scikit-learn's defaults, with a fixed number of trees rather than early stopping: that would
# draw its validation set at random from the training events, where the events of one
# incident are near-copies of each other. On the real log 300 trees at a rate of 0.05, or
# smaller trees, moved the holdout MAE by under 0.2%.
HYPERPARAMETERS: dict[str, Any] = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31}

FORMAT = "ticketeval-model"
FORMAT_VERSION = 1
# A fixed timestamp for every entry of the model file's zip, so equal models give equal bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)

# Every type a model file of FORMAT_VERSION may hold beyond those skops trusts by default: what
# `skops.io.get_untrusted_types` lists for a file this module wrote (scikit-learn 1.9, either
# loss). Anything else is refused.
TRUSTED_TYPES = frozenset(
    {
        "functools.partial",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.utils.validation.check_array",
    }
)


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


# --- The model ---------------------------------------------------------------------------------


class TrainedModel:
    """A trained model as ticketeval's `--model` expects: `model(batch)` -> seconds per row.

    `columns` names the raw columns it reads (never an outcome column); `metadata` is plain
    data describing how it was trained and how it scored on its holdout.
    """

    def __init__(self, estimator: Any, metadata: dict[str, Any]) -> None:
        self.estimator = estimator
        self.metadata = metadata
        self.columns: tuple[str, ...] = tuple(metadata["columns"])
        self._category_maps: dict[str, list[str]] = metadata["category_maps"]
        self._log_target = metadata["loss"] == "log"

    def __call__(self, batch: pd.DataFrame) -> np.ndarray:
        if len(batch) == 0:
            return np.empty(0, dtype=float)
        with openmp_threads(len(batch)):
            raw = self.estimator.predict(feature_matrix(batch, self._category_maps))
        seconds = np.expm1(raw) if self._log_target else raw
        # A ticket cannot close before the event: negative times are the trees' noise.
        return np.clip(seconds, 0.0, None)

    def __repr__(self) -> str:
        training = self.metadata.get("training", {})
        return f"TrainedModel(loss={self.metadata['loss']!r}, cut={training.get('cut')!r})"


@dataclass(frozen=True)
class TrainingResult:
    """A model trained on the events before the cut, and its figures on the events after."""

    model: TrainedModel

    @property
    def metadata(self) -> dict[str, Any]:
        return self.model.metadata

    @property
    def holdout(self) -> dict[str, Any]:
        return self.model.metadata["holdout"]


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
) -> TrainingResult:
    """Train on the events of incidents closed before the cut, score on the others.

    `frame` holds events as the cache stores them (at least INPUT_COLUMNS and closed_at);
    events without a target (no closed_at or sys_updated_at) are dropped. `loss` is
    "absolute_error" (the metric we report) or "log" (squared error on log1p of the seconds,
    predicting expm1). The same data, options and seed give the same model.
    """
    if loss not in LOSSES:
        raise UsageError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}.")
    if not 2 <= max_categories <= MAX_CATEGORIES:
        raise UsageError(f"max_categories must be between 2 and {MAX_CATEGORIES}.")
    missing = [column for column in (*INPUT_COLUMNS, "closed_at") if column not in frame]
    if missing:
        raise DataError(f"the data lacks the column(s) {', '.join(missing)} needed to train.")
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
    estimator = _estimator(loss, seed)
    with openmp_threads(len(training)):
        estimator.fit(
            feature_matrix(training, maps), np.log1p(y_train) if loss == "log" else y_train
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


# --- The model file ----------------------------------------------------------------------------


def _canonical_skops(data: bytes) -> bytes:
    """The same skops archive with its run-dependent parts made fixed, so equal models give
    equal bytes.

    skops names objects by `id()` (the "__id__" entries, the arrays' file names) and stamps each
    zip entry with the current time. Ids are renumbered in order of first appearance in the
    schema (a renaming: objects that shared an id still share one), files named after their
    number, and every entry dated ZIP_DATE_TIME.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
        contents = {name: archive.read(name) for name in archive.namelist()}
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def renumber(node: Any) -> Any:
        if isinstance(node, dict):
            renamed = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    value = ids.setdefault(value, len(ids))
                elif key == "file" and isinstance(value, str) and value in contents:
                    suffix = Path(value).suffix
                    value = files.setdefault(value, f"{len(files)}{suffix}")
                else:
                    value = renumber(value)
                renamed[key] = value
            return renamed
        if isinstance(node, list):
            return [renumber(item) for item in node]
        return node

    schema = renumber(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        entries = [("schema.json", json.dumps(schema, indent=2).encode())]
        entries += [(new, contents[old]) for old, new in files.items()]
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return out.getvalue()


def model_bytes(model: TrainedModel) -> bytes:
    """The model file's content: a skops archive of {"model": estimator, "metadata": JSON}."""
    import skops.io

    # Metadata as one JSON string: skops stores a str as is, with no types to trust.
    payload = {"model": model.estimator, "metadata": json.dumps(model.metadata, sort_keys=True)}
    return _canonical_skops(skops.io.dumps(payload))


def save_model(result: TrainingResult | TrainedModel, path: Path | str) -> Path:
    """Write the model file at `path` atomically (a temporary file beside it, then a rename)."""
    model = result.model if isinstance(result, TrainingResult) else result
    path = Path(path)
    data = model_bytes(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


def _read_payload(path: Path) -> tuple[Any, dict[str, Any]]:
    """The estimator and metadata of a model file, every failure a one-line ModelError."""
    import skops.io

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"model file {path} does not exist: train one with `ticketeval train`."
        ) from None
    except OSError as error:
        raise ModelError(f"model file {path} cannot be read: {error.strerror or error}.") from None
    not_ours = (
        f"{path} is not a ticketeval model file (a skops archive written by `ticketeval train`)."
    )
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ModelError(not_ours)
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception:  # a zip that is not a skops archive fails in many ways, all the same to us
        raise ModelError(not_ours) from None
    unexpected = sorted(set(untrusted) - TRUSTED_TYPES)
    if unexpected:
        raise ModelError(
            f"{path} holds types a ticketeval model does not ({', '.join(unexpected[:3])}"
            f"{', …' if len(unexpected) > 3 else ''}): refusing to load it."
        )
    try:
        payload = skops.io.loads(data, trusted=untrusted)
    except Exception as error:  # skops reports a damaged archive with many exception types
        raise ModelError(f"{path} is a damaged model file ({type(error).__name__}).") from None
    if not (isinstance(payload, dict) and set(payload) == {"model", "metadata"}):
        raise ModelError(not_ours)
    try:
        metadata = json.loads(payload["metadata"])
    except (TypeError, ValueError):
        raise ModelError(not_ours) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelError(not_ours)
    if metadata.get("format_version") != FORMAT_VERSION:
        made_by = metadata.get("versions", {}).get("ticketeval", "?")
        raise ModelError(
            f"{path} is a model file of format {metadata.get('format_version')!r} (ticketeval "
            f"{made_by}); this ticketeval reads format {FORMAT_VERSION}: train the model again."
        )
    return payload["model"], metadata


def load_model_file(path: Path | str) -> TrainedModel:
    """The model in a file `save_model` wrote, ready to predict; ModelError if it is not one."""
    estimator, metadata = _read_payload(Path(path))
    from sklearn.ensemble import HistGradientBoostingRegressor

    if not isinstance(estimator, HistGradientBoostingRegressor):
        raise ModelError(f"{path} does not hold a ticketeval model.")
    return TrainedModel(estimator, metadata)


def describe_model(path: Path | str) -> dict[str, Any]:
    """What a model file says about itself (its metadata, plain data), plus its path."""
    _, metadata = _read_payload(Path(path))
    return {"path": str(path), **metadata}


# --- The leakage guard -------------------------------------------------------------------------


def overlaps_training(
    metadata: Mapping[str, Any],
    closed_from: datetime | str | None,
    closed_to: datetime | str | None,
) -> bool:
    """Whether events closed in [closed_from, closed_to) may include ones the model trained on.

    The training period is [first, last] closed_at trained on; None is an open end.
    """
    training = metadata["training"]
    first, last = (
        pd.Timestamp(training["first_closed_at"]),
        pd.Timestamp(training["last_closed_at"]),
    )
    start = None if closed_from is None else pd.Timestamp(closed_from)
    end = None if closed_to is None else pd.Timestamp(closed_to)
    if start is not None and end is not None and end <= start:
        return False  # an empty period holds no events at all
    return (start is None or start <= last) and (end is None or end > first)


# --- From the cache ----------------------------------------------------------------------------


def training_frame(data_dir: Path) -> tuple[pd.DataFrame, str]:
    """The cached events' columns training needs, and the data's CSV sha256."""
    import pyarrow.parquet as pq

    info = read_cache_info(data_dir)
    if info is None:
        raise DataError(f"no data in {data_dir} yet: run `ticketeval fetch` (or `--source demo`).")
    columns = list(dict.fromkeys([*INPUT_COLUMNS, "number", "closed_at"]))
    return pq.read_table(cache_path(data_dir), columns=columns).to_pandas(), info.csv_sha256


def train_from_cache(data_dir: Path, **options: Any) -> TrainingResult:
    """`train` on the cached event log, recording the cache's CSV sha256."""
    frame, sha256 = training_frame(data_dir)
    return train(frame, data_sha256=sha256, **options)


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
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield
