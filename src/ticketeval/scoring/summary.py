"""The shapes every command passes around, as the JSON they print: a trial's summary, a
backtest's verdict and result. `TypedDict`s, so the dicts (and their JSON) are unchanged while
mypy checks every key that is read or written.

Keys named after metrics (`metrics`, `metrics_ci`, `by_priority`, `target`) stay plain mappings:
their names come from `ticketeval.scoring.metrics.METRIC_NAMES`.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from ticketeval.data.periods import PeriodBounds

# Metric name -> value (None: undefined on these events, e.g. R² of one event).
Metrics = dict[str, float | None]
# Metric name -> [low, high] of its 95% interval (None: no interval on these events).
Intervals = dict[str, list[float] | None]


class Baseline(TypedDict):
    """The constant prediction (the batch's median) and the model's skill against it."""

    MAE: float | None
    skill: float | None
    # Its incident-level (cluster bootstrap) 95% interval; absent from older trials.
    skill_ci: NotRequired[list[float] | None]


class DataBlock(TypedDict):
    """One model's scores on a trial's events."""

    num_obs: int
    num_scored: int
    num_dropped: int
    # closed_at before sys_updated_at (a negative time to close), dropped or not
    # (TICKETEVAL_NEGATIVE_TARGETS); absent from trials recorded before it.
    num_negative: NotRequired[int]
    num_incidents: int | None
    metrics: Metrics
    # Absent from trials recorded before intervals existed (read back from the history).
    metrics_ci: NotRequired[Intervals]
    target: dict[str, float | None]  # mean, median, min, max of the seconds to close
    baseline: Baseline
    by_priority: dict[str, dict[str, float | None]]  # priority -> counts and metrics
    # incident_state -> counts and metrics (the Closed state's target is about 0); absent from
    # trials recorded before it.
    by_state: NotRequired[dict[str, dict[str, float | None]]]
    # With --as-of: the tickets still open then (ticketeval.scoring.open_tickets.summarize_open).
    open: NotRequired[dict[str, Any]]


class ModelInfo(TypedDict):
    """Where a trained model came from and what it trained on."""

    path: str
    trained_from: str | None
    trained_until: str | None
    cut: str | None
    data_sha256: str | None
    loss: str | None


class ModelBlock(DataBlock):
    """One model's block of a trial that scored several."""

    model_info: ModelInfo | None
    overlaps_training: bool


class Comparison(TypedDict):
    """A challenger against the champion, on the same events."""

    champion: str
    challenger: str
    mae_difference: float | None
    ci: list[float] | None
    better_beyond_noise: bool
    worse_beyond_noise: bool


class Source(TypedDict):
    name: str
    csv_sha256: str
    matches_uci: bool
    rows: int
    # The log --since-last follows (--stream, else the data's source); absent before streams.
    stream: NotRequired[str | None]
    # The incidents closed before the period's end the export held (None: no end): more later
    # means tickets arrived late.
    incidents_before_end: NotRequired[int | None]


class TrialContext(TypedDict):
    """Which model, data and period a trial is about: what makes two trials comparable."""

    model: str
    seed: int | None
    runner: str
    period: NotRequired[PeriodBounds]  # absent from trials recorded before periods existed
    source: Source


class Alert(TypedDict):
    flagged: bool
    reason: str | None


class Band(TypedDict):
    lower: float
    upper: float


class Threshold(TypedDict):
    """A band the reference periods of a backtest set (mean ± 3 SD) for one metric."""

    lower: float
    upper: float
    mean: float
    std: float
    reference_periods: int  # how many periods contributed (those with enough events)
    metric: str


class Bands(TypedDict):
    """A backtest's two bands: the model's skill (alerts) and the constant's MAE (shifts)."""

    model: Threshold | None
    data: Threshold | None


class Recorded(TypedDict):
    """Where a trial went: the history (redacted URL) or the spool."""

    history: str
    spooled: bool
    message: str | None
    notes: list[str]
    # False: neither recorded nor spooled (the trial is printed all the same; exit 8).
    kept: NotRequired[bool]


class TrialSummary(TrialContext):
    """A trial, as `evaluate --json` prints it and the history keeps it."""

    id: str
    timestamp: str
    data: DataBlock
    batch_size: int
    model_info: NotRequired[ModelInfo | None]
    overlaps_training: NotRequired[bool]
    models: NotRequired[dict[str, ModelBlock]]  # several models: each one's block
    comparison: NotRequired[list[Comparison]]
    results_path: NotRequired[str]  # its per-event results, when kept
    results_note: NotRequired[str]  # why they could not be kept
    run_id: NotRequired[str]  # a backtest's period: the backtest
    period_label: NotRequired[str | None]
    alert: NotRequired[Alert]  # a backtest's period: the model alert
    data_shift: NotRequired[Alert]  # a backtest's period: the mix of tickets shifted
    too_small: NotRequired[bool]
    band: NotRequired[Band | None]
    bands: NotRequired[Bands]  # a backtest's period: the bands it was judged against
    recorded: NotRequired[Recorded]
    report: NotRequired[dict[str, Any]]
    # The report could not be written (the trial is printed all the same): message, exit_code.
    report_failed: NotRequired[dict[str, Any]]


class Written(TypedDict):
    """What a flow's worker did with a trial: recorded it, or not (and why)."""

    summary: TrialSummary
    recorded: bool
    history: NotRequired[str]
    reason: NotRequired[str]
    report: NotRequired[dict[str, Any]]


class BacktestRow(TypedDict):
    """One period of a backtest, as its table shows it."""

    label: str | None
    closed_from: str | None
    closed_to: str | None
    trial_id: str
    events: int
    incidents: int | None
    MAE: float | None
    MAE_low: float | None
    MAE_high: float | None
    baseline_MAE: float | None
    skill: float | None
    skill_low: float | None
    skill_high: float | None
    # A first period cut by --closed-from: fewer days than the others, a reference still.
    clipped: bool
    too_small: bool
    overlaps_training: bool
    reference: NotRequired[bool]
    alert: NotRequired[bool]  # a model alert: the skill's interval below its band
    data_shift: NotRequired[bool]  # the constant's MAE outside its band: a notice


class Verdict(TypedDict):
    """A backtest's periods judged against the band its reference periods set."""

    reference_periods: int
    min_events: int
    thresholds: Bands
    alerts: int
    data_shifts: int
    periods: list[BacktestRow]
    written: NotRequired[list[Written]]  # the flow's: each period's trial, as recorded
    report: NotRequired[dict[str, Any]]


class RecordedRun(TypedDict):
    """Where a backtest's periods went, together."""

    history: str | None
    spooled: int
    message: NotRequired[str | None]  # the first spooled period's: why, and where it waits
    notes: list[str]


class BacktestSource(TypedDict):
    name: str
    csv_sha256: str
    stream: str


class BacktestResult(TypedDict):
    """`backtest --json`."""

    run_id: str
    model: str
    every: str
    source: BacktestSource
    reference_periods: int
    min_events: int
    thresholds: Bands
    alerts: int
    data_shifts: int
    periods: list[BacktestRow]
    report: NotRequired[dict[str, Any]]
    recorded: NotRequired[RecordedRun]  # always: set last, after the report (the JSON's order)
