"""Drawing a batch of events from the cache: which rows, which columns, reproducibly."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ticketeval.data.cache import CacheInfo, cache_path, read_cache_info, unreadable_cache
from ticketeval.data.periods import Period
from ticketeval.errors import DataError, UsageError

# What every trial reads: the target's two columns, the priority the summary groups by, and
# the ticket and its state (counted, and shown among the worst predictions); a model may ask
# for more (see `model_columns`).
TRIAL_COLUMNS = ("number", "incident_state", "priority", "sys_updated_at", "closed_at")


@dataclass
class Batch:
    """A sample of events, the seed that drew it, the data and the period it came from."""

    frame: pd.DataFrame
    seed: int
    cache: CacheInfo
    period: Period = field(default_factory=Period)


def load_batch(
    data_dir: Path,
    batch_size: int | None,
    seed: int | None = None,
    columns: Sequence[str] | None = None,
    period: Period | None = None,
    *,
    allow_fewer: bool = False,
    demo: bool = False,
) -> Batch:
    """`batch_size` events (None: all of them) sampled without replacement from the cache,
    reproducible by seed; with a bounded `period`, only from the events closed in it.
    `allow_fewer` takes every event when fewer than `batch_size` are available (a default
    batch size meeting a small period), instead of refusing.

    Only the needed columns are read, and rows are drawn before the conversion to pandas.
    `demo` reads the demo data's cache instead of the real data's.
    """
    info = read_cache_info(data_dir, demo=demo)
    if info is None:
        raise DataError(f"no data in {data_dir} yet: run `ticketeval fetch` (or `--source demo`).")
    period = period or Period()
    path = Path(info.path)
    candidates = closed_in(path, period) if period.selective else None
    available = info.rows if candidates is None else len(candidates)
    if candidates is not None and available == 0:
        raise DataError(f"no events {period.describe()} in the data ({describe_span(info)}).")
    size = available if batch_size is None else batch_size
    if allow_fewer:
        size = min(size, available)
    check_batch_size(size, available, period)
    wanted = None if columns is None else list(dict.fromkeys([*TRIAL_COLUMNS, *columns]))
    seed = secrets.randbits(32) if seed is None else seed
    # Rows in the cache's order: the metrics do not depend on it, and reading is sequential.
    if size == available:
        # All of them; drawing a permutation would double memory.
        rows = np.arange(info.rows) if candidates is None else candidates
    else:
        rng = np.random.default_rng(seed)
        drawn = np.sort(rng.choice(available, size=size, replace=False))
        rows = drawn if candidates is None else candidates[drawn]
    try:
        frame = _read_rows(path, wanted, rows)
    except (OSError, pa.ArrowException) as error:  # a damaged page, a truncated file
        raise unreadable_cache(path, error, demo=demo) from None
    return Batch(frame, seed, info, period)


CLOSED_STATE = "Closed"


def closed_in(path: Path, period: Period) -> np.ndarray:
    """The rows (in order) whose incident closed within the period (with `as_of`: the events
    known then, of incidents closed by then; with `open_only`: of those the events whose state
    is not Closed)."""
    columns = ["closed_at"]
    if period.as_of is not None:
        columns.append("sys_updated_at")
    if period.open_only:
        columns.append("incident_state")
    table = pq.read_table(path, columns=columns)
    closed = table.column("closed_at")
    keep = pc.is_valid(closed)
    if period.open_only:
        state = table.column("incident_state")
        is_closed = pc.fill_null(pc.equal(state.cast(pa.string()), CLOSED_STATE), False)
        keep = pc.and_(keep, pc.invert(is_closed))
    if period.closed_from is not None:
        keep = pc.and_(keep, pc.greater_equal(closed, pa.scalar(period.closed_from, closed.type)))
    if period.closed_to is not None:
        keep = pc.and_(keep, pc.less(closed, pa.scalar(period.closed_to, closed.type)))
    if period.as_of is not None:
        as_of = pa.scalar(period.as_of, closed.type)
        updated = table.column("sys_updated_at")
        keep = pc.and_(keep, pc.less_equal(closed, as_of))
        keep = pc.and_(keep, pc.fill_null(pc.less_equal(updated, as_of), False))
    return np.flatnonzero(keep.to_numpy(zero_copy_only=False))


def closure_span(data_dir: Path, *, demo: bool = False) -> tuple[datetime, datetime] | None:
    """The first and last closure in the cache, or None when nothing has closed."""
    closed = pq.read_table(cache_path(data_dir, demo=demo), columns=["closed_at"]).column(0)
    first, last = pc.min(closed).as_py(), pc.max(closed).as_py()
    return None if first is None else (first, last)


@dataclass(frozen=True)
class FirstClosures:
    """Each incident's first closure in a cache, sorted, in the closed_at column's unit: how
    many incidents closed before a moment is then a binary search (a backtest asks it for
    every period, which read the two columns of the whole log each time)."""

    values: np.ndarray
    type: pa.DataType

    def before(self, moment: datetime) -> int:
        """How many incidents have an event closed before `moment`."""
        at = pa.scalar(moment, self.type).value
        return int(np.searchsorted(self.values, at, side="left"))


def first_closures(path: Path) -> FirstClosures:
    """The first closure of each incident (by number) of the cache at `path`."""
    table = pq.read_table(path, columns=["number", "closed_at"])
    numbers = table.column("number")
    if pa.types.is_dictionary(numbers.type):  # grouped by the numbers, not their codes
        numbers = numbers.cast(numbers.type.value_type)
    closed = table.column("closed_at")
    firsts = (
        pa.table({"number": numbers, "closed_at": closed})
        .group_by("number")
        .aggregate([("closed_at", "min")])
    )
    first = firsts.column("closed_at_min")
    # An event without a number is no incident; one never closed has no first closure.
    known = pc.and_(pc.is_valid(firsts.column("number")), pc.is_valid(first))
    values = first.filter(known).cast(pa.int64()).to_numpy()
    return FirstClosures(np.sort(values), closed.type)


def incidents_closed_before(path: Path, moment: datetime) -> int:
    """How many incidents of the cache closed before `moment`: what a trial ending there
    covered, to tell later whether tickets closed before it arrived late."""
    return first_closures(path).before(moment)


def describe_span(info: CacheInfo) -> str:
    return f"{info.rows:,} events from {info.source}"


def read_events(
    path: Path, columns: Sequence[str] | None, rows: np.ndarray, *, demo: bool = False
) -> pd.DataFrame:
    """The given rows (sorted positions) of the cache, only `columns` (None: all of them)."""
    try:
        if not len(rows):  # no row group to read: the columns, empty, with their types
            empty = pq.read_schema(path).empty_table()
            return empty.select(list(columns or empty.column_names)).to_pandas()
        return _read_rows(path, None if columns is None else list(columns), rows)
    except (OSError, pa.ArrowException) as error:  # a damaged page, a truncated file
        raise unreadable_cache(path, error, demo=demo) from None


def _read_rows(path: Path, columns: list[str] | None, rows: np.ndarray) -> pd.DataFrame:
    """The given rows (sorted) of a Parquet file as a DataFrame.

    Read one column at a time, one row group at a time, so memory holds the finished columns
    plus one column's pieces: near the size of the rows wanted, not of the whole log.
    """
    parquet = pq.ParquetFile(path, page_checksum_verification=True)
    selections: list[tuple[int, pa.Array | None]] = []  # row group, rows in it (None: all)
    first_row = 0
    for group in range(parquet.num_row_groups):
        group_rows = parquet.metadata.row_group(group).num_rows
        start, stop = np.searchsorted(rows, [first_row, first_row + group_rows])
        if stop - start == group_rows:
            selections.append((group, None))
        elif stop > start:
            selections.append((group, pa.array(rows[start:stop] - first_row)))
        first_row += group_rows

    def pieces(name: str) -> Iterator[pa.Table]:
        for group, taken in selections:
            piece = parquet.read_row_group(group, columns=[name])
            yield piece if taken is None else piece.take(taken)

    frame: dict[str, pd.Series] = {}
    for name in columns or parquet.schema_arrow.names:
        arrow_type = parquet.schema_arrow.field(name).type
        if pa.types.is_timestamp(arrow_type) and arrow_type.tz is None:
            # The largest columns: fill one array piece by piece rather than join the pieces
            # and copy them, which would hold the column twice.
            values = np.empty(len(rows), dtype=f"datetime64[{arrow_type.unit}]")
            position = 0
            for piece in pieces(name):
                values[position : position + len(piece)] = piece.column(0).to_numpy()
                position += len(piece)
            frame[name] = pd.Series(values, name=name, copy=False)
        else:
            # Table.to_pandas, not ChunkedArray's (many times slower on chunked dictionaries);
            # it unites each row group's dictionary into one categorical.
            frame[name] = pa.concat_tables(list(pieces(name))).to_pandas()[name]
    return pd.DataFrame(frame, copy=False)


def parse_batch_size(value: int | str | None) -> int | None:
    """A whole number of events, or None for 'all'."""
    if value is None or isinstance(value, int):
        return value
    text = value.strip().lower()
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(
            f"--batch-size {value!r} is not a number of events: give a whole number or 'all'."
        ) from None


def check_batch_size(batch_size: int, available: int, period: Period | None = None) -> None:
    """Refuse a batch that cannot be drawn without replacement from the available events."""
    if batch_size < 1:
        raise UsageError(f"the batch size must be at least 1, not {batch_size}.")
    if batch_size > available:
        where = f"{period.describe()}" if period and period.bounded else "in the data"
        raise UsageError(
            f"the batch size {batch_size:,} is larger than the {available:,} events {where}: "
            f"use at most {available}, or --batch-size all."
        )
