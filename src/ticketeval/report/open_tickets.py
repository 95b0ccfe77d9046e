"""The report's "open tickets" part, for a trial with `--as-of`: what was known at T about the
tickets still open (lower bound, estimate), what happened (hindsight), the overdue share per
priority, and how long the open tickets had been open against what the model predicted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ticketeval.formatting import (
    dig,
    escape,
    finite,
    format_count,
    format_ratio,
    format_seconds,
    html_table,
    human_duration,
    unit_for,
)
from ticketeval.report.charts import BLACK, BLUE, GREY, ORANGE, Chart, _new_figure, _render, _style

SECTION_ID = "open-tickets"
SECTION_TITLE = "Tickets still open"
CHART_ID = "chart-open-tickets"


def open_tickets_section(summary: Mapping[str, Any], number: int) -> tuple[str, list[Chart]]:
    """The section's HTML (numbered `number`) and its chart; ("", []) without `data.open`."""
    open_part = dig(summary, "data", "open")
    if not isinstance(open_part, Mapping):
        return "", []
    as_of = str(open_part.get("as_of") or dig(summary, "period", "as_of") or "?")[:16]
    interval = open_part.get("estimated_MAE_ci")
    estimate = format_seconds(open_part.get("estimated_MAE"))
    if isinstance(interval, list | tuple) and len(interval) == 2:
        estimate += (
            f", 95% sampling interval {format_seconds(interval[0])} to "
            f"{format_seconds(interval[1])} (not the estimator's error: see the README)"
        )
    share = finite(open_part.get("overdue_share"))
    rows = [
        ("open incidents", format_count(open_part.get("incidents"))),
        ("MAE at least (censored lower bound)", format_seconds(open_part.get("lower_bound_MAE"))),
        ("estimated MAE", estimate),
        ("realized MAE (hindsight)", format_seconds(open_part.get("realized_MAE"))),
        ("already overdue", "n/a" if share is None else f"{share:.0%}"),
        (
            "concordance, closed and open",
            format_ratio(dig(summary, "data", "metrics", "concordance")),
        ),
    ]
    if open_part.get("estimate_note"):
        rows.append(("note", str(open_part["estimate_note"])))
    headline = (
        '<table class="headline">\n'
        + "\n".join(
            f'<tr><th scope="row">{escape(label)}</th><td>{escape(value)}</td></tr>'
            for label, value in rows
        )
        + "\n</table>"
    )
    intro = (
        f"<p>As known at {escape(as_of.replace('T', ' '))}: each open ticket by its latest "
        "event then. Its time to close is at least its age, so the lower bound holds whatever "
        "happens later; the realized MAE is hindsight, known only when replaying the past.</p>"
    )
    by_priority = open_part.get("by_priority") or {}
    charts: list[Chart] = []
    body = intro + "\n" + headline
    if isinstance(by_priority, Mapping) and by_priority:
        chart, table = _ages_chart(by_priority)
        charts.append(chart)
        body += (
            f'\n<figure id="{CHART_ID}">\n{chart.svg}\n'
            f"<figcaption><strong>{escape(chart.title)}.</strong> {escape(chart.caption)}"
            "</figcaption>\n<details open><summary>The numbers behind this chart</summary>\n"
            f"{table}\n</details>\n</figure>"
        )
    html = (
        f'<section id="{SECTION_ID}">\n<h2>{number}. {escape(SECTION_TITLE)}</h2>\n{body}\n'
        "</section>"
    )
    return html, charts


def _ages_chart(by_priority: Mapping[str, Any]) -> tuple[Chart, str]:
    labels = list(by_priority)
    quantiles = [by_priority[label].get("age_quantiles") or {} for label in labels]
    predicted = [finite(by_priority[label].get("mean_prediction")) for label in labels]
    values = [finite(q.get("p90")) for q in quantiles] + predicted
    name, unit = unit_for(values)
    positions = np.arange(len(labels))

    def scaled(value: Any) -> float:
        number = finite(value)
        return np.nan if number is None else number / unit

    with _style(CHART_ID):
        figure = _new_figure(7.2, 0.9 + 0.55 * len(labels))
        axes = figure.add_subplot()
        for row, q in zip(positions, quantiles, strict=True):
            axes.plot([scaled(q.get("p10")), scaled(q.get("p90"))], [row, row], color=GREY, lw=1.5)
            axes.plot([scaled(q.get("p25")), scaled(q.get("p75"))], [row, row], color=BLUE, lw=7)
            axes.plot([scaled(q.get("p50"))], [row], marker="|", color=BLACK, ms=14, mew=2)
        axes.scatter(
            [scaled(value) for value in predicted],
            positions,
            marker="D",
            s=40,
            color=ORANGE,
            edgecolor=BLACK,
            zorder=3,
            label="predicted (mean)",
        )
        ticks = []
        for label in labels:
            share = finite(by_priority[label].get("overdue_share"))
            overdue = "n/a" if share is None else f"{share:.0%}"
            count = format_count(by_priority[label].get("incidents"))
            ticks.append(f"{label}\nn = {count}, {overdue} overdue")
        axes.set_yticks(positions, ticks)
        axes.invert_yaxis()
        axes.set_xlabel(f"open for ({name})")
        axes.set_xlim(left=0)
        axes.legend(loc="upper right", frameon=False)
        chart = _render(
            figure,
            CHART_ID,
            "How long the open tickets have been open, against the prediction",
            "Per priority: the thick bar spans the middle half of the open tickets' ages (since "
            "their latest event), the thin line 10% to 90%, the tick the median; the diamond is "
            "the model's mean prediction. Ages right of the diamond are already overdue.",
        )
    rows = []
    for label, q, mean in zip(labels, quantiles, predicted, strict=True):
        values = by_priority[label]
        rows.append(
            [
                (label, None),
                (format_count(values.get("incidents")), values.get("incidents")),
                (f"{finite(values.get('overdue_share')) or 0:.0%}", values.get("overdue_share")),
                (human_duration(q.get("p50")), q.get("p50")),
                (human_duration(mean), mean),
                (human_duration(values.get("lower_bound_MAE")), values.get("lower_bound_MAE")),
                (human_duration(values.get("realized_MAE")), values.get("realized_MAE")),
            ]
        )
    table = html_table(
        rows,
        (
            "priority",
            "open",
            "overdue",
            "median age",
            "mean prediction",
            "MAE at least",
            "realized MAE (hindsight)",
        ),
    )
    return chart, table
