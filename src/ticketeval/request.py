"""What a trial command asks for, built once by the command line and passed to
`ticketeval.core` whole, instead of one parameter per option through every layer.

Values are as given: None means "the setting's default", which `ticketeval.core` resolves,
once. Nothing here reads a setting or imports anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ticketeval.scoring import HEURISTIC


@dataclass(frozen=True)
class TrialRequest:
    """`evaluate` and `run-local`: one batch (or every event of a period), one or more models."""

    batch_size: int | str | None = None  # events, or 'all'; None: TICKETEVAL_BATCH_SIZE
    seed: int | None = None  # None: TICKETEVAL_SEED, else a fresh one, recorded
    model: str | tuple[str, ...] = HEURISTIC  # champion first; a string may name several
    source: str | None = None  # a local file or 'demo'; None: UCI's data
    closed_from: str | None = None
    closed_to: str | None = None
    since_last: bool = False  # every ticket closed since the previous trial of the champion
    as_of: str | None = None  # replay the log as known then, with the tickets still open
    estimate: bool = True  # with as_of: the open tickets' estimated MAE
    # The log --since-last follows; None: TICKETEVAL_STREAM, else the data's source.
    stream: str | None = None
    open_only: bool = False  # only the events whose state is not Closed
    report: Path | None = None  # also write the trial's page here


@dataclass(frozen=True)
class BacktestRequest:
    """`backtest`: the log replayed period by period, one model."""

    every: str = "month"
    closed_from: str | None = None
    closed_to: str | None = None
    model: str | tuple[str, ...] = HEURISTIC
    batch_size: int | str | None = "all"  # events per period
    seed: int | None = None
    reference: int | None = None  # periods that set the band; None: the first third
    min_events: int | None = None  # fewer: too small to judge; None: DEFAULT_MIN_EVENTS
    source: str | None = None
    stream: str | None = None  # recorded with each period; None: as for a trial
    open_only: bool = False  # each period scores the events whose state is not Closed
    report: Path | None = None
