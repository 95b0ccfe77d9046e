"""The report's page: one self-contained HTML page (and a PNG per chart) showing where the model
is off, not only by how much.

It owns the page's six parts (the headline; predicted against actual; the error distribution;
MAE per priority beside a constant's; MAE over time with its alert band; the worst-predicted
events), the charts' look (colour-blind-safe, readable in print, durations in hours or days)
and the rules the page keeps so it can travel in a cron mail: no script, no external resource,
every string from the data escaped, charts as inline SVG each with its numbers in a table.

Plain data in (the trial summary dict, the per-event results frame of `ticketeval.scoring.results`,
a list of over-time points), plain data out (`Report`). matplotlib is imported only inside the
functions that draw, and only its object-oriented API (no pyplot, no global backend); typer and
rich are never imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketeval import __version__
from ticketeval.errors import DataError, UsageError
from ticketeval.files import atomic_file
from ticketeval.formatting import (
    data_value,
    dig,
    escape,
    finite,
    format_count,
    format_ratio,
    format_seconds,
    html_table,
    human_duration,
)
from ticketeval.report.charts import (
    Chart,
    PriorityScores,
    error_distribution,
    over_time_chart,
    predicted_vs_actual,
    priority_chart,
)
from ticketeval.report.open_tickets import SECTION_ID as OPEN_SECTION_ID
from ticketeval.report.open_tickets import SECTION_TITLE as OPEN_SECTION_TITLE
from ticketeval.report.open_tickets import open_tickets_section

WORST_EVENTS = 20
NOT_KEPT = "Per-event results not kept for this trial."
NOTHING_SCORED = "No event of this trial has an actual time to close."

SECTIONS = (
    ("headline", "Headline"),
    ("predicted-vs-actual", "Predicted vs actual"),
    ("error-distribution", "Error distribution"),
    ("by-priority", "MAE per priority"),
    ("over-time", "MAE over time"),
    ("worst-events", "Worst-predicted events"),
)


@dataclass(frozen=True)
class Report:
    """A built report: the whole page as one HTML string and the charts drawn on it."""

    trial_id: str
    html: str
    charts: tuple[Chart, ...]


# --- Building ------------------------------------------------------------------------------------


def build_report(
    summary: Mapping[str, Any],
    results: pd.DataFrame | None,
    over_time: Sequence[Mapping[str, Any]] = (),
    *,
    thresholds: Mapping[str, Any] | None = None,
) -> Report:
    """Build the report of one trial.

    - `summary`: the trial's summary dict (README, "The trial summary"); optional keys shown
      when present: `period` {closed_from, closed_to}, `data.metrics_ci` {MAE, MedAE, RMSE:
      [low, high]}, `alert` {flagged, reason}, `data.baseline_by_priority` {label: MAE of the
      constant}, `overlaps_training`. Any value may be None.
    - `results`: the per-event frame (`ticketeval.scoring.results.RESULT_COLUMNS`; `actual` and
      `predicted` are required, the rest shown when present), or None when not kept.
    - `over_time`: points oldest first, each {label, MAE, MAE_low, MAE_high, events, alert,
      too_small, current}, MAE in seconds.
    - `thresholds`: {lower, upper} in seconds (either may be None), the alert band.
    """
    if not isinstance(summary, Mapping):
        raise UsageError("The report needs the trial summary as a mapping (the summary's JSON).")
    frame = _scored_frame(results)
    points = [point for point in over_time if isinstance(point, Mapping)]
    priorities = _by_priority(summary, frame)
    charts: list[Chart] = []
    parts: list[str] = [_section("headline", _headline(summary))]

    if frame is None or frame.empty:
        missing = NOT_KEPT if frame is None else NOTHING_SCORED
        parts.append(_section("predicted-vs-actual", _missing(missing)))
        parts.append(_section("error-distribution", _missing(missing)))
    else:
        chart, table = predicted_vs_actual(frame)
        charts.append(chart)
        parts.append(_section("predicted-vs-actual", _figure_html(chart, table)))
        chart, table = error_distribution(frame)
        charts.append(chart)
        parts.append(_section("error-distribution", _figure_html(chart, table)))

    states = _by_state(summary)
    if priorities:
        chart, table = priority_chart(priorities, baseline_source=_baseline_source(summary))
        charts.append(chart)
        parts.append(_section("by-priority", _figure_html(chart, table, table_open=True) + states))
    else:
        missing = _missing("The summary has no per-priority scores.")
        parts.append(_section("by-priority", missing + states))

    if points:
        chart, table = over_time_chart(points, thresholds or {})
        charts.append(chart)
        parts.append(_section("over-time", _figure_html(chart, table)))
    else:
        parts.append(_section("over-time", _missing("No earlier trials or periods to compare.")))

    if frame is None:
        parts.append(_section("worst-events", _missing(NOT_KEPT)))
    elif frame.empty:
        parts.append(_section("worst-events", _missing(NOTHING_SCORED)))
    else:
        parts.append(_section("worst-events", _worst_events(frame)))

    # A trial with --as-of: the tickets still open then, after the six parts.
    open_html, open_charts = open_tickets_section(summary, len(SECTIONS) + 1)
    if open_html:
        parts.append(open_html)
        charts.extend(open_charts)

    trial_id = str(summary.get("id") or "unknown")
    return Report(trial_id=trial_id, html=_page(summary, parts), charts=tuple(charts))


def _scored_frame(results: pd.DataFrame | None) -> pd.DataFrame | None:
    """The events with both an actual and a finite prediction, with `error` (predicted - actual,
    seconds); None when the trial kept no results."""
    if results is None:
        return None
    if not isinstance(results, pd.DataFrame):
        raise UsageError("The report needs the per-event results as a pandas DataFrame.")
    missing = [name for name in ("actual", "predicted") if name not in results.columns]
    if missing:
        raise DataError(f"Per-event results lack the column(s) {', '.join(missing)}.")
    actual = pd.to_numeric(results["actual"], errors="coerce").to_numpy(dtype=float)
    predicted = pd.to_numeric(results["predicted"], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(actual) & np.isfinite(predicted)
    frame = pd.DataFrame(
        {
            name: _as_text(results[name])[keep]
            if name in results.columns
            else np.full(int(keep.sum()), "n/a", dtype=object)
            for name in ("number", "priority", "incident_state")
        }
    )
    if "sys_updated_at" in results.columns:
        times = pd.to_datetime(results["sys_updated_at"], errors="coerce")
        frame["sys_updated_at"] = times.to_numpy()[keep]
    frame["actual"] = actual[keep]
    frame["predicted"] = predicted[keep]
    frame["error"] = frame["predicted"] - frame["actual"]
    frame.attrs["median_actual_all"] = (
        float(np.median(actual[np.isfinite(actual)])) if np.isfinite(actual).any() else None
    )
    return frame


def _as_text(values: pd.Series) -> np.ndarray:
    """Labels as strings, missing as "(none)" (the summary's name for a missing priority)."""
    return values.astype("string").fillna("(none)").to_numpy(dtype=object)


def _baselines(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The constant's MAE per priority the summary holds: `data.baseline_by_priority`, or
    each `data.by_priority[label].baseline_MAE`."""
    given = dig(summary, "data", "baseline_by_priority")
    if isinstance(given, Mapping):
        return given
    by_priority = dig(summary, "data", "by_priority")
    if isinstance(by_priority, Mapping) and any(
        isinstance(scores, Mapping) and "baseline_MAE" in scores for scores in by_priority.values()
    ):
        return {
            label: scores.get("baseline_MAE")
            for label, scores in by_priority.items()
            if isinstance(scores, Mapping)
        }
    return None


def _baseline_source(summary: Mapping[str, Any]) -> str:
    return "summary" if _baselines(summary) is not None else "results"


def _by_state(summary: Mapping[str, Any]) -> str:
    """The summary's scores per incident state, as a table ("" when it has none): the Closed
    state's closing update is nearly free to predict, the open states are what matters."""
    given = dig(summary, "data", "by_state")
    if not isinstance(given, Mapping) or not given:
        return ""
    rows = []
    for label, scores in given.items():
        scores = scores if isinstance(scores, Mapping) else {}
        mae, constant = finite(scores.get("MAE")), finite(scores.get("baseline_MAE"))
        rows.append(
            [
                (str(label), None),
                (format_count(scores.get("num_obs")), finite(scores.get("num_obs"))),
                (human_duration(mae), mae),
                (human_duration(constant), constant),
            ]
        )
    table = html_table(rows, ("state", "events", "MAE", "constant's MAE"))
    return f'\n<div id="by-state"><h3>MAE per incident state</h3>\n{table}\n</div>'


def _by_priority(summary: Mapping[str, Any], frame: pd.DataFrame | None) -> list[PriorityScores]:
    """Per priority: events and MAE from the summary (from the results when the summary has
    none), beside the constant's MAE: the summary's, else computed from the results with the
    batch's median actual as the constant (what the summary's overall baseline uses)."""
    given = dig(summary, "data", "by_priority")
    baselines = _baselines(summary)
    computed: dict[str, tuple[int, float, float | None]] = {}
    if frame is not None and not frame.empty:
        constant = frame.attrs.get("median_actual_all")
        for label, rows in frame.groupby("priority", sort=True):
            baseline = None
            if constant is not None:
                baseline = float(np.abs(rows["actual"] - constant).mean())
            computed[str(label)] = (len(rows), float(rows["error"].abs().mean()), baseline)
    labels = list(given) if isinstance(given, Mapping) and given else list(computed)
    # "1 - Critical" first, whatever order the summary came in; a missing priority last.
    labels.sort(key=lambda label: (str(label) == "(none)", str(label)))
    found = []
    for label in labels:
        scores = given.get(label) if isinstance(given, Mapping) else None
        events, mae, baseline = computed.get(str(label), (None, None, None))
        if isinstance(scores, Mapping):
            events, mae = scores.get("num_obs"), scores.get("MAE")
        if isinstance(baselines, Mapping):
            baseline = baselines.get(label)
        count = finite(events)
        found.append(
            PriorityScores(
                str(label), None if count is None else int(count), finite(mae), finite(baseline)
            )
        )
    return found


# --- The page ------------------------------------------------------------------------------------

_CSS = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;
 margin:0 auto;max-width:1100px;padding:1rem 1.5rem;color:#111;background:#fff;line-height:1.4}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin:1.6rem 0 .4rem;
 border-bottom:1px solid #bbb}
nav a{margin-right:1rem;color:#0b4f8a}
.meta{color:#444;font-size:.9rem;margin:.2rem 0}
table{border-collapse:collapse;font-size:.9rem;margin:.4rem 0}
th,td{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.headline th{width:13rem}
.alert{border:3px solid #D55E00;padding:.5rem .8rem;margin:.6rem 0;font-weight:600}
.ok{border:1px solid #009E73;padding:.5rem .8rem;margin:.6rem 0}
.warn{border:2px dashed #E69F00;padding:.5rem .8rem;margin:.6rem 0}
figure{margin:.4rem 0 1rem}figure svg{width:100%;max-width:760px;height:auto;display:block}
figcaption{font-size:.9rem;color:#333;margin:.2rem 0}
details{margin:.3rem 0}summary{color:#0b4f8a}
.missing{color:#555;font-style:italic}
tr.alert-row td{font-weight:600}
@media print{nav{display:none}details>table{display:table}body{max-width:none}}
"""


def _page(summary: Mapping[str, Any], parts: list[str]) -> str:
    trial = escape(summary.get("id") or "unknown")
    model = escape(summary.get("model") or "unknown model")
    sections = list(SECTIONS)
    if dig(summary, "data", "open") is not None:
        sections.append((OPEN_SECTION_ID, OPEN_SECTION_TITLE))
    nav = "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in sections)
    meta = " · ".join(
        f"{label} {escape(value)}"
        for label, value in (
            ("recorded", summary.get("timestamp")),
            ("runner", summary.get("runner")),
            ("seed", summary.get("seed")),
            ("batch size", summary.get("batch_size")),
        )
        if value is not None
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>ticketeval: {model}, trial {trial}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<header>\n<h1>How long tickets stay open: {model}, trial {trial}</h1>\n"
        f'<p class="meta">{meta}</p>\n<nav>{nav}</nav>\n</header>\n<main>\n'
        + "\n".join(parts)
        + f'\n</main>\n<footer><p class="meta">ticketeval {escape(__version__)}. Errors are '
        "predicted minus actual: positive means the ticket closed sooner than predicted."
        "</p></footer>\n</body>\n</html>\n"
    )


def _section(key: str, body: str) -> str:
    title = dict(SECTIONS)[key]
    number = [name for name, _ in SECTIONS].index(key) + 1
    return f'<section id="{key}">\n<h2>{number}. {escape(title)}</h2>\n{body}\n</section>'


def _missing(text: str) -> str:
    return f'<p class="missing">{escape(text)}</p>'


def _headline(summary: Mapping[str, Any]) -> str:
    data = dig(summary, "data") or {}
    source = dig(summary, "source") or {}
    rows: list[str] = []

    def row(label: str, field: str | None, value: Any, text: str, extra: str = "") -> None:
        attributes = f' data-field="{escape(field)}"{data_value(value)}' if field else ""
        rows.append(
            f"<tr><th>{escape(label)}</th><td{attributes}>{escape(text)}</td><td>{extra}</td></tr>"
        )

    row("Model", "model", None, str(summary.get("model") or "n/a"))
    matches = source.get("matches_uci") if isinstance(source, Mapping) else None
    provenance = (
        "UCI's published file"
        if matches is True
        else "not UCI's published file"
        if matches is False
        else "provenance unknown"
    )
    row(
        "Data",
        "source.name",
        None,
        f"{source.get('name') or 'n/a'} ({provenance})",
        escape(f"{format_count(source.get('rows'))} events in the source")
        if source.get("rows") is not None
        else "",
    )
    period = dig(summary, "period")
    if isinstance(period, Mapping):
        start = period.get("closed_from") or "the start"
        end = period.get("closed_to") or "the end"
        row("Period (closed)", "period", None, f"{start} to {end}")
    row("Events", "data.num_obs", data.get("num_obs"), format_count(data.get("num_obs")))
    row("Scored", "data.num_scored", data.get("num_scored"), format_count(data.get("num_scored")))
    row(
        "Dropped (no close time)",
        "data.num_dropped",
        data.get("num_dropped"),
        format_count(data.get("num_dropped")),
    )
    metrics = dig(data, "metrics") or {}
    intervals = dig(data, "metrics_ci") or {}
    for name in ("MAE", "MedAE", "RMSE"):
        value = metrics.get(name) if isinstance(metrics, Mapping) else None
        row(name, f"data.metrics.{name}", value, format_seconds(value), _interval(intervals, name))
    r2 = metrics.get("R2") if isinstance(metrics, Mapping) else None
    row("R²", "data.metrics.R2", r2, format_ratio(r2))
    baseline = dig(data, "baseline") or {}
    row(
        "MAE of a constant (the median)",
        "data.baseline.MAE",
        dig(baseline, "MAE"),
        format_seconds(dig(baseline, "MAE")),
    )
    skill = dig(baseline, "skill")
    row(
        "Skill vs the constant",
        "data.baseline.skill",
        skill,
        format_ratio(skill),
        "below 0: worse than predicting the median for every ticket"
        if (finite(skill) or 0) < 0
        else "",
    )

    notes: list[str] = []
    alert = dig(summary, "alert")
    if isinstance(alert, Mapping):
        reason = alert.get("reason") or "no reason given"
        if alert.get("flagged"):
            notes.append(
                f'<p class="alert" id="alert" data-flagged="true">ALERT: {escape(reason)}</p>'
            )
        elif alert.get("flagged") is False:
            notes.append(
                f'<p class="ok" id="alert" data-flagged="false">No alert: {escape(reason)}</p>'
            )
    if summary.get("overlaps_training") is True:
        notes.append(
            '<p class="warn" id="overlaps-training">Warning: this period overlaps the data the '
            "model was trained on; these scores are optimistic.</p>"
        )
    table = '<table class="headline">\n' + "\n".join(rows) + "\n</table>"
    return "\n".join([*notes, table])


def _interval(intervals: Any, name: str) -> str:
    bounds = intervals.get(name) if isinstance(intervals, Mapping) else None
    if not isinstance(bounds, Sequence) or isinstance(bounds, str) or len(bounds) != 2:
        return ""
    low, high = (finite(bound) for bound in bounds)
    if low is None or high is None:
        return ""
    return (
        f'<span class="interval" data-field="data.metrics_ci.{escape(name)}" data-low="{low!r}" '
        f'data-high="{high!r}">95% interval {escape(human_duration(low))} to '
        f"{escape(human_duration(high))}</span>"
    )


def _figure_html(chart: Chart, table: str, *, table_open: bool = False) -> str:
    opened = " open" if table_open else ""
    return (
        f'<figure id="{escape(chart.id)}">\n{chart.svg}\n'
        f"<figcaption><strong>{escape(chart.title)}.</strong> "
        f"{escape(chart.caption)}</figcaption>\n"
        f"<details{opened}><summary>The numbers behind this chart</summary>\n{table}\n</details>\n"
        "</figure>"
    )


def _worst_events(frame: pd.DataFrame) -> str:
    count = min(WORST_EVENTS, len(frame))
    size = frame["error"].abs().to_numpy()
    # argpartition: the top 20 of 141,712 without sorting them all.
    top = np.argpartition(-size, count - 1)[:count] if count < len(frame) else np.arange(count)
    top = top[np.argsort(-size[top], kind="stable")]
    rows = []
    for rank, index in enumerate(top, start=1):
        event = frame.iloc[int(index)]
        when = event.get("sys_updated_at")
        when_text = (
            "n/a" if when is None or pd.isna(when) else f"{pd.Timestamp(when):%Y-%m-%d %H:%M}"
        )
        rows.append(
            [
                (str(rank), None),
                (str(event["number"]), None),
                (str(event["priority"]), None),
                (str(event["incident_state"]), None),
                (when_text, None),
                (human_duration(event["actual"]), float(event["actual"])),
                (human_duration(event["predicted"]), float(event["predicted"])),
                (human_duration(event["error"], signed=True), float(event["error"])),
            ]
        )
    headers = ("#", "ticket", "priority", "state", "event time", "actual", "predicted", "error")
    return (
        f'<p class="meta">The {count} events with the largest absolute error, of '
        f"{len(frame):,} scored; error is predicted minus actual.</p>\n"
        + html_table(rows, headers, css="worst-events")
    )


# --- Writing -------------------------------------------------------------------------------------


def write_report(report: Report, out: Path | None, png_dir: Path | None = None) -> list[Path]:
    """Write the page to `out` and each chart to `<png_dir>/<chart id>.png`; either may be None.

    Each file is written to a temporary name beside it and renamed when complete, so a mail
    or a browser never picks up half a file. Returns the paths written, the page first.
    """
    written = []
    if out is not None:
        written.append(_atomic_write(Path(out), report.html.encode("utf-8")))
    if png_dir is not None:
        for chart in report.charts:
            written.append(_atomic_write(Path(png_dir) / f"{chart.id}.png", chart.png))
    return written


def _atomic_write(destination: Path, content: bytes) -> Path:
    with atomic_file(destination) as out:
        out.write(content)
    return destination
