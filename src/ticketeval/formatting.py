"""How ticketeval writes numbers, durations and tables (the CLI and the report): human units,
exact values kept.

Durations in hours or days (never 1e6 seconds), every string escaped for HTML, and every
number shown also kept exact in a `data-value` attribute, so a test or a reader can check it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MINUTE, HOUR, DAY, WEEK = 60.0, 3_600.0, 86_400.0, 604_800.0


def finite(value: Any) -> float | None:
    """A finite float, or None for None, NaN, infinity, or anything that is not a number (what
    the report shows and the history stores: undefined is null, as in summaries)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def human_duration(seconds: Any, *, signed: bool = False) -> str:
    """A duration in the unit a reader thinks in: `42 s`, `12 min`, `8.6 h`, `1.7 d`."""
    value = finite(seconds)
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
    value = finite(seconds)
    if value is None:
        return "n/a"
    if abs(value) >= HOUR:
        return f"{value:,.0f} s ({human_duration(value)})"
    return f"{value:,.0f} s"


def format_count(value: Any) -> str:
    number = finite(value)
    return "n/a" if number is None else f"{number:,.0f}"


def format_ratio(value: Any, digits: int = 3) -> str:
    number = finite(value)
    return "n/a" if number is None else f"{number:,.{digits}f}"


def escape(value: Any) -> str:
    """Escape for HTML text and attribute values (quotes included)."""
    import html  # only the report's pages need it: not on the path of --help

    return html.escape(str(value), quote=True)


def data_value(value: Any) -> str:
    """A machine-readable attribute with the exact value, for tests and scrapers."""
    number = finite(value)
    return "" if number is None else f' data-value="{number!r}"'


def dig(mapping: Any, *keys: str) -> Any:
    """mapping[k1][k2]…, or None where a level is missing, null, or not a mapping."""
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def unit_for(values: Sequence[float | None]) -> tuple[str, float]:
    """Days when the largest value is two days or more, else hours (never 1e6 seconds)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return ("days", DAY) if finite and max(finite) >= 2 * DAY else ("hours", HOUR)


def html_table(
    rows: Sequence[Sequence[tuple[str, Any]]],
    headers: Sequence[str],
    *,
    css: str = "chart-data",
    row_attributes: Sequence[str] | None = None,
) -> str:
    """A table whose cells are (text, exact value or None); numbers get data-value."""
    head = "".join(f'<th scope="col">{escape(header)}</th>' for header in headers)
    body = []
    for index, cells in enumerate(rows):
        attributes = row_attributes[index] if row_attributes else ""
        tds = "".join(
            f'<td class="num"{data_value(value)}>{escape(text)}</td>'
            if finite(value) is not None
            else f"<td>{escape(text)}</td>"
            for text, value in cells
        )
        body.append(f"<tr{attributes}>{tds}</tr>")
    return (
        f'<table class="{css}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )
