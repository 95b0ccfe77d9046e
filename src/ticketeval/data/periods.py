"""Time periods of closure: a trial's `[closed_from, closed_to)` and a backtest's steps.

A period selects the events whose incident closed in it: the tickets whose outcome (the
target) was known by its end. Timestamps are naive, as the event log writes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict, overload

from ticketeval.errors import HistoryError, UsageError

# The event log's timestamps are to the minute: a period that saw closures up to T ends at
# T plus this, so the next one starts right after what it saw.
CLOSURE_RESOLUTION = timedelta(minutes=1)
EVERY_HELP = (
    "'month' (calendar months), 'week' (weeks from Monday) or '<N>d' (N calendar days from the "
    "first closure's day)"
)


class PeriodBounds(TypedDict):
    """A period as a summary holds it: ISO dates, None for an open end."""

    closed_from: str | None
    closed_to: str | None
    label: NotRequired[str]
    as_of: NotRequired[str | None]
    open_only: NotRequired[bool]


@dataclass(frozen=True)
class Period:
    """Closures from `closed_from` (inclusive) to `closed_to` (exclusive); None is open.

    `as_of` replays the log as it was known then: only the events updated at or before it,
    of the incidents closed at or before it (the others were still open).
    """

    closed_from: datetime | None = None
    closed_to: datetime | None = None
    label: str | None = None
    as_of: datetime | None = None
    # Only the events still open (incident_state not Closed): the closing update's own target
    # is about 0, a free win for any model (`--open-only`).
    open_only: bool = False

    def __post_init__(self) -> None:
        if self.closed_from and self.closed_to and self.closed_from >= self.closed_to:
            raise UsageError(
                f"--closed-from {self.closed_from:%Y-%m-%d %H:%M} is not before --closed-to "
                f"{self.closed_to:%Y-%m-%d %H:%M}: the period would be empty."
            )
        if self.closed_from and self.as_of and self.closed_from > self.as_of:
            raise UsageError(
                f"--closed-from {self.closed_from:%Y-%m-%d %H:%M} is after --as-of "
                f"{self.as_of:%Y-%m-%d %H:%M}: nothing had closed in the period by then."
            )

    @property
    def bounded(self) -> bool:
        return any(bound is not None for bound in (self.closed_from, self.closed_to, self.as_of))

    @property
    def selective(self) -> bool:
        """Whether the period selects some events (a bound, or open states only)."""
        return self.bounded or self.open_only

    @property
    def last_closure(self) -> datetime | None:
        """Where the closures scored end (exclusive `closed_to`, else inclusive `as_of`)."""
        return self.closed_to or self.as_of

    def to_dict(self) -> PeriodBounds:
        bounds: PeriodBounds = {
            "closed_from": iso(self.closed_from),
            "closed_to": iso(self.closed_to),
        }
        if self.label:
            bounds["label"] = self.label
        if self.open_only:
            bounds["open_only"] = True
        if self.as_of:
            bounds["as_of"] = iso(self.as_of)
        return bounds

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Period:
        values = values or {}
        return cls(
            parse_date(values.get("closed_from"), "closed_from"),
            parse_date(values.get("closed_to"), "closed_to"),
            values.get("label"),
            parse_date(values.get("as_of"), "as_of"),
            bool(values.get("open_only")),
        )

    def describe(self) -> str:
        start = f"{self.closed_from:%Y-%m-%d %H:%M}" if self.closed_from else "the first closure"
        end = f"{self.closed_to:%Y-%m-%d %H:%M}" if self.closed_to else "the last closure"
        known = f" as known at {self.as_of:%Y-%m-%d %H:%M}" if self.as_of else ""
        state = " in an open state" if self.open_only else ""
        return f"closed from {start} to {end}{known}{state}"


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


@overload
def parse_date(value: str | datetime, option: str | None = None) -> datetime: ...
@overload
def parse_date(value: None, option: str | None = None) -> None: ...
@overload
def parse_date(value: str | datetime | None, option: str | None = None) -> datetime | None: ...
def parse_date(value: str | datetime | None, option: str | None = None) -> datetime | None:
    """An ISO date or date-time (`2016-03-01`, `2016-03-01T12:00`, `2016-03-01 12:00`) given
    by `option` (e.g. "closed_from"); None: a date read back from the history.

    The log's timestamps are naive local times of a zone it does not name, so a time with a
    UTC offset cannot be converted to them: it is refused, never silently stripped."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        if option is None:
            raise HistoryError(
                f"the history holds {value!r} where the end of a trial's period should be a "
                "date: the history is damaged (see `ticketeval history --json`)."
            ) from None
        raise UsageError(
            f"--{option.replace('_', '-')} {value!r} is not a date: use YYYY-MM-DD "
            "or YYYY-MM-DDTHH:MM."
        ) from None
    if parsed.tzinfo is not None and option is not None:
        raise UsageError(
            f"--{option.replace('_', '-')} {value!r} has a UTC offset: the event log's times are "
            "naive local times of a zone it does not name, so no offset can be converted to "
            "them; give the time as the log writes it, without an offset."
        )
    return parsed.replace(tzinfo=None)


MAX_EVERY_DAYS = 36_500


def parse_every(every: str) -> str | int:
    """'month', 'week', or a whole number of days from '<N>d'."""
    text = every.strip().lower()
    if text in ("month", "week"):
        return text
    match = re.fullmatch(r"(\d+)d", text)
    if match and int(match.group(1)) > MAX_EVERY_DAYS:
        # Longer periods overflow Python's dates (year 9999) and mean nothing for a backtest.
        raise UsageError(
            f"--every {every!r} is too long: give at most {MAX_EVERY_DAYS:,}d (100 years)."
        )
    if match and int(match.group(1)) >= 1:
        return int(match.group(1))
    raise UsageError(f"--every {every!r} is not a period: use {EVERY_HELP}.")


def split_periods(first: datetime, last: datetime, every: str) -> list[Period]:
    """Consecutive periods covering the closures from `first` to `last` (both included)."""
    step = parse_every(every)
    if step == "month":
        start = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif step == "week":
        day = first.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - timedelta(days=day.weekday())
    else:  # calendar days, from the first closure's midnight, as weeks and months are
        start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    periods = []
    while start <= last:
        if step == "month":
            end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
            label = f"{start:%Y-%m}"
        elif step == "week":
            end = start + timedelta(days=7)
            label = f"{start:%G-W%V}"
        else:
            assert isinstance(step, int)
            end = start + timedelta(days=step)
            label = f"{start:%Y-%m-%d}"
        periods.append(Period(start, end, label))
        start = end
    return periods
