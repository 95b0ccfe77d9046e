"""`backtest`'s options: each bad value refused in one line with exit code 2 (3 for a period
with no data), before any cluster starts, nothing recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.helpers import expect_error, invoke, snapshot
from ticketeval.errors import ExitCode

NOT_A_PERIOD = "is not a period: use 'month' (calendar months), 'week' (weeks from Monday)"


@pytest.mark.parametrize(
    ("arguments", "code", "fragments"),
    [
        (["--every", "fortnight"], ExitCode.USAGE, ("--every 'fortnight'", NOT_A_PERIOD)),
        (["--every", "0d"], ExitCode.USAGE, ("--every '0d'", NOT_A_PERIOD)),
        (["--every", "-3d"], ExitCode.USAGE, ("--every '-3d'", NOT_A_PERIOD)),
        (["--reference", "0"], ExitCode.USAGE, ("--reference must be at least 1 period, not 0",)),
        (["--reference", "-2"], ExitCode.USAGE, ("--reference must be at least 1 period",)),
        (["--min-events", "-1"], ExitCode.USAGE, ("--min-events must be 0 or more, not -1",)),
        (["--batch-size", "0"], ExitCode.USAGE, ("batch size must be at least 1, not 0",)),
        (["--batch-size", "x"], ExitCode.USAGE, ("--batch-size 'x' is not a number of events",)),
        (["--workers", "0"], ExitCode.USAGE, ("--workers must be at least 1, not 0",)),
        (["--memory-limit", "1KiB"], ExitCode.USAGE, ("--memory-limit 1KiB is below the minimum",)),
        (
            ["--closed-from", "yesterday"],
            ExitCode.USAGE,
            ("--closed-from 'yesterday' is not a date", "YYYY-MM-DD"),
        ),
        (
            ["--closed-from", "2016-05-01", "--closed-to", "2016-04-01"],
            ExitCode.USAGE,
            ("is not before --closed-to 2016-04-01 00:00", "the period would be empty"),
        ),
        (
            ["--closed-from", "2030-01-01"],
            ExitCode.DATA,
            ("no events closed from 2030-01-01 00:00",),
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_bad_backtest_option_is_one_line_before_anything_runs(
    data_dir: Path, arguments: list[str], code: ExitCode, fragments: tuple[str, ...]
) -> None:
    before = snapshot(data_dir)
    result = invoke("backtest", *arguments)
    expect_error(result, code, *fragments)
    assert result.stdout == ""
    assert snapshot(data_dir) == before  # no trial recorded, no cache touched
