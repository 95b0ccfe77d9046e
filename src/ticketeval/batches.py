"""Drawing a batch of events from the cache: which rows, which columns, reproducibly."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ticketeval.cache import CacheInfo, read_cache_info, unreadable_cache
from ticketeval.errors import DataError, UsageError
from ticketeval.settings import check_seed

# What every trial reads: the target's two columns and the priority the summary groups by; a
# model may ask for more (see `model_columns`).
TRIAL_COLUMNS = ("priority", "sys_updated_at", "closed_at")


@dataclass
class Batch:
    """A sample of events, the seed that drew it, and the data it came from."""

    frame: pd.DataFrame
    seed: int
    cache: CacheInfo


def load_batch(
    data_dir: Path,
    batch_size: int,
    seed: int | None = None,
    columns: Sequence[str] | None = None,
    *,
    demo: bool = False,
) -> Batch:
    """`batch_size` events sampled without replacement from the cache, reproducible by seed.

    Only the needed columns are read, and rows are drawn before the conversion to pandas.
    `demo` reads the demo data's cache instead of the real data's.
    """
    if seed is not None:
        check_seed(seed)
    info = read_cache_info(data_dir, demo=demo)
    if info is None:
        raise DataError(f"no data in {data_dir} yet: run `ticketeval fetch` (or `--source demo`).")
    check_batch_size(batch_size, info)
    wanted = None if columns is None else list(dict.fromkeys([*TRIAL_COLUMNS, *columns]))
    seed = secrets.randbits(32) if seed is None else seed
    # Rows in the cache's order: the metrics do not depend on it, and reading is sequential.
    if batch_size == info.rows:
        rows = np.arange(info.rows)  # the whole log; drawing a permutation would double memory
    else:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(info.rows, size=batch_size, replace=False))
    try:
        frame = _read_rows(Path(info.path), wanted, rows)
    except (OSError, pa.ArrowException) as error:  # a damaged page, a truncated file
        raise unreadable_cache(Path(info.path), error, demo=demo) from None
    return Batch(frame, seed, info)


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


def check_batch_size(batch_size: int, cache: CacheInfo) -> None:
    """Refuse a batch that cannot be drawn without replacement from the cached data."""
    if batch_size < 1:
        raise UsageError(f"the batch size must be at least 1, not {batch_size}.")
    if batch_size > cache.rows:
        raise UsageError(
            f"the batch size {batch_size:,} is larger than the data ({cache.rows:,} events): "
            f"use at most {cache.rows}."
        )
