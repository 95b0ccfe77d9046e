"""Models: the reference heuristic, loading a user's model or a model file, and checking what
it predicts.

A model file (`ticketeval train`) is read by `ticketeval.scoring.model_file`, imported only
when a spec names one: the heuristic and `--help` never import scikit-learn or skops.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketeval.data.parsing import COLUMNS
from ticketeval.errors import ModelError
from ticketeval.formatting import HOUR
from ticketeval.scoring import HEURISTIC

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
    if spec == HEURISTIC:
        return heuristic_model
    if is_model_file(spec):
        from ticketeval.scoring.model_file import load_model_file

        return load_model_file(spec)
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ModelError(
            f"model {spec!r} is not 'heuristic', a model file (.skops) or "
            "'package.module:function'."
        )
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is for results (--json)
            module = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # any import-time failure (even sys.exit) is theirs to fix
        raise ModelError(f"model {spec!r} cannot be imported: {_describe(error)}.") from None
    model = getattr(module, attribute, None)
    if not callable(model):
        raise ModelError(f"model {spec!r}: {module_name} has no callable {attribute!r}.")
    return model


def model_columns(model: Model, *, name: str | None = None) -> Sequence[str] | None:
    """The columns a model reads (its `columns` attribute); None means all of them.

    The attribute must be a tuple or list of the event log's column names: a string (whose
    letters would be read as names) or an unknown name is a ModelError naming the model.
    """
    wanted = getattr(model, "columns", None)
    if wanted is None:
        return None
    name = name or _spec_of(model)
    example = "like ('priority', 'category')"
    if isinstance(wanted, str | bytes) or not isinstance(wanted, tuple | list):
        raise ModelError(
            f"model {name!r}: its columns attribute is {type(wanted).__name__} {wanted!r}, not a "
            f"tuple of column names: write it {example}."
        )
    unknown = [column for column in wanted if column not in COLUMNS]
    if unknown:
        shown = ", ".join(repr(column) for column in unknown)
        raise ModelError(
            f"model {name!r}: its columns attribute names {shown}, which the event log lacks: "
            f"use the log's own names, {example}."
        )
    return tuple(wanted)


def _spec_of(model: Model) -> str:
    module = getattr(model, "__module__", None)
    qualname = getattr(model, "__qualname__", None) or type(model).__name__
    return f"{module}:{qualname}" if module else qualname


def _describe(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r})"
    return f"{type(error).__name__}: {error}"


# --- checking what a model predicts --------------------------------------------------------------

ONE_PER_ROW = (
    "return one number of seconds per row: a 1-D array or list in the batch's order, an (n, 1) "
    "array, or a Series or one-column DataFrame with the batch's index"
)
# Seconds in one unit of each fixed-length NumPy duration; months and years have no fixed length.
SECONDS_PER_UNIT = {
    "W": 604_800.0, "D": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6,
    "ns": 1e-9, "ps": 1e-12, "fs": 1e-15, "as": 1e-18,
}  # fmt: skip


# Beyond this (in seconds, either sign) a prediction is refused: the squares of such errors
# summed over millions of rows overflow a float64, and no ticket takes millions of years.
MAX_PREDICTION_SECONDS = 1e15


def predict(model: Model, batch: pd.DataFrame, *, name: str = "model") -> np.ndarray:
    """The model's predictions, checked: one finite number of seconds per row.

    The model runs with its stdout sent to stderr (stdout carries the result, e.g. `--json`);
    anything it raises, even `sys.exit`, is a ModelError naming it. Ctrl-C still interrupts.
    """
    try:
        with contextlib.redirect_stdout(sys.stderr):
            raw = model(batch)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # the user's model failing is reported, not a traceback
        if isinstance(error, SystemExit):
            raise ModelError(
                f"model {name!r} called sys.exit({error.code!r}) instead of returning predictions."
            ) from None
        raise ModelError(f"model {name!r} raised {type(error).__name__}: {error}.") from None
    return check_predictions(raw, batch, name=name)


def check_predictions(raw: object, batch: pd.DataFrame, *, name: str = "model") -> np.ndarray:
    """`raw` as float64 seconds, one per row of `batch` in its order; ModelError otherwise.

    Accepted: numbers (integers or floats, not booleans or complex numbers) or durations
    (converted to seconds), as a 1-D array, list or pandas Index of length n, an (n, 1) array,
    or a Series or one-column DataFrame whose index is the batch's (in any order: it is aligned
    to the batch). Every value must be finite. Nothing else is guessed at.
    """
    try:
        values = _one_per_row(raw, batch, name)
        seconds = _as_seconds(values, name)
    except ModelError:
        raise
    except Exception as error:  # an object whose conversion itself fails
        raise ModelError(
            f"model {name!r} returned {type(raw).__name__}, which cannot be read as numbers "
            f"({type(error).__name__}: {error}): {ONE_PER_ROW}."
        ) from None
    if len(seconds) != len(batch):
        raise ModelError(
            f"model {name!r} returned {len(seconds)} predictions for {len(batch)} rows: "
            f"{ONE_PER_ROW}."
        )
    finite = np.isfinite(seconds)
    if not finite.all():
        position = int(np.argmin(finite))
        raise ModelError(
            f"model {name!r} returned {int((~finite).sum())} missing, NaN or infinite "
            f"prediction(s) (the first at row {position}): predict a finite number of seconds "
            "for every row."
        )
    beyond = np.abs(seconds) > MAX_PREDICTION_SECONDS
    if beyond.any():
        # Finite, but their errors squared overflow a float64: the metrics would be NaN.
        raise ModelError(
            f"model {name!r} returned {int(beyond.sum())} prediction(s) beyond ±"
            f"{MAX_PREDICTION_SECONDS:.0e} s (31 million years; the first at row "
            f"{int(np.argmax(beyond))}): their errors cannot be scored; predict seconds to close."
        )
    return seconds


def _one_per_row(
    raw: Any, batch: pd.DataFrame, name: str
) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """The values of `raw`, one per row in the batch's order, their type not yet checked."""
    if isinstance(raw, pd.DataFrame):
        if raw.shape[1] != 1:
            raise ModelError(
                f"model {name!r} returned a DataFrame with {raw.shape[1]} columns: {ONE_PER_ROW}."
            )
        raw = raw.iloc[:, 0]
    if isinstance(raw, pd.Series | pd.Index):
        if isinstance(raw, pd.MultiIndex):
            raise ModelError(f"model {name!r} returned a MultiIndex: {ONE_PER_ROW}.")
        if isinstance(raw, pd.Series):
            raw = _aligned(raw, batch, name)
        # NumPy-backed values as NumPy arrays; pandas' own (nullable, tz-aware…) as they are.
        return raw.to_numpy() if isinstance(raw.dtype, np.dtype) else raw.array
    if isinstance(raw, np.ma.MaskedArray) and np.ma.getmaskarray(raw).any():
        raise ModelError(
            f"model {name!r} returned a masked array with masked values: predict a finite "
            "number of seconds for every row."
        )
    if isinstance(raw, str | bytes | dict | set | frozenset) or not (
        hasattr(raw, "__array__") or isinstance(raw, list | tuple)
    ):
        raise ModelError(f"model {name!r} returned {type(raw).__name__}: {ONE_PER_ROW}.")
    array = np.asarray(raw)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ModelError(
            f"model {name!r} returned an array of shape {array.shape} for {len(batch)} rows: "
            f"{ONE_PER_ROW}."
        )
    return array


