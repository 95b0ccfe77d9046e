"""`ticketeval report`: a trial's page, from what the history and the trial's results keep.

Finds the trial (by id, or the last one), its per-event results (`scoring.results`), and the trials
around it for the over-time chart: earlier trials of the same model on the same data, or, for a
backtest's period, the backtest's periods with its alert band; then builds the page
(`page`) and writes it. matplotlib is imported only when a page is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ticketeval.errors import DataError, UsageError

# The shortest --trial prefix accepted: shorter ones match trials by accident.
MIN_ID_PREFIX = 4
# Earlier trials shown in the over-time chart of a single trial.
OVER_TIME_TRIALS = 30


@dataclass(frozen=True)
class WrittenReport:
    """What `report` wrote, for the CLI to say."""

    trial_id: str
    page: str | None
    charts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "page": self.page, "charts": self.charts}


def write_trial_report(
    summary: Mapping[str, Any],
    *,
    over_time: Sequence[Mapping[str, Any]] = (),
    thresholds: Mapping[str, Any] | None = None,
    out: Path | None = None,
    png_dir: Path | None = None,
) -> WrittenReport:
    """Build and write the page (and the PNGs) of one trial, with its results when kept."""
    from ticketeval.report.page import build_report, write_report
    from ticketeval.scoring.results import read_results

    if out is None and png_dir is None:
        raise UsageError("nothing to write: give --out PATH, --png DIR, or both.")
    results_path = summary.get("results_path")
    results = None
    if results_path and Path(results_path).exists():
        results = read_results(Path(results_path))
    built = build_report(summary, results, over_time, thresholds=thresholds)
    written = write_report(built, out, png_dir)
    page = str(written[0]) if out is not None else None
    charts = [str(path) for path in written[1:]] if out is not None else list(map(str, written))
    return WrittenReport(str(summary["id"]), page, charts)


def write_report_of(
    history_url: str, summary: Mapping[str, Any], out: Path | None, png_dir: Path | None = None
) -> dict[str, Any]:
    """The page (and PNG charts) of a recorded trial, with the trials around it in the history."""
    points, band = history_points(history_url, summary)
    written = write_trial_report(
        summary, over_time=points, thresholds=band, out=out, png_dir=png_dir
    )
    return written.to_dict()


def find_trial(history_url: str, trial_id: str | None) -> dict[str, Any]:
    """The summary of trial `trial_id` (a unique prefix will do), or of the last trial."""
    from ticketeval.history.store import open_history, read_trials, redact_url

    if trial_id is not None and len(trial_id.strip()) < MIN_ID_PREFIX:
        raise UsageError(
            f"--trial {trial_id!r} is too short: give at least {MIN_ID_PREFIX} characters of "
            "the trial's id (see `ticketeval history --json` for the ids)."
        )
    summaries = []
    if read_trials(history_url, last=1):  # a history not created yet reads as empty
        with open_history(history_url, create=False) as store:
            summaries = store.summaries()
    if not summaries:
        raise DataError(
            f"no trials recorded yet in {redact_url(history_url)}: run `ticketeval evaluate`."
        )
    if trial_id is None:
        return summaries[-1]
    found = [summary for summary in summaries if str(summary["id"]).startswith(trial_id)]
    if len(found) != 1:
        problem = "no trial" if not found else f"{len(found)} trials"
        raise UsageError(
            f"{problem} with id {trial_id!r} in {redact_url(history_url)}: "
            "see `ticketeval history --json` for the ids."
        )
    return found[0]


def history_points(
    history_url: str, summary: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The over-time chart's points around `summary`, and the alert band when there is one:
    the backtest's periods for one of its periods, else the earlier trials of the same model
    on the same data (the trial itself last, even when it is not recorded yet)."""
    from ticketeval.history.rows import population
    from ticketeval.history.store import HistoryRow, read_trials, view_flags

    model = str(summary.get("model"))
    source = summary.get("source") or {}
    # The same stream (else, for trials recorded before streams, the same data) and the same
    # population: a trend of like with like.
    stream, data = source.get("stream"), source.get("csv_sha256")
    kind = population(summary)
    rows = [
        row
        for row in read_trials(history_url, model=model)
        if (row.stream == stream if row.stream and stream else row.data_sha256 == data)
        and (summary.get("run_id") or row.population == kind)
    ]
    run_id = summary.get("run_id")
    if run_id:
        periods = sorted(
            (row for row in rows if row.run_id == run_id), key=lambda row: row.closed_from or ""
        )
        points = [_point(row, bool(row.alert), summary) for row in periods]
        for point, row in zip(points, periods, strict=True):
            point["data_shift"] = bool(row.data_shift)
        return points, summary.get("band")
    singles = [row for row in rows if row.run_id is None]
    flagged = {
        row.id: flag for row, flag in zip(rows, view_flags(rows), strict=True) if not row.run_id
    }
    position = next((i for i, row in enumerate(singles) if row.id == summary["id"]), None)
    earlier: list[HistoryRow] = singles[:position] if position is not None else singles
    points = [_point(row, flagged[row.id], summary) for row in earlier[-OVER_TIME_TRIALS + 1 :]]
    current = singles[position] if position is not None else None
    points.append(
        _point(current, flagged[current.id], summary)
        if current is not None
        else _summary_point(summary)
    )
    return points, None


def backtest_points(verdict: Mapping[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """A backtest's periods as over-time points, the last period with events as current."""
    rows = verdict["periods"]
    last = max((i for i, row in enumerate(rows) if row["events"]), default=len(rows) - 1)
    points = [
        {
            "label": row["label"],
            "MAE": row["MAE"],
            "MAE_low": row["MAE_low"],
            "MAE_high": row["MAE_high"],
            "events": row["events"],
            "alert": row["alert"],
            "data_shift": row.get("data_shift", False),
            "too_small": row["too_small"],
            "current": index == last,
        }
        for index, row in enumerate(rows)
    ]
    # No MAE band: a backtest's bands are the skill's and the constant's MAE (`judge`).
    return points, None


def _point(row: Any, flagged: bool, current: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "label": row.period_label or row.timestamp[:16].replace("T", " "),
        "MAE": row.MAE,
        "MAE_low": row.MAE_low,
        "MAE_high": row.MAE_high,
        "events": row.num_obs or 0,
        "alert": flagged,
        "too_small": False,
        "current": row.id == current["id"],
    }


def _summary_point(summary: Mapping[str, Any]) -> dict[str, Any]:
    data = summary["data"]
    low, high = (data.get("metrics_ci") or {}).get("MAE") or (None, None)
    return {
        "label": str(summary.get("timestamp", ""))[:16].replace("T", " "),
        "MAE": data["metrics"]["MAE"],
        "MAE_low": low,
        "MAE_high": high,
        "events": data["num_obs"],
        "alert": bool((summary.get("alert") or {}).get("flagged")),
        "too_small": False,
        "current": True,
    }
