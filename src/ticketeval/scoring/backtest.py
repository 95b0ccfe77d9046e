"""Replaying the log period by period: one trial per period, thresholds, and alerts.

Thresholds follow NannyML's default for realized performance: the mean of the metric over the
reference periods plus or minus three standard deviations; a later period outside the band is
an alert. A period with fewer events than `min_events` is shown but not judged.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticketeval.data.batches import closure_span
from ticketeval.data.periods import Period, split_periods
from ticketeval.errors import DataError, UsageError
from ticketeval.scoring.summary import BacktestRow, ModelInfo, TrialSummary, Verdict

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
) -> list[Period]:
    """The periods covering the cache's closures, clipped to `[closed_from, closed_to)`."""
    bounds = Period(closed_from, closed_to)
    span = closure_span(data_dir, demo=demo)
    if span is None:
        raise DataError("no event in the data has a closed_at: there is nothing to backtest.")
    first = max(span[0], bounds.closed_from) if bounds.closed_from else span[0]
    last = span[1]
    if bounds.closed_to is not None:
        last = min(last, bounds.closed_to - _ONE_SECOND)
    if first > last:
        raise DataError(f"no events {bounds.describe()} in the data.")
    periods = split_periods(first, last, every)
    if bounds.closed_from or bounds.closed_to:
        clip_from = bounds.closed_from
        clip_to = bounds.closed_to
        periods = [
            Period(
                max(p.closed_from, clip_from) if clip_from and p.closed_from else p.closed_from,
                min(p.closed_to, clip_to) if clip_to and p.closed_to else p.closed_to,
                p.label,
            )
            for p in periods
        ]
    return periods


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
            results=results,
            demo=demo,
        )
    except DataError:
        if not _has_no_events(data_dir, period, demo):
            raise
        summary = empty_summary(
            data_dir=data_dir, model=model, period=period, runner="backtest", demo=demo
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
    """The band of MAE the reference periods set."""

    lower: float
    upper: float
    mean: float
    std: float
    reference_periods: int


def thresholds(maes: list[float]) -> Thresholds | None:
    """Mean ± 3 standard deviations (population, as NumPy's and NannyML's), lower bound
    clipped at 0; None with fewer than two reference values."""
    if len(maes) < 2:
        return None
    mean = statistics.fmean(maes)
    std = statistics.pstdev(maes)
    return Thresholds(
        lower=max(0.0, mean - THRESHOLD_STDS * std),
        upper=mean + THRESHOLD_STDS * std,
        mean=mean,
        std=std,
        reference_periods=len(maes),
    )


def judge(
    summaries: list[TrialSummary],
    *,
    reference: int | None = None,
    min_events: int = DEFAULT_MIN_EVENTS,
) -> Verdict:
    """The backtest's rows, thresholds and alerts from its periods' summaries (in order).

    The first `reference` periods (default: the first third) set the band; every later period
    with at least `min_events` events whose MAE is outside it is an alert.
    """
    count = len(summaries)
    reference = max(1, count // 3) if reference is None else min(reference, count)
    rows = [_row(summary, min_events) for summary in summaries]
    reference_maes = [
        row["MAE"]
        for row in rows[:reference]
        if not row["too_small"] and row["MAE"] is not None and math.isfinite(row["MAE"])
    ]
    band = thresholds(reference_maes)
    for index, row in enumerate(rows):
        row["reference"] = index < reference
        row["alert"] = bool(
            band is not None
            and not row["reference"]
            and not row["too_small"]
            and row["MAE"] is not None
            and not band.lower <= row["MAE"] <= band.upper
        )
    return {
        "reference_periods": reference,
        "min_events": min_events,
        "thresholds": None if band is None else vars(band),
        "alerts": sum(row["alert"] for row in rows),
        "periods": rows,
    }


def _row(summary: TrialSummary, min_events: int) -> BacktestRow:
    data = summary["data"]
    low, high = data.get("metrics_ci", {}).get("MAE") or (None, None)
    period = summary.get("period", {"closed_from": None, "closed_to": None})
    return {
        "label": summary.get("period_label") or period.get("label"),
        "closed_from": period.get("closed_from"),
        "closed_to": period.get("closed_to"),
        "trial_id": summary["id"],
        "events": data["num_obs"],
        "incidents": data.get("num_incidents"),
        "MAE": data["metrics"]["MAE"],
        "MAE_low": low,
        "MAE_high": high,
        "baseline_MAE": data["baseline"]["MAE"],
        "skill": data["baseline"]["skill"],
        "too_small": data["num_obs"] < min_events,
        # The model trained on tickets closed in this period: its figures there flatter it.
        "overlaps_training": bool(summary.get("overlaps_training")),
    }


def with_alerts(summaries: list[TrialSummary], verdict: Verdict) -> list[TrialSummary]:
    """The periods' summaries, each with its verdict, as the history records them."""
    band = verdict["thresholds"]
    marked: list[TrialSummary] = []
    for summary, row in zip(summaries, verdict["periods"], strict=True):
        reason = None
        if row["alert"] and band is not None:
            reason = f"MAE outside the reference band {band['lower']:,.0f}–{band['upper']:,.0f} s"
        marked.append(
            {
                **summary,
                "alert": {"flagged": row["alert"], "reason": reason},
                "too_small": row["too_small"],
                "band": None if band is None else {"lower": band["lower"], "upper": band["upper"]},
            }
        )
    return marked
