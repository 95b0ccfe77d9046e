"""Validating the open tickets' estimated MAE: replay the log at the end of each period, as if
it were today, and hold each snapshot's estimate (and lower bound) to the realized MAE the log
knows in hindsight."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketeval.data.periods import split_periods
from ticketeval.scoring.loss_estimate import estimate_open_mae, read_estimation_log
from ticketeval.scoring.metrics import plain
from ticketeval.scoring.models import Model, predict
from ticketeval.scoring.open_tickets import OpenTickets, ages, open_rows, summarize_open


def snapshot_dates(log: pd.DataFrame, every: str) -> list[datetime]:
    """The ends of the periods (`every`) strictly inside the log's span of updates: the first
    period's end onwards, the last one before the last update."""
    first, last = log["sys_updated_at"].min(), log["sys_updated_at"].max()
    if pd.isna(first):
        return []
    periods = split_periods(first.to_pydatetime(), last.to_pydatetime(), every)
    return [p.closed_to for p in periods if p.closed_to is not None and p.closed_to < last]


def replay_snapshots(
    data_dir: Path, model: Model, *, name: str, every: str, demo: bool = False, seed: int = 0
) -> dict[str, Any]:
    """Each snapshot's open tickets, lower bound, estimate with interval and realized MAE, and
    how the estimate did over them all."""
    from ticketeval.data.cache import read_cache_info
    from ticketeval.errors import DataError

    info = read_cache_info(data_dir, demo=demo)
    if info is None:
        raise DataError(f"no data in {data_dir} yet: run `ticketeval fetch` (or `--source demo`).")
    log = read_estimation_log(Path(info.path), model, name=name)
    rows = []
    for as_of in snapshot_dates(log, every):
        positions = open_rows(log, as_of)
        frame = log.iloc[positions].reset_index(drop=True)
        predicted = predict(model, frame, name=name) if len(frame) else np.empty(0)
        tickets = OpenTickets(as_of, frame, ages(frame, as_of), predicted, positions)
        known = summarize_open(tickets)
        estimated = estimate_open_mae(log, tickets, model, name=name, seed=seed)
        rows.append(_row(as_of, known, estimated))
    return {
        "model": name,
        "every": every,
        "source": {"name": info.source, "csv_sha256": info.csv_sha256},
        "snapshots": rows,
        "summary": _summary(rows),
    }


def _row(as_of: datetime, known: dict[str, Any], estimated: dict[str, Any]) -> dict[str, Any]:
    realized, estimate = known["realized_MAE"], estimated["estimated_MAE"]
    interval = estimated["estimated_MAE_ci"]
    error = None if realized is None or estimate is None else estimate - realized
    return {
        "as_of": as_of.isoformat(timespec="seconds"),
        "incidents": known["incidents"],
        "overdue_share": known["overdue_share"],
        "lower_bound_MAE": known["lower_bound_MAE"],
        "estimated_MAE": estimate,
        "estimated_MAE_ci": interval,
        "realized_MAE": realized,
        "estimate_error": error,
        "relative_error": None if error is None or not realized else plain(error / realized),
        "bound_relative_error": (
            None
            if realized is None or known["lower_bound_MAE"] is None or not realized
            else plain((known["lower_bound_MAE"] - realized) / realized)
        ),
        "covered": (
            None
            if realized is None or interval is None
            else bool(interval[0] <= realized <= interval[1])
        ),
        "pushed_to_lower_bound": (estimated.get("estimate") or {}).get("pushed_to_lower_bound"),
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    judged = [row for row in rows if row["relative_error"] is not None]
    covered = [row["covered"] for row in judged if row["covered"] is not None]
    return {
        "snapshots": len(rows),
        "judged": len(judged),
        "mean_absolute_relative_error": (
            plain(np.mean([abs(row["relative_error"]) for row in judged])) if judged else None
        ),
        "bound_mean_absolute_relative_error": (
            plain(np.mean([abs(row["bound_relative_error"]) for row in judged])) if judged else None
        ),
        "closer_than_bound": sum(
            abs(row["relative_error"]) < abs(row["bound_relative_error"]) for row in judged
        ),
        "coverage": plain(np.mean(covered)) if covered else None,
        "covered": sum(covered),
    }
