"""One trial: the target, the model's predictions scored, and the summary that records it."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ticketeval.data.batches import Batch, FirstClosures, first_closures, load_batch
from ticketeval.data.periods import Period
from ticketeval.scoring import HEURISTIC
from ticketeval.scoring.champion import (
    columns_of,
    comparisons,
    model_info,
    model_specs,
    overlaps_training,
)
from ticketeval.scoring.metrics import (
    INTERVAL_METRICS,
    METRIC_NAMES,
    bootstrap_intervals,
    incident_clusters,
    plain,
    score_metric,
    with_rmse,
)
from ticketeval.scoring.models import Model, load_model, predict
from ticketeval.scoring.results import KeptResults, ResultsKeeping
from ticketeval.scoring.summary import ModelBlock, TrialContext, TrialSummary

if TYPE_CHECKING:
    from ticketeval.data.cache import CacheInfo

# What the summary reads of the batch, besides the target.
SUMMARY_COLUMNS = ("priority", "number", "incident_state")


def compute_target(batch: pd.DataFrame) -> pd.Series:
    """Seconds from the event's update to the ticket's close (NaN when either is missing)."""
    # In NumPy: NaT - x is NaT, and NaT / 1 s is NaN; no intermediate Series copies.
    elapsed = batch["closed_at"].to_numpy() - batch["sys_updated_at"].to_numpy()
    return pd.Series(elapsed / np.timedelta64(1, "s"), index=batch.index, name="target")


def scored_target(batch: pd.DataFrame, negative: str = "keep") -> pd.Series:
    """`compute_target`, with the negative times to close (closed_at before sys_updated_at)
    kept as they are (`keep`) or left unscored like a missing date (`drop`): the setting
    TICKETEVAL_NEGATIVE_TARGETS. Either way `num_negative` counts them."""
    target = compute_target(batch)
    return target.mask(target < 0) if negative == "drop" else target


def summarize(
    *,
    trial_id: str,
    batch: Batch,
    target: pd.Series,
    predictions: np.ndarray,
    metrics: dict[str, float | None],
    model: str,
    runner: str,
    stream: str | None = None,
) -> TrialSummary:
    """The trial summary: the seed's shape, extended with context, baseline and per priority."""
    y = np.asarray(target, dtype=float)
    scored = ~np.isnan(y)
    y_scored = y if scored.all() else y[scored]
    metrics = with_rmse(metrics)
    baseline_mae = None
    if len(y_scored):
        baseline_mae = plain(np.abs(y_scored - np.median(y_scored)).mean())
    skill = None
    mae = metrics.get("MAE")
    if mae is not None and baseline_mae:
        skill = plain(1 - mae / baseline_mae)
    constant = np.median(y_scored) if len(y_scored) else np.nan
    intervals = bootstrap_intervals(
        y,
        predictions,
        seed=batch.seed,
        incidents=incidents_of(batch),
        constant=None if np.isnan(constant) else float(constant),
    )
    skill_interval = intervals.pop("skill", None)
    breakdowns = {
        key: _breakdown(batch.frame[column], y, predictions, scored, constant)
        for key, column in (("by_priority", "priority"), ("by_state", "incident_state"))
        if column in batch.frame
    }
    return {
        "id": trial_id,
        "timestamp": now(),
        "data": {
            "num_obs": len(batch.frame),
            "num_scored": int(scored.sum()),
            "num_dropped": int((~scored).sum()),
            # closed_at before sys_updated_at: a negative time to close, scored as it is.
            "num_negative": int((y_scored < 0).sum()),
            "num_incidents": (
                int(batch.frame["number"].nunique()) if "number" in batch.frame else None
            ),
            "metrics": metrics,
            # Incident-level (cluster bootstrap) intervals: see `metrics.bootstrap_intervals`.
            "metrics_ci": intervals,
            "target": {
                stat: plain(getattr(np, stat)(y_scored)) if len(y_scored) else None
                for stat in ("mean", "median", "min", "max")
            },
            "baseline": {"MAE": baseline_mae, "skill": skill, "skill_ci": skill_interval},
            "by_priority": breakdowns.get("by_priority", {}),
            # The closing update's target is about 0: the Closed state flatters every model.
            "by_state": breakdowns.get("by_state", {}),
        },
        **_context(
            batch.cache,
            model=model,
            seed=batch.seed,
            runner=runner,
            period=batch.period,
            stream=stream,
        ),
        "batch_size": len(batch.frame),
    }


