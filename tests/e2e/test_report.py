"""The report in headless Chromium, in a fresh interpreter, and at the real file's size.

The page is checked as a reader and a mail client would meet it: parsed with the standard
library's HTML parser (six parts, the headline's numbers, each chart's numbers against the
trial, nothing fetched from outside, size), and rendered once in headless Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.browser import chromium, render
from tests.unit.report.test_report import (
    CHART_IDS,
    MB,
    THRESHOLDS,
    over_time_points,
    summary_for,
    synthetic_results,
    trial,
)
from ticketeval.report import page

__all__ = ["trial"]  # a fixture of the unit tests, imported so pytest finds it


def test_report_imports_no_cli_library_and_leaves_matplotlib_as_it_found_it() -> None:
    # A fresh interpreter: what this process imported before cannot hide an import.
    code = """
import sys
import ticketeval.report.page as page
assert "matplotlib" not in sys.modules, "matplotlib imported with the module"
import matplotlib
def settings():
    # Reading "backend" would itself import pyplot to resolve it: leave that key out.
    return {k: matplotlib.rcParams[k] for k in matplotlib.rcParams if k != "backend"}
before = settings()
from tests.unit.report.test_report import synthetic_results, summary_for, over_time_points
frame = synthetic_results(200)
page.build_report(summary_for(frame), frame, over_time_points(4))
assert settings() == before, "rcParams changed"
for name in ("matplotlib.pyplot", "typer", "rich"):
    assert name not in sys.modules, name + " imported"
print("ok")
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.skipif(chromium() is None, reason="headless Chromium is not installed")
def test_the_page_renders_in_chromium_without_a_network_request(
    trial: tuple, tmp_path: Path
) -> None:
    from PIL import Image

    _, _, built = trial
    written = page.write_report(built, tmp_path / "report.html", None)[0]
    rendering = render(written, tmp_path / "report.png", width=1200, height=3000)
    assert rendering.page_requests == []
    with Image.open(rendering.screenshot) as image:
        assert image.size == (1200, 3000)
        pixels = np.asarray(image.convert("RGB"))
    # Each pixel as one 24-bit number: np.unique over rows (axis=0) took seconds of sorting.
    wide = pixels.astype(np.uint32)
    colours = len(np.unique((wide[..., 0] << 16) | (wide[..., 1] << 8) | wide[..., 2]))
    not_white = (pixels < 245).any(axis=2).mean()
    assert colours > 200, f"{colours} colours: the charts did not render"
    assert not_white > 0.05, f"{not_white:.1%} of the page is not white"


@pytest.mark.skipif(chromium() is None, reason="headless Chromium is not installed")
def test_the_browser_helper_sees_a_request_the_page_makes(tmp_path: Path) -> None:
    # The control for the test above: a page that does fetch something must be caught.
    page = tmp_path / "fetches.html"
    page.write_text(
        '<!DOCTYPE html><p>x</p><img src="http://ticketeval.invalid/pixel.png">'
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">',
        encoding="utf-8",
    )
    rendering = render(page, tmp_path / "fetches.png", width=400, height=300)
    assert rendering.page_requests == ["http://ticketeval.invalid/pixel.png"]
    assert all("ticketeval.invalid" not in url for url in rendering.browser_requests)


def test_the_page_stays_small_at_the_real_files_size() -> None:
    # Seconds of drawing: the real file's 141,712 events, synthetic.
    events = 141_712
    frame = synthetic_results(events, seed=events)
    built = page.build_report(summary_for(frame), frame, over_time_points(), thresholds=THRESHOLDS)
    size = len(built.html.encode("utf-8"))
    assert size < 3 * MB, f"{size:,} bytes for {events:,} events"
    # Every chart is drawn, whatever the number of events.
    assert [chart.id for chart in built.charts] == list(CHART_IDS)