def _aligned(series: pd.Series, batch: pd.DataFrame, name: str) -> pd.Series:
    """`series` in the batch's row order, matched by index label; refused when its labels are
    not exactly the batch's (a different index would silently pair predictions with the wrong
    rows)."""
    if len(series) != len(batch):
        raise ModelError(
            f"model {name!r} returned {len(series)} predictions for {len(batch)} rows: "
            f"{ONE_PER_ROW}."
        )
    if series.index.equals(batch.index):
        return series
    if series.index.is_unique and batch.index.is_unique and series.index.isin(batch.index).all():
        return series.reindex(batch.index)
    raise ModelError(
        f"model {name!r} returned a Series whose index is not the batch's ({len(series)} "
        f"labels, e.g. {series.index[:3].tolist()!r}; the batch's: {batch.index[:3].tolist()!r}"
        "): keep the batch's index (pd.Series(values, index=batch.index)) or return an array."
    )


def _as_seconds(values: np.ndarray | pd.api.extensions.ExtensionArray, name: str) -> np.ndarray:
    """Numbers as float64 seconds, durations converted to seconds; other types refused."""
    dtype = values.dtype
    if isinstance(values, pd.api.extensions.ExtensionArray) and not isinstance(dtype, np.dtype):
        return _extension_as_seconds(values, name)
    values = np.asarray(values)
    kind = values.dtype.kind
    if kind in "iu":
        return values.astype(np.float64)
    if kind == "f":
        with np.errstate(over="ignore"):  # a long double beyond float64 becomes inf: refused
            return values.astype(np.float64)
    if kind == "m":
        return _duration_seconds(values, name)
    if kind == "O":
        return _objects_as_seconds(values, name)
    raise ModelError(f"model {name!r} returned {_kind_words(values.dtype)}: {_what_instead()}.")


