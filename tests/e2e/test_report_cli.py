"""`--report` on a backtest (a LocalCluster) and on the real file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import chromium, render
from tests.unit.report.test_report import SECTION_IDS as PARTS
from tests.unit.report.test_report import chart_rows, parse
from tests.unit.report.test_report_cli import invoke

pytestmark = pytest.mark.usefixtures("without_dashboard")  # the cluster is not the point here


def test_a_backtests_report_shows_its_periods_and_alerts(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "backtest.html"
    result = invoke("backtest", "--every", "month", "--min-events", "50", "--report", str(out))
    rows = chart_rows(parse(out.read_text()), "chart-over-time")
    assert len(rows) == len(result["periods"])
    marked = [" ".join(" ".join(td.text) for td in row.find_all("td")) for row in rows]
    for row, text in zip(result["periods"], marked, strict=True):
        assert row["label"] in text
    # The demo log's last full month holds longer tickets: a data shift, not a model alert.
    assert result["data_shifts"] >= 1
    alerts = [text for text in marked if "alert" in text.lower()]
    assert len(alerts) == result["alerts"]
    assert len([text for text in marked if "data shift" in text]) == result["data_shifts"]
    # report --last redraws the same: the backtest's last period, with the run's periods.
    invoke("report", "--last", "--out", str(tmp_path / "again.html"))
    again = chart_rows(parse((tmp_path / "again.html").read_text()), "chart-over-time")
    assert len(again) == len(rows)


@pytest.mark.realdata
@pytest.mark.usefixtures("real_data_dir")
def test_the_real_files_report_is_small_and_renders_offline(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    summary = invoke("evaluate", "--batch-size", "1000", "--seed", "1", "--report", str(out))
    assert summary["source"]["matches_uci"] is True
    assert out.stat().st_size < 1_000_000
    root = parse(out.read_text())
    for part in PARTS:
        assert root.find("section", id=part)
    whole = tmp_path / "whole.html"
    invoke("evaluate", "--batch-size", "all", "--report", str(whole))
    assert whole.stat().st_size < 3_000_000
    if chromium() is None:
        pytest.skip("headless Chromium is not installed")
    rendering = render(out, tmp_path / "r.png", width=1200, height=3600)
    assert rendering.page_requests == []
