"""Replaying the log period by period: one trial per period, bands, data shifts and alerts.

A period's MAE mixes two causes: the tickets got harder (a longer mix: the log's later periods
hold only the tickets that stayed open for months) and the model got worse. Each period also
scores a constant (its median target), whose MAE measures the first alone, so there are two
signals, each judged on its own band (NannyML's default: the mean over the reference periods
plus or minus three standard deviations):

- a **data shift**: the constant's MAE leaves its band (the difficulty of the tickets changed):
  a notice, not an alarm;
- a **model alert**: the model's skill against the period's constant, `1 - MAE / MAE of the
  constant`, falls below its band, the whole incident-level interval of the skill below it (so
  noise the interval shows is not an alert). The skill is a ratio on the same tickets, so a
  harder mix that lengthens every error alike leaves it where it was; a model that breaks
  moves it. A better skill than the band is not an alert.

A period with fewer events than `min_events` is shown but not judged.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from ticketeval.data.batches import closure_span
from ticketeval.data.periods import CLOSURE_RESOLUTION, Period, split_periods
from ticketeval.errors import DataError, UsageError
from ticketeval.scoring.summary import (
    BacktestRow,
    ModelInfo,
    Threshold,
    TrialSummary,
    Verdict,
)

if TYPE_CHECKING:
    from ticketeval.scoring.results import ResultsKeeping

DEFAULT_MIN_EVENTS = 100
_ONE_SECOND = timedelta(seconds=1)
THRESHOLD_STDS = 3.0


def backtest_periods(
    data_dir: Path,
    every: str,
    closed_from: Any = None,
    closed_to: Any = None,
    *,
    demo: bool = False,
    open_only: bool = False,
) -> list[Period]:
    """The periods covering the cache's closures, clipped to `[closed_from, closed_to)`; with
    `open_only`, each scores the events still open only."""
    bounds = Period(closed_from, closed_to)
    span = closure_span(data_dir, demo=demo)
    if span is None:
        raise DataError("no event in the data has a closed_at: there is nothing to backtest.")
    first = max(span[0], bounds.closed_from) if bounds.closed_from else span[0]
    last = span[1]
    # No period ends past the data: the last one ends at the newest closure plus the log's
    # resolution (a minute), so its recorded end is what it saw, and a later --since-last
    # scores the tickets that close after it.
    clip_to = last + CLOSURE_RESOLUTION
    if bounds.closed_to is not None and bounds.closed_to < clip_to:
        clip_to = bounds.closed_to
    if bounds.closed_to is not None:
        last = min(last, bounds.closed_to - _ONE_SECOND)
    if first > last:
        raise DataError(f"no events {bounds.describe()} in the data.")
    periods = split_periods(first, last, every)
    clip_from = bounds.closed_from
    return [
        Period(
            max(p.closed_from, clip_from) if clip_from and p.closed_from else p.closed_from,
            min(p.closed_to, clip_to) if p.closed_to else clip_to,
            p.label,
            open_only=open_only,
        )
        for p in periods
    ]


def backtest_model(specs: Sequence[str]) -> str:
    """The one model a backtest scores."""
    if len(specs) > 1:
        raise UsageError(
            "backtest scores one model: give --model once (compare models on the same events "
            "with evaluate or run-local)."
        )
    return specs[0]


def check_backtest_options(
    batch_size: int | None, *, reference: int | None, min_events: int | None
) -> None:
    """Refuse a backtest's options before any data is read or a cluster starts."""
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"the batch size must be at least 1, not {batch_size}.")
    if reference is not None and reference < 1:
        raise UsageError(f"--reference must be at least 1 period, not {reference}.")
    if min_events is not None and min_events < 0:
        raise UsageError(f"--min-events must be 0 or more, not {min_events}.")


