"""Models: the reference heuristic, loading a user's model or a model file, and checking what
it predicts.

A model file (`ticketeval train`) is read by `ticketeval.training`, imported only when a spec
names one: the heuristic and `--help` never import scikit-learn or skops.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketeval.errors import ModelError

HOUR = 3600.0
# The seed's heuristic, with the label the data really uses ("4 - Low", not "4 - Lower").
HEURISTIC_HOURS = {"1 - Critical": 6.0, "2 - High": 24.0, "3 - Moderate": 120.0, "4 - Low": 240.0}
HEURISTIC_DEFAULT_HOURS = 180.0

Model = Callable[[pd.DataFrame], Any]


def heuristic_model(batch: pd.DataFrame) -> np.ndarray:
    """The reference model: higher-priority tickets close faster (hours per priority)."""
    priority = batch["priority"].astype("category")
    # One look-up per label, not per row; the extra last entry is for code -1 (no priority).
    hours = [
        HEURISTIC_HOURS.get(label, HEURISTIC_DEFAULT_HOURS) for label in priority.cat.categories
    ]
    per_code = np.array([*hours, HEURISTIC_DEFAULT_HOURS], dtype=float) * HOUR
    return per_code[priority.cat.codes.to_numpy()]


heuristic_model.columns = ("priority",)  # type: ignore[attr-defined]


MODEL_FILE_SUFFIX = ".skops"


def is_model_file(spec: str) -> bool:
    """Whether `spec` names a model file: it ends with .skops, or is an existing file."""
    return spec.endswith(MODEL_FILE_SUFFIX) or Path(spec).is_file()


def load_model(spec: str) -> Model:
    """`heuristic`, a model file (`ticketeval train`), or `package.module:function` naming a
    callable batch -> seconds."""
    if spec == "heuristic":
        return heuristic_model
    if is_model_file(spec):
        from ticketeval.training import load_model_file

        return load_model_file(spec)
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ModelError(
            f"model {spec!r} is not 'heuristic', a model file (.skops) or "
            "'package.module:function'."
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import-time failure of the user's module is theirs to fix
        raise ModelError(
            f"model {spec!r} cannot be imported: {type(error).__name__}: {error}."
        ) from None
    model = getattr(module, attribute, None)
    if not callable(model):
        raise ModelError(f"model {spec!r}: {module_name} has no callable {attribute!r}.")
    return model


def model_columns(model: Model) -> Sequence[str] | None:
    """The columns a model reads (its `columns` attribute); None means all of them."""
    wanted = getattr(model, "columns", None)
    return None if wanted is None else tuple(wanted)


def predict(model: Model, batch: pd.DataFrame, *, name: str = "model") -> np.ndarray:
    """The model's predictions, checked: one finite number of seconds per row."""
    try:
        raw = model(batch)
    except Exception as error:  # the user's model failing is reported, not a traceback
        raise ModelError(f"model {name!r} raised {type(error).__name__}: {error}.") from None
    try:
        predictions = np.asarray(raw, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ModelError(f"model {name!r} returned {type(raw).__name__}, not numbers.") from None
    if len(predictions) != len(batch):
        raise ModelError(
            f"model {name!r} returned {len(predictions)} predictions for {len(batch)} rows."
        )
    if not np.isfinite(predictions).all():
        raise ModelError(f"model {name!r} returned NaN or infinite predictions.")
    return predictions
