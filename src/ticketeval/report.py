"""The trial report: one self-contained HTML page (and a PNG per chart) showing where the model
is off, not only by how much.

It owns the page's six parts (the headline; predicted against actual; the error distribution;
MAE per priority beside a constant's; MAE over time with its alert band; the worst-predicted
events), the charts' look (colour-blind-safe, readable in print, durations in hours or days)
and the rules the page keeps so it can travel in a cron mail: no script, no external resource,
every string from the data escaped, charts as inline SVG each with its numbers in a table.

Plain data in (the trial summary dict, the per-event results frame of `ticketeval.results`,
a list of over-time points), plain data out (`Report`). matplotlib is imported only inside the
functions that draw, and only its object-oriented API (no pyplot, no global backend); typer and
rich are never imported.
"""

from __future__ import annotations

import contextlib
import html
import io
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ticketeval import __version__
from ticketeval.errors import DataError, UsageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MINUTE, HOUR, DAY, WEEK = 60.0, 3_600.0, 86_400.0, 604_800.0
WORST_EVENTS = 20
NOT_KEPT = "Per-event results not kept for this trial."
NOTHING_SCORED = "No event of this trial has an actual time to close."

# Okabe-Ito: distinguishable with every common colour-vision deficiency; series also differ by
# marker, hatch or line style so they survive greyscale print.
BLUE, ORANGE, VERMILLION, GREY, BLACK = "#0072B2", "#E69F00", "#D55E00", "#7F7F7F", "#000000"

SECTIONS = (
    ("headline", "Headline"),
    ("predicted-vs-actual", "Predicted vs actual"),
    ("error-distribution", "Error distribution"),
    ("by-priority", "MAE per priority"),
    ("over-time", "MAE over time"),
    ("worst-events", "Worst-predicted events"),
)
CHART_IDS = (
    "chart-predicted-vs-actual",
    "chart-error-distribution",
    "chart-by-priority",
    "chart-over-time",
)

# Durations on log axes read best at round human units.
_TICKS_HOURS = (
    (1 / 60, "1 min"),
    (1.0, "1 h"),
    (6.0, "6 h"),
    (24.0, "1 d"),
    (168.0, "1 wk"),
    (720.0, "30 d"),
    (8_760.0, "1 yr"),
)


@dataclass(frozen=True)
class Chart:
    """One chart of the report: its stable id (the `<figure>`'s), title, one-line caption, the
    inline SVG and the same chart as PNG bytes (for mail)."""

    id: str
    title: str
    caption: str
    svg: str
    png: bytes


@dataclass(frozen=True)
class Report:
    """A built report: the whole page as one HTML string and the charts drawn on it."""

    trial_id: str
    html: str
    charts: tuple[Chart, ...]


# --- Formatting ----------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite float, or None for None, NaN, infinity, or anything that is not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def human_duration(seconds: Any, *, signed: bool = False) -> str:
    """A duration in the unit a reader thinks in: `42 s`, `12 min`, `8.6 h`, `1.7 d`."""
    value = _number(seconds)
    if value is None:
        return "n/a"
    size = abs(value)
    if size >= DAY:
        text = f"{size / DAY:.1f} d"
    elif size >= HOUR:
        text = f"{size / HOUR:.1f} h"
    elif size >= MINUTE:
        text = f"{size / MINUTE:.0f} min"
    else:
        text = f"{size:.0f} s"
    if value < 0 and text != "0 s":
        return f"-{text}"
    return f"+{text}" if signed and value > 0 else text


def format_seconds(seconds: Any) -> str:
    """The CLI's form: exact seconds, then the human unit when it is an hour or more."""
    value = _number(seconds)
    if value is None:
        return "n/a"
    if abs(value) >= HOUR:
        return f"{value:,.0f} s ({human_duration(value)})"
    return f"{value:,.0f} s"


def format_count(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:,.0f}"


def format_ratio(value: Any, digits: int = 3) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:,.{digits}f}"


def _e(value: Any) -> str:
    """Escape for HTML text and attribute values (quotes included)."""
    return html.escape(str(value), quote=True)


def _data_value(value: Any) -> str:
    """A machine-readable attribute with the exact value, for tests and scrapers."""
    number = _number(value)
    return "" if number is None else f' data-value="{number!r}"'


