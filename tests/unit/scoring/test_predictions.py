"""The prediction checker: what a model returns is accepted exactly when it means one number of
seconds per row, in the batch's order, and the accepted values are those seconds.

Each property compares `check_predictions` with an oracle written here, value by value in plain
Python (exact fractions for durations), from the rules the README states.
"""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.extra import pandas as hpd

from ticketeval.errors import ExitCode, ModelError
from ticketeval.scoring.models import MAX_PREDICTION_SECONDS, check_predictions, predict

NAME = "my_models:m"
FIXED_UNITS = {
    "W": Fraction(604_800), "D": Fraction(86_400), "h": Fraction(3_600), "m": Fraction(60),
    "s": Fraction(1), "ms": Fraction(1, 10**3), "us": Fraction(1, 10**6),
    "ns": Fraction(1, 10**9), "ps": Fraction(1, 10**12), "fs": Fraction(1, 10**15),
    "as": Fraction(1, 10**18),
}  # fmt: skip
PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A few cases, each named: every case runs, with fewer examples within it.
PER_CASE = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def batch_of(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({"priority": ["3 - Moderate"] * len(index)}, index=index)


def outcome(raw: Any, batch: pd.DataFrame) -> np.ndarray | None:
    """What the checker makes of `raw`: its seconds, or None when it refuses (in one line,
    naming the model, with the model error's exit code)."""
    try:
        seconds = check_predictions(raw, batch, name=NAME)
    except ModelError as error:
        message = str(error)
        assert message.startswith(f"model {NAME!r} ") and "\n" not in message, message
        assert error.exit_code == ExitCode.MODEL
        return None
    assert seconds.dtype == np.float64 and seconds.shape == (len(batch),)
    return seconds


def seconds_of(value: Any, dtype: np.dtype) -> float | None:
    """The seconds one element means, or None: exact arithmetic, then one rounding."""
    if dtype.kind in "iu":
        return float(int(value))
    if dtype.kind == "f":
        return float(value)
    if dtype.kind == "m":
        unit, count = np.datetime_data(dtype)
        if unit not in FIXED_UNITS or np.isnat(value):
            return None
        return float(int(value.astype(np.int64)) * count * FIXED_UNITS[unit])
    return None  # booleans, complex numbers, strings, dates, bytes, records: refused


def oracle_array(array: np.ndarray, rows: int) -> list[float] | None:
    if array.shape not in ((rows,), (rows, 1)):
        return None
    meant = []
    for value in array.reshape(-1):
        seconds = seconds_of(value, array.dtype)
        # Beyond MAX_PREDICTION_SECONDS the errors would overflow the metrics: refused too.
        if seconds is None or not math.isfinite(seconds) or abs(seconds) > MAX_PREDICTION_SECONDS:
            return None
        meant.append(seconds)
    return meant


def agrees(got: np.ndarray | None, meant: list[float] | None) -> None:
    if meant is None:
        assert got is None, got
    else:
        assert got is not None
        np.testing.assert_allclose(got, meant, rtol=1e-12, atol=0)


# --- NumPy arrays of any dtype and shape ----------------------------------------------------------

any_dtype = st.one_of(
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.boolean_dtypes(),
    hnp.timedelta64_dtypes(),
    hnp.datetime64_dtypes(),
    hnp.unicode_string_dtypes(),
    hnp.byte_string_dtypes(),
    hnp.array_dtypes(allow_subarrays=False),
)


@st.composite
def arrays_for_a_batch(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    rows = draw(st.integers(1, 8))
    shape = draw(
        st.one_of(
            st.just((rows,)),
            st.just((rows, 1)),
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=8),
        )
    )
    return draw(hnp.arrays(draw(any_dtype), shape)), rows


@PROPERTY
@given(arrays_for_a_batch())
def test_an_array_is_accepted_exactly_when_it_means_seconds_per_row(
    case: tuple[np.ndarray, int],
) -> None:
    array, rows = case
    batch = batch_of(pd.RangeIndex(rows))
    agrees(outcome(array, batch), oracle_array(array, rows))
    # The same values as a plain list of Python objects (what a model might build).
    if array.ndim == 1 and array.dtype.kind in "iufb":
        agrees(outcome(array.tolist(), batch), oracle_array(array, rows))


# --- Series and DataFrames: matched to the batch by index ----------------------------------------

batch_indexes = hpd.indexes(
    elements=st.integers(-50, 50), unique=True, min_size=1, max_size=8, dtype=np.int64
)


def oracle_labelled(values: list[Any], labels: pd.Index, batch: pd.DataFrame) -> list | None:
    """Values labelled by `labels`, in the batch's order; None when the labels are not the
    batch's own (the same, in any order, each once)."""
    if len(labels) != len(batch):
        return None
    if list(labels) == list(batch.index):
        return values
    if len(set(labels)) != len(labels) or set(labels) != set(batch.index):
        return None
    by_label = dict(zip(labels, values, strict=True))
    return [by_label[label] for label in batch.index]


@st.composite
def labelled_for_a_batch(draw: st.DrawFn) -> tuple[pd.Index, pd.Index]:
    index = draw(batch_indexes)
    labels = draw(
        st.one_of(
            st.just(index),
            st.permutations(list(index)).map(lambda order: pd.Index(order, dtype=np.int64)),
            hpd.indexes(elements=st.integers(-50, 50), max_size=9, dtype=np.int64),
        )
    )
    return index, labels


series_dtypes = st.one_of(
    hnp.integer_dtypes(endianness="="),
    hnp.floating_dtypes(endianness="=", sizes=(32, 64)),
    hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(endianness="="),
    st.just(np.dtype("m8[ns]")),
    st.just(np.dtype("M8[ns]")),
    st.just(np.dtype(object)),
)


@PROPERTY
@given(labelled_for_a_batch(), series_dtypes, st.data())
def test_a_series_is_matched_to_the_batch_by_its_index(
    case: tuple[pd.Index, pd.Index], dtype: np.dtype, data: st.DataObject
) -> None:
    index, labels = case
    if dtype == np.dtype(object):
        elements = st.one_of(st.integers(-(10**6), 10**6), st.text(max_size=3), st.booleans())
        values = pd.Series(
            data.draw(st.lists(elements, min_size=len(labels), max_size=len(labels))), dtype=object
        )
        values.index = labels
    else:
        values = data.draw(hpd.series(dtype=dtype, index=st.just(labels)))
    batch = batch_of(index)
    array = values.to_numpy()
    if array.dtype == object:
        numbers = all(type(x) is int for x in array)
        array = array.astype(np.int64) if numbers and len(array) else array
    per_value = oracle_array(array, len(labels)) if array.dtype != object else None
    meant = None if per_value is None else oracle_labelled(per_value, labels, batch)
    agrees(outcome(values, batch), meant)
    # A one-column DataFrame means the same; two columns mean two numbers per row.
    agrees(outcome(values.to_frame("seconds"), batch), meant)
    two = pd.DataFrame({"a": values, "b": values})
    assert outcome(two, batch) is None


@pytest.mark.parametrize("width", [0, 1, 2, 3])
@PER_CASE
@given(st.data())
def test_a_dataframe_needs_exactly_one_column(width: int, data: st.DataObject) -> None:
    frame = data.draw(
        hpd.data_frames(
            columns=hpd.columns(width, dtype=float),
            index=hpd.range_indexes(min_size=1, max_size=8),
        )
    )
    batch = batch_of(pd.RangeIndex(len(frame)))
    meant = None
    if frame.shape[1] == 1:
        meant = oracle_array(frame.iloc[:, 0].to_numpy(), len(frame))
    agrees(outcome(frame, batch), meant)


# --- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", list("smhD"))
@PER_CASE
@given(st.lists(st.integers(-(10**5), 10**5), min_size=1, max_size=8))
def test_pandas_durations_are_read_as_seconds(unit: str, counts: list[int]) -> None:
    batch = batch_of(pd.RangeIndex(len(counts)))
    durations = pd.to_timedelta(counts, unit=unit)
    words = {"s": "seconds", "m": "minutes", "h": "hours", "D": "days"}[unit]
    meant = [dt.timedelta(**{words: count}).total_seconds() for count in counts]
    agrees(outcome(durations, batch), meant)  # a TimedeltaIndex: by position
    agrees(outcome(pd.Series(durations), batch), meant)  # a Series: by index
    agrees(outcome(list(durations), batch), meant)  # pandas Timedelta objects
    agrees(outcome(durations.to_numpy(), batch), meant)  # numpy timedelta64[ns]


# --- what each rule is there for, one example each ------------------------------------------------


def test_a_shuffled_series_is_aligned_not_read_by_position() -> None:
    batch = batch_of(pd.RangeIndex(4))
    shuffled = pd.Series([30.0, 10.0, 40.0, 20.0], index=[2, 0, 3, 1])
    assert outcome(shuffled, batch).tolist() == [10.0, 20.0, 30.0, 40.0]


def test_a_series_with_other_labels_is_refused() -> None:
    batch = batch_of(pd.Index([10, 11, 12]))
    with pytest.raises(ModelError, match="index is not the batch's"):
        check_predictions(pd.Series([1.0, 2.0, 3.0]), batch, name=NAME)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (np.ones((2, 2)), "shape (2, 2)"),
        (np.array([True, False, True, False]), "booleans"),
        (np.array([1 + 2j, 1, 1, 1]), "complex numbers"),
        (np.array(["1", "2", "3", "4"], dtype=object), "strings"),
        (pd.date_range("2016-01-01", periods=4), "dates and times"),
        (pd.Series(pd.date_range("2016-01-01", periods=4, tz="UTC")), "dates and times"),
        (np.array([1, 2, 3, 4], dtype="m8[M]"), "no fixed length"),
        (pd.Series([1, 2, None, 4], dtype="Int64"), "1 missing, NaN or infinite"),
        (np.float64(3600.0), "shape ()"),
        (3600.0, "returned float"),
        ("3600", "returned str"),
        (np.ma.masked_array([1.0, 2.0, 3.0, 4.0], mask=[0, 1, 0, 0]), "masked values"),
        ([1.0, 2.0, 3.0], "3 predictions for 4 rows"),
    ],
)
def test_what_does_not_mean_seconds_per_row_is_refused(raw: Any, fragment: str) -> None:
    with pytest.raises(ModelError, match=None) as raised:
        check_predictions(raw, batch_of(pd.RangeIndex(4)), name=NAME)
    assert fragment in str(raised.value)


def test_a_timedelta_is_not_read_as_nanoseconds() -> None:
    batch = batch_of(pd.RangeIndex(2))
    hours = np.array([1, 2], dtype="m8[h]").astype("m8[ns]")
    assert outcome(hours, batch).tolist() == [3600.0, 7200.0]


def test_predict_runs_the_model_and_checks_what_it_returns() -> None:
    batch = batch_of(pd.RangeIndex(3))
    assert predict(lambda b: pd.Series(7.0, index=b.index), batch, name=NAME).tolist() == [7.0] * 3
    with pytest.raises(ModelError, match="returned booleans"):
        predict(lambda b: b["priority"] == "1 - Critical", batch, name=NAME)
