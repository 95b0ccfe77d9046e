"""Backtest options refused before any cluster starts (the backtests themselves, which run on a
LocalCluster, are in tests/e2e/test_backtest_alerts.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import invoke
from ticketeval.errors import ExitCode


def test_a_reference_longer_than_the_backtest_is_refused(data_dir: Path) -> None:
    result = invoke("backtest", "--every", "month", "--reference", "40")
    assert result.exit_code == ExitCode.USAGE
    assert "--reference 40 is more than the" in result.stderr