def score_period(
    *,
    data_dir: Path,
    period: Period,
    batch_size: int | None,
    seed: int | None,
    model: str,
    run_id: str,
    results: ResultsKeeping | None = None,
    demo: bool = False,
    stream: str | None = None,
    negative: str = "keep",
) -> TrialSummary:
    """One period's trial summary, or a summary with no events when none closed in it."""
    from ticketeval.scoring.trial import empty_summary, score_trial

    try:
        summary = score_trial(
            data_dir=data_dir,
            batch_size=batch_size,
            seed=seed,
            model=model,
            runner="backtest",
            period=period,
            # A period with fewer events than the batch size gives what it has (it is marked
            # too small to judge), rather than failing the whole backtest.
            allow_fewer=True,
            results=results,
            demo=demo,
            stream=stream,
            negative=negative,
        )
    except DataError:
        if not _has_no_events(data_dir, period, demo):
            raise
        summary = empty_summary(
            data_dir=data_dir,
            model=model,
            period=period,
            runner="backtest",
            demo=demo,
            stream=stream,
        )
        summary["model_info"], summary["overlaps_training"] = _training_marks(model, period)
    summary["run_id"] = run_id
    summary["period_label"] = period.label
    return summary


def _training_marks(model: str, period: Period) -> tuple[ModelInfo | None, bool]:
    """`model_info` and `overlaps_training` of a period no event closed in (the leakage guard
    still marks it, by its dates)."""
    from ticketeval.scoring.champion import model_info, overlaps_training
    from ticketeval.scoring.models import load_model

    info = model_info(model, load_model(model))
    return info, overlaps_training(info, period)


def _has_no_events(data_dir: Path, period: Period, demo: bool) -> bool:
    from ticketeval.data.batches import closed_in
    from ticketeval.data.cache import cache_path

    return len(closed_in(cache_path(data_dir, demo=demo), period)) == 0


@dataclass(frozen=True)
class Thresholds:
    """The band of a metric the reference periods set."""

    lower: float
    upper: float
    mean: float
    std: float
    reference_periods: int  # how many periods contributed (those with enough events)
    metric: str = "MAE"