def _duration_seconds(values: np.ndarray, name: str) -> np.ndarray:
    unit, count = np.datetime_data(values.dtype)
    if unit not in SECONDS_PER_UNIT:
        raise ModelError(
            f"model {name!r} returned durations in {unit!r} units, which have no fixed length "
            "in seconds: predict seconds (or durations in days, hours, seconds…)."
        )
    ticks = values.astype(values.dtype.newbyteorder("=")).view(np.int64)  # any byte order
    seconds = ticks.astype(np.float64) * (SECONDS_PER_UNIT[unit] * count)
    seconds[np.isnat(values)] = np.nan  # NaT is missing
    return seconds


def _extension_as_seconds(values: pd.api.extensions.ExtensionArray, name: str) -> np.ndarray:
    """pandas' own arrays: nullable integers and floats, durations; the rest refused."""
    dtype = values.dtype
    types = pd.api.types
    if types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        raise ModelError(f"model {name!r} returned {_kind_words(dtype)}: {_what_instead()}.")
    if types.is_timedelta64_dtype(dtype):
        return _duration_seconds(np.asarray(pd.TimedeltaIndex(values).to_numpy()), name)
    if types.is_integer_dtype(dtype) or types.is_float_dtype(dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    raise ModelError(f"model {name!r} returned {_kind_words(dtype)}: {_what_instead()}.")


def _objects_as_seconds(values: np.ndarray, name: str) -> np.ndarray:
    """Python objects: plain numbers or durations only, each read for what it is."""
    inferred = pd.api.types.infer_dtype(values, skipna=False)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return np.array([float(value) for value in values], dtype=np.float64)
    if inferred == "timedelta":
        return _duration_seconds(pd.to_timedelta(values).to_numpy(), name)
    words = {
        "boolean": "booleans",
        "string": "strings",
        "bytes": "bytes",
        "complex": "complex numbers",
        "datetime": "dates and times",
        "datetime64": "dates and times",
        "date": "dates",
        "time": "times of day",
        "period": "periods",
        "empty": "no values",
    }.get(inferred, f"Python objects ({inferred})")
    raise ModelError(f"model {name!r} returned {words}: {_what_instead()}.")


def _kind_words(dtype: object) -> str:
    """What a dtype holds, in words, for a message."""
    types = pd.api.types
    if types.is_bool_dtype(dtype):
        return "booleans"
    if types.is_complex_dtype(dtype):
        return "complex numbers"
    if types.is_datetime64_any_dtype(dtype):
        return "dates and times"
    if types.is_string_dtype(dtype):
        return "strings"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categories"
    return f"values of type {dtype}"


def _what_instead() -> str:
    return "predict a number of seconds (or a duration) for each row"