def _breakdown(
    groups: pd.Series,
    y: np.ndarray,
    predictions: np.ndarray,
    scored: np.ndarray,
    constant: float,
) -> dict[str, dict[str, float | None]]:
    """The metrics per value of `groups` (a priority, a state; missing: "(none)"), each with
    the constant (the batch's median) on the same rows: the bar to beat in that group."""
    categories = groups.astype("category")
    codes = categories.cat.codes.to_numpy()
    labels = {code: str(label) for code, label in enumerate(categories.cat.categories)}
    per_group: dict[str, dict[str, float | None]] = {}
    for code, label in sorted({**labels, -1: "(none)"}.items(), key=lambda item: item[1]):
        rows = codes == code
        if not rows.any():
            continue
        per_group[label] = {
            "num_obs": int(rows.sum()),
            "num_scored": int((rows & scored).sum()),
            **with_rmse(
                {name: score_metric(name, y[rows], predictions[rows]) for name in METRIC_NAMES}
            ),
            "baseline_MAE": score_metric("MAE", y[rows], np.full(rows.sum(), constant)),
        }
    return per_group


def incidents_of(batch: Batch) -> np.ndarray | None:
    """Each event's incident cluster (the bootstrap's unit); None without a `number` column."""
    if "number" not in batch.frame:
        return None
    return incident_clusters(batch.frame["number"], len(batch.frame))


def empty_summary(
    *,
    data_dir: Path,
    model: str,
    period: Period,
    runner: str,
    trial_id: str | None = None,
    demo: bool = False,
    stream: str | None = None,
) -> TrialSummary:
    """The summary of a period in which no event closed: nothing scored, nothing undefined
    pretended."""
    from ticketeval.data.cache import read_cache_info

    cache = read_cache_info(data_dir, demo=demo)
    assert cache is not None
    return {
        "id": trial_id or new_trial_id(),
        "timestamp": now(),
        "data": {
            "num_obs": 0,
            "num_scored": 0,
            "num_dropped": 0,
            "num_incidents": 0,
            "metrics": dict.fromkeys([*METRIC_NAMES, "RMSE"]),
            "metrics_ci": dict.fromkeys(INTERVAL_METRICS),
            "target": dict.fromkeys(("mean", "median", "min", "max")),
            "baseline": {"MAE": None, "skill": None, "skill_ci": None},
            "by_priority": {},
            "by_state": {},
        },
        **_context(cache, model=model, seed=None, runner=runner, period=period, stream=stream),
        "batch_size": 0,
    }


def _context(
    cache: CacheInfo,
    *,
    model: str,
    seed: int | None,
    runner: str,
    period: Period,
    stream: str | None = None,
) -> TrialContext:
    """Which model, data and period a trial is about: what makes two trials comparable.

    The stream is the log a chain of `--since-last` trials follows: a name the user gave, else
    where the cache came from (a path or URL), which stays the same as the export grows and
    its checksum changes (kept too, for reproducibility)."""
    return {
        "model": model,
        "seed": seed,
        "runner": runner,
        "period": period.to_dict(),
        "source": {
            "name": cache.source,
            "csv_sha256": cache.csv_sha256,
            "matches_uci": cache.matches_uci,
            "rows": cache.rows,
            "stream": stream or cache.source,
            # What the export held before the period's end: a later --since-last counts the
            # tickets closed before it that arrived since (late), see `history.store.chain_end`.
            "incidents_before_end": (
                None if period.closed_to is None else _incidents_before(cache, period.closed_to)
            ),
        },
    }


@functools.lru_cache(maxsize=64)
def _incidents_before(cache: CacheInfo, end: datetime) -> int:
    """Cached per cache and end: every model of a trial, and its summary, ask the same."""
    return _first_closures(cache).before(end)


@functools.lru_cache(maxsize=4)
def _first_closures(cache: CacheInfo) -> FirstClosures:
    """Read once per cache: a backtest's periods (a worker's threads) each ask for their end."""
    return first_closures(Path(cache.path))


def now() -> str:
    # To the microsecond: trials run in the same second still sort in the order they ran.
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_trial_id() -> str:
    return str(uuid.uuid4())


