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
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticketeval.data.batches import closure_span
from ticketeval.data.periods import CLOSURE_RESOLUTION, Period, split_periods
from ticketeval.errors import DataError

if TYPE_CHECKING:
    from ticketeval.scoring.trial import ResultsKeeping

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
            open_only,
        )
        for p in periods
    ]


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
) -> dict[str, Any]:
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
        summary.update(_training_marks(model, period))
    summary["run_id"] = run_id
    summary["period_label"] = period.label
    return summary


def _training_marks(model: str, period: Period) -> dict[str, Any]:
    """`model_info` and `overlaps_training` of a period no event closed in (the leakage guard
    still marks it, by its dates)."""
    from ticketeval.scoring.champion import model_info, overlaps_training
    from ticketeval.scoring.models import load_model

    info = model_info(model, load_model(model))
    return {"model_info": info, "overlaps_training": overlaps_training(info, period)}


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
    summaries: list[dict[str, Any]],
    *,
    reference: int | None = None,
    min_events: int = DEFAULT_MIN_EVENTS,
) -> dict[str, Any]:
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
    usable = [
        row
        for row in rows[:reference]
        if not row["too_small"] and _finite(row["skill"]) and _finite(row["baseline_MAE"])
    ]
    model_band = thresholds([row["skill"] for row in usable], metric="skill", floor=None)
    data_band = thresholds([row["baseline_MAE"] for row in usable], metric="constant MAE")
    for index, row in enumerate(rows):
        row["reference"] = index < reference
        judged = not row["reference"] and not row["too_small"]
        # The skill's interval, or the skill itself for a summary recorded without one.
        high = row["skill_high"] if row["skill_high"] is not None else row["skill"]
        row["alert"] = bool(
            judged and model_band is not None and _finite(high) and high < model_band.lower
        )
        row["data_shift"] = bool(
            judged
            and data_band is not None
            and _finite(row["baseline_MAE"])
            and not data_band.lower <= row["baseline_MAE"] <= data_band.upper
        )
    return {
        "reference_periods": reference,
        "min_events": min_events,
        "thresholds": {
            "model": None if model_band is None else vars(model_band),
            "data": None if data_band is None else vars(data_band),
        },
        "alerts": sum(row["alert"] for row in rows),
        "data_shifts": sum(row["data_shift"] for row in rows),
        "periods": rows,
    }


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _row(summary: dict[str, Any], min_events: int) -> dict[str, Any]:
    data = summary["data"]
    interval = (data.get("metrics_ci") or {}).get("MAE") or [None, None]
    skill_interval = data["baseline"].get("skill_ci") or [None, None]
    period = summary.get("period") or {}
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
        "MAE_low": interval[0],
        "MAE_high": interval[1],
        "baseline_MAE": data["baseline"]["MAE"],
        "skill": data["baseline"]["skill"],
        "skill_low": skill_interval[0],
        "skill_high": skill_interval[1],
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


def with_alerts(summaries: list[dict[str, Any]], verdict: dict[str, Any]) -> list[dict[str, Any]]:
    """The periods' summaries, each with its verdict, as the history records them: `alert` is
    the model alert (flagged, reason), `data_shift` the notice."""
    bands = verdict["thresholds"]
    model, data = bands["model"], bands["data"]
    marked = []
    for summary, row in zip(summaries, verdict["periods"], strict=True):
        reason = None
        if row["alert"]:
            reason = (
                f"model alert: skill {row['skill']:.3f} (95% CI up to {row['skill_high']:.3f}) "
                f"below the reference band {model['lower']:.3f} to {model['upper']:.3f}"
            )
        shift = None
        if row["data_shift"]:
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
