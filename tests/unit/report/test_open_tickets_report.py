"""The report's "open tickets" part for a trial with --as-of. That a trial without --as-of has
none is checked on the page of tests/unit/report/test_report_cli.py's first test."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import invoke


def test_report_of_an_as_of_trial_shows_its_open_tickets(data_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "open.html"
    result = invoke(
        "evaluate", "--as-of", "2016-10-01", "--no-estimate", "--report", str(page), "--json"
    )
    assert result.exit_code == 0, result.output
    open_part = json.loads(result.stdout)["data"]["open"]
    html = page.read_text()
    section = re.search(r'<section id="open-tickets">(.*?)</section>', html, flags=re.S)
    assert section, html[-2000:]
    body = section[1]
    assert '<a href="#open-tickets">' in html
    assert f"{open_part['incidents']:,}" in body
    assert f"{open_part['lower_bound_MAE']:,.0f} s" in body
    assert f"{open_part['realized_MAE']:,.0f} s" in body
    assert 'id="chart-open-tickets"' in body and "<svg" in body
    for label, values in open_part["by_priority"].items():
        assert f"{values['overdue_share']:.0%} overdue" in body, label
        assert f'data-value="{float(values["incidents"])!r}"' in body
    # The page keeps its rules: nothing fetched from anywhere.
    assert "http://" not in body and "https://" not in body and "<script" not in html