def thresholds(
    values: list[float], *, metric: str = "MAE", floor: float | None = 0.0
) -> Thresholds | None:
    """Mean ± 3 standard deviations (population, as NumPy's and NannyML's), the lower bound
    clipped at `floor` (None: not clipped); None with fewer than two reference values."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    std = statistics.pstdev(values)
    lower = mean - THRESHOLD_STDS * std
    return Thresholds(
        lower=lower if floor is None else max(floor, lower),
        upper=mean + THRESHOLD_STDS * std,
        mean=mean,
        std=std,
        reference_periods=len(values),
        metric=metric,
    )


def judge(
    summaries: list[TrialSummary],
    *,
    reference: int | None = None,
    min_events: int = DEFAULT_MIN_EVENTS,
) -> Verdict:
    """The backtest's rows, bands, data shifts and model alerts from its periods' summaries
    (in order).

    The first `reference` periods (default: the first third) set the bands, from those with at
    least `min_events` events; every later period with enough events is judged against them.
    `thresholds` holds the model's band (`model`, of the skill) and the data's (`data`, of the
    constant's MAE).
    """
    count = len(summaries)
    reference = max(1, count // 3) if reference is None else min(reference, count)
    rows = [_row(summary, min_events) for summary in summaries]
    measured = [
        (row["skill"], row["baseline_MAE"]) for row in rows[:reference] if not row["too_small"]
    ]
    usable = [(skill, mae) for skill, mae in measured if _finite(skill) and _finite(mae)]
    model_band = thresholds([skill for skill, _ in usable], metric="skill", floor=None)
    data_band = thresholds([mae for _, mae in usable], metric="constant MAE")
    for index, row in enumerate(rows):
        row["reference"] = index < reference
        judged = not row["reference"] and not row["too_small"]
        # The skill's interval, or the skill itself for a summary recorded without one.
        high = row["skill_high"] if row["skill_high"] is not None else row["skill"]
        constant = row["baseline_MAE"]
        row["alert"] = bool(
            judged and model_band is not None and _finite(high) and high < model_band.lower
        )
        row["data_shift"] = bool(
            judged
            and data_band is not None
            and _finite(constant)
            and not data_band.lower <= constant <= data_band.upper
        )
    return {
        "reference_periods": reference,
        "min_events": min_events,
        "thresholds": {"model": _band(model_band), "data": _band(data_band)},
        "alerts": sum(row["alert"] for row in rows),
        "data_shifts": sum(row["data_shift"] for row in rows),
        "periods": rows,
    }


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and math.isfinite(value)


def _band(band: Thresholds | None) -> Threshold | None:
    if band is None:
        return None
    return {
        "lower": band.lower,
        "upper": band.upper,
        "mean": band.mean,
        "std": band.std,
        "reference_periods": band.reference_periods,
        "metric": band.metric,
    }


def _row(summary: TrialSummary, min_events: int) -> BacktestRow:
    data = summary["data"]
    low, high = (data.get("metrics_ci") or {}).get("MAE") or (None, None)
    skill_low, skill_high = data["baseline"].get("skill_ci") or (None, None)
    period = summary.get("period") or {"closed_from": None, "closed_to": None}
    label = summary.get("period_label") or period.get("label")
    return {
        "label": label,
        "closed_from": period.get("closed_from"),
        "closed_to": period.get("closed_to"),
        # A first period cut by --closed-from: fewer days than the others, still a reference.
        "clipped": clipped(label, period.get("closed_from")),
        "trial_id": summary["id"],
        "events": data["num_obs"],
        "incidents": data.get("num_incidents"),
        "MAE": data["metrics"]["MAE"],
        "MAE_low": low,
        "MAE_high": high,
        "baseline_MAE": data["baseline"]["MAE"],
        "skill": data["baseline"]["skill"],
        "skill_low": skill_low,
        "skill_high": skill_high,
        "too_small": data["num_obs"] < min_events,
        # The model trained on tickets closed in this period: its figures there flatter it.
        "overlaps_training": bool(summary.get("overlaps_training")),
    }


def clipped(label: Any, closed_from: Any) -> bool:
    """Whether a period starts later than its calendar start (a month's first day, a week's
    Monday, a day's midnight): the first period of a backtest cut by --closed-from."""
    if not isinstance(label, str) or not isinstance(closed_from, str):
        return False
    try:
        if "-W" in label:
            start = datetime.strptime(f"{label}-1", "%G-W%V-%u")
        elif len(label) == 7:
            start = datetime.strptime(label, "%Y-%m")
        else:
            start = datetime.strptime(label, "%Y-%m-%d")
        return datetime.fromisoformat(closed_from) > start
    except ValueError:
        return False


def with_alerts(summaries: list[TrialSummary], verdict: Verdict) -> list[TrialSummary]:
    """The periods' summaries, each with its verdict, as the history records them: `alert` is
    the model alert (flagged, reason), `data_shift` the notice."""
    bands = verdict["thresholds"]
    model, data = bands["model"], bands["data"]
    marked: list[TrialSummary] = []
    for summary, row in zip(summaries, verdict["periods"], strict=True):
        reason = None
        if row.get("alert") and model is not None:
            reason = (
                f"model alert: skill {row['skill']:.3f} (95% CI up to {row['skill_high']:.3f}) "
                f"below the reference band {model['lower']:.3f} to {model['upper']:.3f}"
            )
        shift = None
        if row.get("data_shift") and data is not None:
            shift = (
                f"data shift: the constant's MAE {row['baseline_MAE']:,.0f} s is outside the "
                f"reference band {data['lower']:,.0f}–{data['upper']:,.0f} s"
            )
        marked.append(
            {
                **summary,
                "alert": {"flagged": row["alert"], "reason": reason},
                "data_shift": {"flagged": row["data_shift"], "reason": shift},
                "too_small": row["too_small"],
                # The report's MAE chart draws no band: the bands are the skill's and the
                # constant's, not the MAE's.
                "band": None,
                "bands": bands,
            }
        )
    return marked