def score_trial(
    *,
    data_dir: Path,
    batch_size: int | None,
    seed: int | None = None,
    model: str | Sequence[str] = HEURISTIC,
    runner: str = "evaluate",
    period: Period | None = None,
    allow_fewer: bool = False,
    results: ResultsKeeping | None = None,
    demo: bool = False,
    estimate: bool = False,
    stream: str | None = None,
    negative: str = "keep",
) -> TrialSummary:
    """Score `model` (or several: champion first) on one batch from the cache (the demo data's
    with `demo`; None: every event of the period), in this process, and summarize the trial
    (keeping the champion's per-event results when asked). With the period's `as_of`, the
    tickets still open then too (and, with `estimate`, the champion's estimated MAE on them)."""
    specs = model_specs(model)
    functions = {spec: load_model(spec) for spec in specs}
    batch = load_batch(
        data_dir,
        batch_size,
        seed,
        columns_of(functions.values()),
        period,
        allow_fewer=allow_fewer,
        demo=demo,
    )
    negatives = int((compute_target(batch.frame) < 0).sum())
    target = scored_target(batch.frame, negative)
    predictions = {
        spec: predict(function, batch.frame, name=spec) for spec, function in functions.items()
    }
    trial_id = new_trial_id()
    kept = KeptResults()
    if results is not None:
        kept = results.keep(trial_id, batch, target, predictions[specs[0]], specs[0])
    closed_at = batch.frame["closed_at"].to_numpy()
    # From here on only the priority, state and incident are read (by the summary): free the
    # other columns before the metrics make their temporaries.
    batch = replace(batch, frame=batch.frame[list(SUMMARY_COLUMNS)])
    summary = summarize_models(
        trial_id=trial_id,
        batch=batch,
        target=target,
        predictions=predictions,
        models=functions,
        closed_at=closed_at,
        runner=runner,
        stream=stream,
    )
    summary["data"]["num_negative"] = negatives  # dropped or not, they were there
    if batch.period.as_of is not None:
        from ticketeval.scoring.loss_estimate import add_open_tickets

        summary = add_open_tickets(
            summary,
            data_dir=data_dir,
            as_of=batch.period.as_of,
            model=functions[specs[0]],
            name=specs[0],
            closed_target=target.to_numpy(),
            closed_predictions=predictions[specs[0]],
            demo=demo,
            estimate=estimate,
        )
    return kept.into(summary)


def summarize_models(
    *,
    trial_id: str,
    batch: Batch,
    target: pd.Series,
    predictions: Mapping[str, np.ndarray],
    models: Mapping[str, Model],
    closed_at: np.ndarray | None,
    runner: str,
    metrics: dict[str, float | None] | None = None,
    stream: str | None = None,
) -> TrialSummary:
    """The summary of one or more models scored on the same batch (champion first).

    Its `data` and `model` are the champion's, as for one model; with `model_info` (a trained
    model's origin, else None) and `overlaps_training` (some model may have trained on these
    tickets). With several models, `models` holds each one's data block (with its own
    `model_info` and `overlaps_training`) and `comparison` each challenger against the
    champion. `metrics`, when given, are the champion's already computed (the flow's tasks).
    """
    names = list(predictions)
    blocks: dict[str, ModelBlock] = {}
    summaries: list[TrialSummary] = []
    for name in names:
        scores = metrics if metrics is not None and name == names[0] else None
        if scores is None:
            scores = {
                metric: score_metric(metric, target, predictions[name]) for metric in METRIC_NAMES
            }
        scored = summarize(
            trial_id=trial_id,
            batch=batch,
            target=target,
            predictions=predictions[name],
            metrics=scores,
            model=name,
            runner=runner,
            stream=stream,
        )
        summaries.append(scored)
        info = model_info(name, models[name])
        blocks[name] = {
            **scored["data"],
            "model_info": info,
            "overlaps_training": overlaps_training(info, batch.period, closed_at),
        }
    summary, champion = summaries[0], blocks[names[0]]
    summary["model_info"] = champion["model_info"]
    summary["overlaps_training"] = any(block["overlaps_training"] for block in blocks.values())
    if len(names) > 1:
        summary["models"] = blocks
        summary["comparison"] = comparisons(
            target, predictions, seed=batch.seed, incidents=incidents_of(batch)
        )
    return summary
