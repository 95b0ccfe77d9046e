"""`ticketeval report` and `--report`: a recorded trial's page, drawn from the history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.helpers import runner
from tests.unit.report.test_report import SECTION_IDS as PARTS
from tests.unit.report.test_report import chart_rows, parse
from ticketeval.cli.app import app
from ticketeval.errors import ExitCode


def invoke(*arguments: str, env: dict[str, str] | None = None) -> dict:
    result = runner.invoke(app, [*arguments, "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def headline_value(page: str, field: str) -> float:
    cell = parse(page).find("td", data_field=field)
    return float(cell.attrs["data-value"])


def test_evaluate_writes_the_trials_page_and_keeps_its_results(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "trial.html"
    summary = invoke("evaluate", "--batch-size", "300", "--seed", "4", "--report", str(out))
    assert summary["report"]["page"] == str(out)
    page = out.read_text()
    root = parse(page)
    for part in PARTS:
        assert root.find("section", id=part)
    for field in ("data.metrics.MAE", "data.metrics.MedAE", "data.baseline.MAE"):
        name = field.split(".")[-1]
        block = summary["data"]["baseline" if "baseline" in field else "metrics"]
        assert headline_value(page, field) == pytest.approx(block[name]), field
    # The per-event results are kept beside the history, and the summary points at them.
    results = Path(summary["results_path"])
    assert results.parent == data_dir / "results" and results.exists()
    # The per-priority bars are the summary's.
    rows = chart_rows(root, "chart-by-priority")
    assert len(rows) == len(summary["data"]["by_priority"])
    # A trial without --as-of has no open-tickets part.
    assert 'id="open-tickets"' not in page and "chart-open-tickets" not in page


def test_results_are_kept_for_the_last_n_trials_only(data_dir: Path) -> None:
    env = {"TICKETEVAL_RESULTS_KEEP": "2"}
    ids = [invoke("evaluate", "--batch-size", "50", env=env)["id"] for _ in range(3)]
    kept = sorted(path.stem for path in (data_dir / "results").glob("*.parquet"))
    assert kept == sorted(ids[1:])


def test_report_redraws_a_past_trial_with_pngs(data_dir: Path, tmp_path: Path) -> None:
    first = invoke("evaluate", "--batch-size", "200", "--seed", "1")
    invoke("evaluate", "--batch-size", "200", "--seed", "2")
    charts = tmp_path / "charts"
    written = invoke(
        "report",
        "--trial",
        first["id"][:8],
        "--out",
        str(tmp_path / "r.html"),
        "--png",
        str(charts),
    )
    assert written["trial_id"] == first["id"]
    assert sorted(path.name for path in charts.iterdir()) == [
        "chart-by-priority.png",
        "chart-error-distribution.png",
        "chart-over-time.png",
        "chart-predicted-vs-actual.png",
    ]
    assert headline_value((tmp_path / "r.html").read_text(), "data.metrics.MAE") == pytest.approx(
        first["data"]["metrics"]["MAE"]
    )
    # --last is the second trial, and its over-time chart shows both.
    last = invoke("report", "--last", "--out", str(tmp_path / "last.html"))
    root = parse((tmp_path / "last.html").read_text())
    assert last["trial_id"] != first["id"]
    assert len(chart_rows(root, "chart-over-time")) == 2


def test_report_errors_are_one_line(isolated_environment: Path, data_dir: Path) -> None:
    empty = runner.invoke(app, ["report", "--last"])
    assert empty.exit_code == ExitCode.DATA and "no trials recorded yet" in empty.stderr
    invoke("evaluate", "--batch-size", "20")
    unknown = runner.invoke(app, ["report", "--trial", "nope"])
    assert unknown.exit_code == ExitCode.USAGE
    assert "no trial with id 'nope'" in unknown.stderr
    both = runner.invoke(app, ["report", "--trial", "x", "--last"])
    assert both.exit_code == ExitCode.USAGE


def test_a_batch_too_large_keeps_no_results_and_its_page_says_so(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ticketeval.scoring import results

    monkeypatch.setattr(results, "RESULTS_MAX_EVENTS", 100)  # the cap, at test scale
    out = tmp_path / "big.html"
    summary = invoke("evaluate", "--batch-size", "101", "--report", str(out))
    assert "results_path" not in summary
    assert not (data_dir / "results").exists()
    assert "Per-event results not kept for this trial." in out.read_text()
    small = invoke("evaluate", "--batch-size", "100")
    assert Path(small["results_path"]).exists()
