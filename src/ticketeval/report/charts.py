"""The report's charts, drawn with matplotlib's object-oriented API (no pyplot, no global
backend) as inline SVG and PNG, each with its numbers as a table.

Colours stay readable for colour-blind readers and in print; durations are in hours or days.
matplotlib is imported only inside the functions that draw.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ticketeval.formatting import (
    DAY,
    HOUR,
    MINUTE,
    WEEK,
    escape,
    finite,
    format_count,
    html_table,
    human_duration,
    unit_for,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Okabe-Ito: distinguishable with every common colour-vision deficiency; series also differ by
# marker, hatch or line style so they survive greyscale print.
BLUE, ORANGE, VERMILLION, GREY, BLACK = "#0072B2", "#E69F00", "#D55E00", "#7F7F7F", "#000000"


@dataclass(frozen=True)
class PriorityScores:
    label: str
    events: int | None
    mae: float | None
    baseline: float | None


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
    inline SVG and, on demand, the same chart as PNG bytes (for mail: only `--png` asks, and
    drawing it costs as much as the SVG)."""

    id: str
    title: str
    caption: str
    svg: str
    figure: Figure = field(repr=False, compare=False)

    @functools.cached_property
    def png(self) -> bytes:
        # A PNG travels alone (a mail attachment): it carries its title; the page has
        # figcaptions. Drawn under the chart's own style, as its SVG was.
        with _style(self.id):
            self.figure.suptitle(self.title, fontsize=11, fontweight="bold")
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def writable_matplotlib_config() -> None:
    """Give matplotlib a config directory it can write before it is first imported: with a
    read-only HOME it would otherwise print two lines of warnings on every report. The user's
    MPLCONFIGDIR wins; a usable default is left alone."""
    import os
    import tempfile
    from pathlib import Path

    if "MPLCONFIGDIR" in os.environ:
        return
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    default = Path(base) / "matplotlib"
    try:
        default.mkdir(parents=True, exist_ok=True)
        if os.access(default, os.W_OK):
            return
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"ticketeval-matplotlib-{os.getuid()}"
    fallback.mkdir(mode=0o700, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = str(fallback)


@contextlib.contextmanager
def _style(chart_id: str) -> Iterator[None]:
    """matplotlib settings for one chart, restored afterwards (no global state left behind)."""
    writable_matplotlib_config()  # before matplotlib is first imported (every chart starts here)
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
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{escape(title)}" ', 1)
    return Chart(chart_id, title, caption, svg.strip(), figure)


def _log_duration_axis(axis: Any, low_hours: float, high_hours: float) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = [(v, label) for v, label in _TICKS_HOURS if low_hours <= v <= high_hours]
    axis.set_major_locator(FixedLocator([v for v, _ in ticks]))
    axis.set_ticklabels([label for _, label in ticks])
    axis.set_minor_locator(NullLocator())  # fewer paths, smaller SVG


def predicted_vs_actual(frame: pd.DataFrame) -> tuple[Chart, str]:
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

    bands: tuple[tuple[float, float, str], ...] = (
        (0, HOUR, "under 1 h"),
        (HOUR, DAY, "1 h to 1 d"),
        (DAY, WEEK, "1 d to 1 wk"),
        (WEEK, 30 * DAY, "1 wk to 30 d"),
        (30 * DAY, math.inf, "30 d or more"),
    )
    rows: list[list[tuple[str, float | None]]] = []
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
    return chart, html_table(rows, headers)


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


def error_distribution(frame: pd.DataFrame) -> tuple[Chart, str]:
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
        axes.hist(errors, bins=edges.tolist(), color=BLUE, edgecolor="white", linewidth=0.4)
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
    return chart, html_table(rows, ("predicted minus actual", "events", "share"))


def priority_chart(priorities: list[PriorityScores], *, baseline_source: str) -> tuple[Chart, str]:
    chart_id = "chart-by-priority"
    name, unit = unit_for([p.mae for p in priorities] + [p.baseline for p in priorities])
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
    attributes = [f' data-priority="{escape(p.label)}"' for p in priorities]
    table = html_table(
        rows,
        ("priority", "events", "model MAE", "constant MAE"),
        row_attributes=attributes,
    )
    return chart, note + table


def over_time_chart(
    points: list[Mapping[str, Any]], thresholds: Mapping[str, Any]
) -> tuple[Chart, str]:
    chart_id = "chart-over-time"
    mae = [finite(p.get("MAE")) for p in points]
    low = [finite(p.get("MAE_low")) for p in points]
    high = [finite(p.get("MAE_high")) for p in points]
    lower, upper = finite(thresholds.get("lower")), finite(thresholds.get("upper"))
    name, unit = unit_for([*mae, *high, lower, upper])

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
            name
            for name, key in (
                ("alert", "alert"), ("data shift", "data_shift"), ("too few events", "too_small")
            )
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
                (format_count(point.get("events")), finite(point.get("events"))),
                (", ".join(flags) or "ok", None),
            ]
        )
        attributes.append(
            f' data-label="{escape(point.get("label", ""))}"'
            f' data-alert="{str(bool(point.get("alert"))).lower()}"'
            f' data-data-shift="{str(bool(point.get("data_shift"))).lower()}"'
            f' data-too-small="{str(bool(point.get("too_small"))).lower()}"'
            f' data-current="{str(bool(point.get("current"))).lower()}"'
            + (' class="alert-row"' if point.get("alert") else "")
        )
    headers = ("period", "MAE", "interval low", "interval high", "events", "status")
    table = html_table(rows, headers, row_attributes=attributes)
    if lower is not None or upper is not None:
        table = (
            f'<p class="meta" data-lower="{lower!r}" data-upper="{upper!r}">Alert thresholds: '
            f"{escape(human_duration(lower))} to {escape(human_duration(upper))}.</p>\n" + table
        )
    return chart, table
