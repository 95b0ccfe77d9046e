"""The real UCI file parses completely."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from tests.support.helpers import REAL_INCIDENTS, REAL_ROWS
from ticketeval.data import cache, parsing, sources
from ticketeval.scoring import models, trial


@pytest.mark.realdata
def test_the_real_file_parses_completely(
    real_fetch: cache.FetchResult, real_data_dir: Path
) -> None:
    # `cache.fetch` of the real file: the session's parse, which the other real-file tests copy.
    result = real_fetch
    info = result.cache
    assert (info.rows, info.incidents) == (REAL_ROWS, REAL_INCIDENTS)
    assert info.csv_sha256 == sources.UCI_CSV_SHA256 and info.matches_uci
    assert result.notes == []
    assert not result.reused
    frame = pa.parquet.read_table(cache.cache_path(real_data_dir)).to_pandas()
    assert frame["closed_at"].notna().all()
    assert set(frame["priority"].cat.categories) == set(parsing.PRIORITIES)
    assert frame["opened_at"].min() == datetime(2016, 2, 29, 1, 16)
    summary = trial.score_trial(data_dir=real_data_dir, batch_size=REAL_ROWS, seed=1)
    assert summary["data"]["num_obs"] == REAL_ROWS
    assert summary["data"]["num_dropped"] == 0
    # The "4 - Low" label gets its 240 h, not the 180 h default the seed's "4 - Lower" gave.
    low = frame[frame["priority"] == "4 - Low"]
    assert len(low) == summary["data"]["by_priority"]["4 - Low"]["num_obs"] > 0
    assert set(models.heuristic_model(low)) == {240 * 3600.0}