def _get(mapping: Any, *keys: str) -> Any:
    """mapping[k1][k2]…, or None where a level is missing, null, or not a mapping."""
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _unit_for(values: Sequence[float | None]) -> tuple[str, float]:
    """Days when the largest value is two days or more, else hours (never 1e6 seconds)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return ("days", DAY) if finite and max(finite) >= 2 * DAY else ("hours", HOUR)


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
    - `results`: the per-event frame (`ticketeval.results.RESULT_COLUMNS`; `actual` and
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
        chart, table = _predicted_vs_actual(frame)
        charts.append(chart)
        parts.append(_section("predicted-vs-actual", _figure_html(chart, table)))
        chart, table = _error_distribution(frame)
        charts.append(chart)
        parts.append(_section("error-distribution", _figure_html(chart, table)))

    if priorities:
        chart, table = _priority_chart(priorities, baseline_source=_baseline_source(summary))
        charts.append(chart)
        parts.append(_section("by-priority", _figure_html(chart, table, table_open=True)))
    else:
        parts.append(_section("by-priority", _missing("The summary has no per-priority scores.")))

    if points:
        chart, table = _over_time_chart(points, thresholds or {})
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


@dataclass(frozen=True)
class _Priority:
    label: str
    events: int | None
    mae: float | None
    baseline: float | None


def _baseline_source(summary: Mapping[str, Any]) -> str:
    given = isinstance(_get(summary, "data", "baseline_by_priority"), Mapping)
    return "summary" if given else "results"


def _by_priority(summary: Mapping[str, Any], frame: pd.DataFrame | None) -> list[_Priority]:
    """Per priority: events and MAE from the summary (from the results when the summary has
    none), beside the constant's MAE: the summary's, else computed from the results with the
    batch's median actual as the constant (what the summary's overall baseline uses)."""
    given = _get(summary, "data", "by_priority")
    baselines = _get(summary, "data", "baseline_by_priority")
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
        count = _number(events)
        found.append(
            _Priority(
                str(label), None if count is None else int(count), _number(mae), _number(baseline)
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
    trial = _e(summary.get("id") or "unknown")
    model = _e(summary.get("model") or "unknown model")
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title in SECTIONS)
    meta = " · ".join(
        f"{label} {_e(value)}"
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
        + f'\n</main>\n<footer><p class="meta">ticketeval {_e(__version__)}. Errors are '
        "predicted minus actual: positive means the ticket closed sooner than predicted."
        "</p></footer>\n</body>\n</html>\n"
    )


def _section(key: str, body: str) -> str:
    title = dict(SECTIONS)[key]
    number = [name for name, _ in SECTIONS].index(key) + 1
    return f'<section id="{key}">\n<h2>{number}. {_e(title)}</h2>\n{body}\n</section>'


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>'


def _headline(summary: Mapping[str, Any]) -> str:
    data = _get(summary, "data") or {}
    source = _get(summary, "source") or {}
    rows: list[str] = []

    def row(label: str, field: str | None, value: Any, text: str, extra: str = "") -> None:
        attributes = f' data-field="{_e(field)}"{_data_value(value)}' if field else ""
        rows.append(f"<tr><th>{_e(label)}</th><td{attributes}>{_e(text)}</td><td>{extra}</td></tr>")

    row("Model", "model", None, str(summary.get("model") or "n/a"))
    matches = source.get("matches_uci") if isinstance(source, Mapping) else None
    provenance = {True: "UCI's published file", False: "not UCI's published file"}.get(
        matches, "provenance unknown"
    )
    row(
        "Data",
        "source.name",
        None,
        f"{source.get('name') or 'n/a'} ({provenance})",
        _e(f"{format_count(source.get('rows'))} events in the source")
        if source.get("rows") is not None
        else "",
    )
    period = _get(summary, "period")
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
    metrics = _get(data, "metrics") or {}
    intervals = _get(data, "metrics_ci") or {}
    for name in ("MAE", "MedAE", "RMSE"):
        value = metrics.get(name) if isinstance(metrics, Mapping) else None
        row(name, f"data.metrics.{name}", value, format_seconds(value), _interval(intervals, name))
    r2 = metrics.get("R2") if isinstance(metrics, Mapping) else None
    row("R²", "data.metrics.R2", r2, format_ratio(r2))
    baseline = _get(data, "baseline") or {}
    row(
        "MAE of a constant (the median)",
        "data.baseline.MAE",
        _get(baseline, "MAE"),
        format_seconds(_get(baseline, "MAE")),
    )
    skill = _get(baseline, "skill")
    row(
        "Skill vs the constant",
        "data.baseline.skill",
        skill,
        format_ratio(skill),
        "below 0: worse than predicting the median for every ticket"
        if (_number(skill) or 0) < 0
        else "",
    )

    notes: list[str] = []
    alert = _get(summary, "alert")
    if isinstance(alert, Mapping):
        reason = alert.get("reason") or "no reason given"
        if alert.get("flagged"):
            notes.append(f'<p class="alert" id="alert" data-flagged="true">ALERT: {_e(reason)}</p>')
        elif alert.get("flagged") is False:
            notes.append(
                f'<p class="ok" id="alert" data-flagged="false">No alert: {_e(reason)}</p>'
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
    low, high = (_number(bound) for bound in bounds)
    if low is None or high is None:
        return ""
    return (
        f'<span class="interval" data-field="data.metrics_ci.{_e(name)}" data-low="{low!r}" '
        f'data-high="{high!r}">interval {_e(human_duration(low))} to '
        f"{_e(human_duration(high))}</span>"
    )


def _figure_html(chart: Chart, table: str, *, table_open: bool = False) -> str:
    opened = " open" if table_open else ""
    return (
        f'<figure id="{_e(chart.id)}">\n{chart.svg}\n'
        f"<figcaption><strong>{_e(chart.title)}.</strong> {_e(chart.caption)}</figcaption>\n"
        f"<details{opened}><summary>The numbers behind this chart</summary>\n{table}\n</details>\n"
        "</figure>"
    )


def _table(
    rows: Sequence[Sequence[tuple[str, Any]]],
    headers: Sequence[str],
    *,
    css: str = "chart-data",
    row_attributes: Sequence[str] | None = None,
) -> str:
    """A table whose cells are (text, exact value or None); numbers get data-value."""
    head = "".join(f'<th scope="col">{_e(header)}</th>' for header in headers)
    body = []
    for index, cells in enumerate(rows):
        attributes = row_attributes[index] if row_attributes else ""
        tds = "".join(
            f'<td class="num"{_data_value(value)}>{_e(text)}</td>'
            if _number(value) is not None
            else f"<td>{_e(text)}</td>"
            for text, value in cells
        )
        body.append(f"<tr{attributes}>{tds}</tr>")
    return (
        f'<table class="{css}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )


# --- Drawing -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _style(chart_id: str) -> Iterator[None]:
    """matplotlib settings for one chart, restored afterwards (no global state left behind)."""
    import matplotlib

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",  # text as text: small, selectable, searchable
            "svg.hashsalt": chart_id,  # stable ids, distinct between the page's SVGs
            "text.parse_math": False,  # a "$" in a label is a dollar, not TeX
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans", "Arial"],
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "hatch.linewidth": 0.8,
        }
    ):
        yield


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _render(figure: Figure, chart_id: str, title: str, caption: str) -> Chart:
    """The figure as inline SVG (prolog, namespaces and metadata stripped) and as PNG."""
    svg_buffer = io.StringIO()
    figure.savefig(
        svg_buffer,
        format="svg",
        metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
    )
    svg = svg_buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    # HTML knows the SVG namespaces; dropping the declarations leaves no URL on the page.
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{_e(title)}" ', 1)
    # A PNG travels alone (a mail attachment): it carries its title; the page has figcaptions.
    figure.suptitle(title, fontsize=11, fontweight="bold")
    png_buffer = io.BytesIO()
    figure.savefig(png_buffer, format="png", dpi=100)
    return Chart(chart_id, title, caption, svg.strip(), png_buffer.getvalue())


def _log_duration_axis(axis: Any, low_hours: float, high_hours: float) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = [(v, label) for v, label in _TICKS_HOURS if low_hours <= v <= high_hours]
    axis.set_major_locator(FixedLocator([v for v, _ in ticks]))
    axis.set_ticklabels([label for _, label in ticks])
    axis.set_minor_locator(NullLocator())  # fewer paths, smaller SVG


def _predicted_vs_actual(frame: pd.DataFrame) -> tuple[Chart, str]:
    chart_id = "chart-predicted-vs-actual"
    floor = MINUTE / HOUR  # log axes: shorter durations (and 0) are drawn at one minute
    actual = np.maximum(frame["actual"].to_numpy() / HOUR, floor)
    predicted = np.maximum(frame["predicted"].to_numpy() / HOUR, floor)
    clipped = int(((frame["actual"] < MINUTE) | (frame["predicted"] < MINUTE)).sum())
    low = 10 ** math.floor(math.log10(min(actual.min(), predicted.min())))
    high = 10 ** math.ceil(math.log10(max(actual.max(), predicted.max())))
    if high <= low:
        high = low * 10
    with _style(chart_id):
        from matplotlib.colors import LogNorm
        from matplotlib.ticker import FuncFormatter, NullFormatter

        figure = _new_figure(7.2, 5.2)
        axes = figure.add_subplot()
        extent = (math.log10(low), math.log10(high), math.log10(low), math.log10(high))
        hexes = axes.hexbin(
            actual,
            predicted,
            xscale="log",
            yscale="log",
            gridsize=36,
            mincnt=1,
            extent=extent,
            cmap="viridis",
            linewidths=0.2,
        )
        counts = hexes.get_array()
        top = float(counts.max()) if counts is not None and len(counts) else 1.0
        hexes.set_norm(LogNorm(vmin=1, vmax=max(2.0, top)))
        axes.plot([low, high], [low, high], color=BLACK, linestyle="--", linewidth=1.2)
        axes.text(high / 3, high / 1.5, "predicted = actual", ha="right", va="top", fontsize=9)
        axes.set_xlim(low, high)
        axes.set_ylim(low, high)
        _log_duration_axis(axes.xaxis, low, high)
        _log_duration_axis(axes.yaxis, low, high)
        axes.set_xlabel("actual time to close (log scale)")
        axes.set_ylabel("predicted time to close (log scale)")
        axes.set_aspect("equal")
        bar = figure.colorbar(hexes, ax=axes, label="events per hexagon (log scale)", shrink=0.85)
        # Plain numbers: with TeX parsing off, the default log labels would print as TeX source.
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
        caption = (
            "Each hexagon counts events (darker blue: few, yellow: many); above the dashed line "
            "the model predicted too long, below it too short."
        )
        if clipped:
            caption += f" {clipped:,} events under one minute are drawn at one minute."
        chart = _render(figure, chart_id, "Predicted vs actual time to close", caption)

    bands = ((0, HOUR, "under 1 h"), (HOUR, DAY, "1 h to 1 d"), (DAY, WEEK, "1 d to 1 wk"))
    bands += ((WEEK, 30 * DAY, "1 wk to 30 d"), (30 * DAY, math.inf, "30 d or more"))
    rows = []
    for start, stop, label in bands:
        inside = frame[(frame["actual"] >= start) & (frame["actual"] < stop)]
        if label == "under 1 h":
            inside = frame[frame["actual"] < stop]  # negative durations land here too
        if inside.empty:
            rows.append([(label, None), ("0", 0), ("n/a", None), ("n/a", None), ("n/a", None)])
            continue
        median_actual = float(inside["actual"].median())
        median_predicted = float(inside["predicted"].median())
        mae = float(inside["error"].abs().mean())
        rows.append(
            [
                (label, None),
                (format_count(len(inside)), len(inside)),
                (human_duration(median_actual), median_actual),
                (human_duration(median_predicted), median_predicted),
                (human_duration(mae), mae),
            ]
        )
    headers = ("actual time to close", "events", "median actual", "median predicted", "MAE")
    return chart, _table(rows, headers)


# Signed-error bands of the error chart's table, in hours (predicted - actual).
_ERROR_BANDS = (
    (-math.inf, -168.0, "too short by 1 wk or more"),
    (-168.0, -24.0, "too short by 1 d to 1 wk"),
    (-24.0, -1.0, "too short by 1 h to 1 d"),
    (-1.0, 1.0, "within 1 h"),
    (1.0, 24.0, "too long by 1 h to 1 d"),
    (24.0, 168.0, "too long by 1 d to 1 wk"),
    (168.0, math.inf, "too long by 1 wk or more"),
)


def _error_distribution(frame: pd.DataFrame) -> tuple[Chart, str]:
    chart_id = "chart-error-distribution"
    errors = frame["error"].to_numpy() / HOUR
    reach = max(10.0, float(np.abs(errors).max()))
    decades = math.ceil(math.log10(reach))
    side = np.logspace(0, decades, 5 * decades + 1)  # five bins per decade beyond one hour
    edges = np.concatenate([-side[::-1], [-0.5, 0.0, 0.5], side])
    median_error = float(np.median(errors))
    with _style(chart_id):
        from matplotlib.ticker import FixedLocator, NullLocator

        figure = _new_figure(7.2, 3.8)
        axes = figure.add_subplot()
        axes.hist(errors, bins=edges, color=BLUE, edgecolor="white", linewidth=0.4)
        axes.set_xscale("symlog", linthresh=1.0, linscale=0.5)
        ticks = [(0.0, "0")]
        for hours, label in _TICKS_HOURS[1:]:
            if hours <= 10**decades:
                ticks += [(-hours, f"-{label}"), (hours, f"+{label}")]
        ticks.sort()
        axes.xaxis.set_major_locator(FixedLocator([v for v, _ in ticks]))
        axes.xaxis.set_ticklabels([label for _, label in ticks], rotation=45, ha="right")
        axes.xaxis.set_minor_locator(NullLocator())
        axes.axvline(0.0, color=BLACK, linewidth=1.0)
        axes.axvline(
            median_error,
            color=VERMILLION,
            linestyle="--",
            linewidth=1.5,
            label=f"median error {human_duration(median_error * HOUR, signed=True)}",
        )
        axes.set_xlim(-(10**decades), 10**decades)
        axes.set_xlabel("predicted minus actual (log scale beyond ±1 h)")
        axes.set_ylabel("events")
        axes.legend(loc="upper left", frameon=False)
        chart = _render(
            figure,
            chart_id,
            "Error distribution",
            "Bars left of 0: the ticket stayed open longer than predicted; right of 0: it "
            "closed sooner. Bar widths grow with the distance from 0.",
        )
    total = len(errors)
    rows = []
    for start, stop, label in _ERROR_BANDS:
        count = (
            int(((errors > start) & (errors <= stop)).sum())
            if start != -math.inf
            else int((errors <= stop).sum())
        )
        rows.append(
            [(label, None), (format_count(count), count), (f"{100 * count / total:.1f}%", None)]
        )
    return chart, _table(rows, ("predicted minus actual", "events", "share"))


def _priority_chart(priorities: list[_Priority], *, baseline_source: str) -> tuple[Chart, str]:
    chart_id = "chart-by-priority"
    name, unit = _unit_for([p.mae for p in priorities] + [p.baseline for p in priorities])
    positions = np.arange(len(priorities))
    width = 0.38
    with _style(chart_id):
        figure = _new_figure(7.2, 3.8)
        axes = figure.add_subplot()
        series = (
            ("model", [p.mae for p in priorities], -width / 2, BLUE, ""),
            ("constant (median)", [p.baseline for p in priorities], width / 2, ORANGE, "///"),
        )
        for label, values, offset, colour, hatch in series:
            heights = [np.nan if v is None else v / unit for v in values]
            bars = axes.bar(
                positions + offset,
                heights,
                width,
                label=label,
                color=colour,
                hatch=hatch,
                edgecolor=BLACK,
                linewidth=0.6,
            )
            axes.bar_label(
                bars,
                labels=[human_duration(v) for v in values],
                fontsize=8,
                padding=2,
            )
        axes.set_xticks(positions, [f"{p.label}\nn = {format_count(p.events)}" for p in priorities])
        axes.set_ylabel(f"MAE ({name})")
        axes.margins(y=0.15)
        axes.legend(loc="upper left", frameon=False, ncols=2)
        chart = _render(
            figure,
            chart_id,
            "MAE per priority, beside a constant's",
            "Solid bars: the model's mean absolute error; hatched bars: predicting the batch's "
            "median for every ticket. A solid bar taller than its hatched one is worse than "
            "the constant; n is the number of scored events.",
        )
    rows = [
        [
            (p.label, None),
            (format_count(p.events), p.events),
            (human_duration(p.mae), p.mae),
            (human_duration(p.baseline), p.baseline),
        ]
        for p in priorities
    ]
    note = (
        ""
        if baseline_source == "summary"
        else '<p class="meta">The constant\'s MAE per '
        "priority is computed from the per-event results (the batch's median actual).</p>\n"
    )
    attributes = [f' data-priority="{_e(p.label)}"' for p in priorities]
    table = _table(
        rows,
        ("priority", "events", "model MAE", "constant MAE"),
        row_attributes=attributes,
    )
    return chart, note + table


def _over_time_chart(
    points: list[Mapping[str, Any]], thresholds: Mapping[str, Any]
) -> tuple[Chart, str]:
    chart_id = "chart-over-time"
    mae = [_number(p.get("MAE")) for p in points]
    low = [_number(p.get("MAE_low")) for p in points]
    high = [_number(p.get("MAE_high")) for p in points]
    lower, upper = _number(thresholds.get("lower")), _number(thresholds.get("upper"))
    name, unit = _unit_for([*mae, *high, lower, upper])

    def scaled(values: list[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v / unit for v in values], dtype=float)

    x = np.arange(len(points))
    alert = np.array([bool(p.get("alert")) for p in points])
    small = np.array([bool(p.get("too_small")) for p in points])
    current = np.array([bool(p.get("current")) for p in points])
    y = scaled(mae)
    with _style(chart_id):
        figure = _new_figure(7.2, 3.8)
        axes = figure.add_subplot()
        band_low, band_high = scaled(low), scaled(high)
        if np.isfinite(band_low).any() and np.isfinite(band_high).any():
            axes.fill_between(
                x, band_low, band_high, color=BLUE, alpha=0.18, linewidth=0, label="MAE interval"
            )
        if lower is not None and upper is not None:
            axes.axhspan(lower / unit, upper / unit, color=GREY, alpha=0.12, linewidth=0)
        for bound, text in ((lower, "lower"), (upper, "upper")):
            if bound is not None:
                axes.axhline(bound / unit, color=GREY, linestyle=":", linewidth=1.4)
                axes.annotate(
                    f"{text} threshold",
                    (1.0, bound / unit),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="bottom",
                    fontsize=8,
                    color="#444444",
                )
        axes.plot(x, y, color=BLUE, marker="o", markersize=4, linewidth=1.4, label="MAE")
        ok = ~alert & small
        if ok.any():
            axes.scatter(
                x[ok], y[ok], s=40, facecolors="white", edgecolors=GREY, linewidths=1.4,
                zorder=3, label="too few events",
            )  # fmt: skip
        if alert.any():
            axes.scatter(
                x[alert], y[alert], s=60, marker="D", color=VERMILLION, edgecolors=BLACK,
                linewidths=0.6, zorder=4, label="alert",
            )  # fmt: skip
        if current.any():
            axes.scatter(
                x[current], y[current], s=180, facecolors="none", edgecolors=BLACK,
                linewidths=1.5, zorder=5, label="this trial",
            )  # fmt: skip
        step = max(1, math.ceil(len(points) / 12))  # at most a dozen labels stay legible
        shown = x[::step]
        axes.set_xticks(shown, [str(points[i].get("label", "")) for i in shown])
        for label in axes.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
        axes.set_xlim(-0.5, len(points) - 0.5)
        axes.set_ylabel(f"MAE ({name})")
        tops = [v for v in (*y, *band_high, (lower or 0) / unit, (upper or 0) / unit) if v == v]
        axes.set_ylim(0, 1.1 * max(tops) if tops and max(tops) > 0 else 1)
        figure.legend(loc="outside upper center", frameon=False, ncols=5, fontsize=8)
        chart = _render(
            figure,
            chart_id,
            "MAE over time",
            "One point per trial or period, oldest left; the shaded band around the line is "
            "the MAE's interval, the dotted lines the alert thresholds; diamonds are alerts, "
            "hollow circles periods with too few events, the ring this trial.",
        )
    rows, attributes = [], []
    for point, value, start, stop in zip(points, mae, low, high, strict=True):
        flags = [
            name for name, key in (("alert", "alert"), ("too few events", "too_small"))
            if point.get(key)
        ]  # fmt: skip
        if point.get("current"):
            flags.append("this trial")
        rows.append(
            [
                (str(point.get("label", "")), None),
                (human_duration(value), value),
                (human_duration(start), start),
                (human_duration(stop), stop),
                (format_count(point.get("events")), _number(point.get("events"))),
                (", ".join(flags) or "ok", None),
            ]
        )
        attributes.append(
            f' data-label="{_e(point.get("label", ""))}"'
            f' data-alert="{str(bool(point.get("alert"))).lower()}"'
            f' data-too-small="{str(bool(point.get("too_small"))).lower()}"'
            f' data-current="{str(bool(point.get("current"))).lower()}"'
            + (' class="alert-row"' if point.get("alert") else "")
        )
    headers = ("period", "MAE", "interval low", "interval high", "events", "status")
    table = _table(rows, headers, row_attributes=attributes)
    if lower is not None or upper is not None:
        table = (
            f'<p class="meta" data-lower="{lower!r}" data-upper="{upper!r}">Alert thresholds: '
            f"{_e(human_duration(lower))} to {_e(human_duration(upper))}.</p>\n" + table
        )
    return chart, table


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
        + _table(rows, headers, css="worst-events")
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
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return destination
