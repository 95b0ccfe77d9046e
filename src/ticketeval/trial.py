"""One trial: the target, the model's predictions scored, and the summary that records it."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketeval.batches import Batch, load_batch
from ticketeval.metrics import METRIC_NAMES, plain, score_metric, with_rmse
from ticketeval.models import load_model, model_columns, predict


def compute_target(batch: pd.DataFrame) -> pd.Series:
    """Seconds from the event's update to the ticket's close (NaN when either is missing)."""
    # In NumPy: NaT - x is NaT, and NaT / 1 s is NaN; no intermediate Series copies.
    elapsed = batch["closed_at"].to_numpy() - batch["sys_updated_at"].to_numpy()
    return pd.Series(elapsed / np.timedelta64(1, "s"), index=batch.index, name="target")


def summarize(
    *,
    trial_id: str,
    batch: Batch,
    target: pd.Series,
    predictions: np.ndarray,
    metrics: dict[str, float | None],
    model: str,
    runner: str,
) -> dict[str, Any]:
    """The trial summary: the seed's shape, extended with context, baseline and per priority."""
    y = np.asarray(target, dtype=float)
    scored = ~np.isnan(y)
    y_scored = y if scored.all() else y[scored]
    metrics = with_rmse(metrics)
    baseline_mae = None
    if len(y_scored):
        baseline_mae = plain(np.abs(y_scored - np.median(y_scored)).mean())
    skill = None
    if metrics.get("MAE") is not None and baseline_mae:
        skill = plain(1 - metrics["MAE"] / baseline_mae)
    by_priority: dict[str, Any] = {}
    priority = batch.frame["priority"].astype("category")
    codes = priority.cat.codes.to_numpy()
    labels = {code: str(label) for code, label in enumerate(priority.cat.categories)}
    for code, label in sorted({**labels, -1: "(none)"}.items(), key=lambda item: item[1]):
        rows = codes == code
        if not rows.any():
            continue
        by_priority[label] = {
            "num_obs": int(rows.sum()),
            "num_scored": int((rows & scored).sum()),
            **with_rmse(
                {name: score_metric(name, y[rows], predictions[rows]) for name in METRIC_NAMES}
            ),
        }
    cache = batch.cache
    return {
        "id": trial_id,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {
            "num_obs": len(batch.frame),
            "num_scored": int(scored.sum()),
            "num_dropped": int((~scored).sum()),
            "metrics": metrics,
            "target": {
                stat: plain(getattr(np, stat)(y_scored)) if len(y_scored) else None
                for stat in ("mean", "median", "min", "max")
            },
            "baseline": {"MAE": baseline_mae, "skill": skill},
            "by_priority": by_priority,
        },
        "model": model,
        "seed": batch.seed,
        "batch_size": len(batch.frame),
        "runner": runner,
        "source": {
            "name": cache.source,
            "csv_sha256": cache.csv_sha256,
            "matches_uci": cache.matches_uci,
            "rows": cache.rows,
        },
    }


def new_trial_id() -> str:
    return str(uuid.uuid4())


def score_trial(
    *,
    data_dir: Path,
    batch_size: int,
    seed: int | None = None,
    model: str = "heuristic",
    runner: str = "evaluate",
    demo: bool = False,
) -> dict[str, Any]:
    """Score `model` on one batch from the cache (the demo data's with `demo`), in this
    process, and summarize the trial."""
    model_function = load_model(model)
    columns = model_columns(model_function, name=model)
    batch = load_batch(data_dir, batch_size, seed, columns, demo=demo)
    target = compute_target(batch.frame)
    predictions = predict(model_function, batch.frame, name=model)
    # From here on only the priority is read (by the summary): free the other columns before
    # the metrics make their temporaries.
    batch = replace(batch, frame=batch.frame[["priority"]])
    metrics = {name: score_metric(name, target, predictions) for name in METRIC_NAMES}
    return summarize(
        trial_id=new_trial_id(),
        batch=batch,
        target=target,
        predictions=predictions,
        metrics=metrics,
        model=model,
        runner=runner,
    )
