"""The history's rows: the `trials` table's columns, a trial summary turned into rows (one per
model), a legacy (version 1) record turned into today's rows, and a row read back.

Pure data: no database, no files. The same conversions serve SQLite and PostgreSQL, so both
store and give back the same values.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ticketeval.errors import SummaryError
from ticketeval.formatting import finite

# 1: the single-table SQLite history of early releases (no meta table); 2: the trials table;
# 3: 2 plus each trial's stream, population, data shift and incidents before its end
# (`V3_COLUMNS`).
SCHEMA_VERSION = 3
META_TABLE = "ticketeval_meta"

# (name, kind): kind is the portable type, mapped to each backend's below.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "key"), ("model", "key"), ("timestamp", "text!"), ("runner", "text"),
    ("batch_size", "int"), ("seed", "text"), ("num_obs", "int"), ("num_scored", "int"),
    ("mae", "real"), ("medae", "real"), ("mse", "real"), ("r2", "real"), ("rmse", "real"),
    ("mae_low", "real"), ("mae_high", "real"), ("medae_low", "real"), ("medae_high", "real"),
    ("rmse_low", "real"), ("rmse_high", "real"), ("baseline_mae", "real"), ("skill", "real"),
    ("data_sha256", "text"), ("source", "text"), ("closed_from", "text"), ("closed_to", "text"),
    ("run_id", "text"), ("period_label", "text"), ("results_path", "text"), ("alert", "int"),
    ("summary", "text!"), ("stream", "text"), ("population", "text"), ("data_shift", "int"),
    ("incidents_before_end", "int"),
)  # fmt: skip
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
# The columns version 3 added to version 2's table (at its end, as ALTER TABLE adds them).
V3_COLUMNS = ("stream", "population", "data_shift", "incidents_before_end")
# Seeds go up to 2**64-1, past SQLite's and PostgreSQL's signed 64-bit integers: stored as text.
_METRICS = {"mae": "MAE", "medae": "MedAE", "mse": "MSE", "r2": "R2", "rmse": "RMSE"}
_INTERVALS = {"mae": "MAE", "medae": "MedAE", "rmse": "RMSE"}

# The table releases up to now wrote (schema version 1), kept to recognise and migrate it.
V1_COLUMNS = (
    "id", "timestamp", "runner", "model", "batch_size", "seed", "num_obs",
    "mae", "medae", "mse", "r2", "rmse", "summary",
)  # fmt: skip


def to_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def to_text(value: Any) -> str | None:
    return None if value is None else str(value)


def utc_iso(value: Any) -> str:
    """An ISO timestamp in UTC (a naive one is taken as UTC), so text order is time order."""
    if not isinstance(value, str):
        raise SummaryError(f"the trial's timestamp {value!r} is not an ISO 8601 string.")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SummaryError(f"the trial's timestamp {value!r} is not ISO 8601.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _period_bound(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    with contextlib.suppress(ValueError):
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            return moment.astimezone(UTC).isoformat()
    return text  # a date, or a naive timestamp: kept as written


def _metric_columns(block: Mapping[str, Any]) -> dict[str, Any]:
    metrics = block.get("metrics") or {}
    intervals = block.get("metrics_ci") or {}
    baseline = block.get("baseline") or {}
    row: dict[str, Any] = {
        "num_obs": to_int(block.get("num_obs")),
        "num_scored": to_int(block.get("num_scored")),
        "baseline_mae": finite(baseline.get("MAE")),
        "skill": finite(baseline.get("skill")),
    }
    for column, name in _METRICS.items():
        row[column] = finite(metrics.get(name))
    for column, name in _INTERVALS.items():
        bounds = intervals.get(name)
        low, high = bounds if isinstance(bounds, list | tuple) and len(bounds) == 2 else (None,) * 2
        row[f"{column}_low"], row[f"{column}_high"] = finite(low), finite(high)
    return row


def null_if_undefined(value: Any) -> Any:
    """`value` with NaN and infinities as None: summaries hold null for undefined values."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: null_if_undefined(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [null_if_undefined(item) for item in value]
    return value


def population(summary: Mapping[str, Any]) -> str:
    """Which events a trial scored, in a word: what makes its figures comparable with another
    trial's. A backtest's period (by its length: `backtest-month`, `backtest-week`,
    `backtest-days`), a period of closure (`period`: `--closed-from/--closed-to`,
    `--since-last`) or a sample of the whole log (`sample`); `/open` when only events still
    open (not in state Closed) were scored. A month of tickets and a random thousand from the
    whole log have different mixes: their MAEs are not compared."""
    period = summary.get("period")
    period = period if isinstance(period, Mapping) else {}
    label = summary.get("period_label")
    if summary.get("run_id") and isinstance(label, str):
        length = "week" if "-W" in label else "month" if len(label) == 7 else "days"
        kind = f"backtest-{length}"
    elif period.get("closed_from") or period.get("closed_to"):
        kind = "period"
    else:
        kind = "sample"
    return kind + ("/open" if period.get("open_only") else "")


def rows_from_summary(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The history rows of one trial summary: one per model it scored, keyed by (id, model).

    Several models scored on one batch come as `"models": {name: data block}`; otherwise the
    trial's `"model"` and `"data"` make the one row. Optional keys (period, intervals, run,
    results, alert) give NULL when absent. Raises SummaryError when id, timestamp or the
    model's data are missing.
    """
    if not isinstance(summary, Mapping) or not summary.get("id"):
        raise SummaryError("a trial summary needs an 'id'.")
    blocks = summary.get("models")
    if not isinstance(blocks, Mapping) or not blocks:
        if not summary.get("model") or not isinstance(summary.get("data"), Mapping):
            raise SummaryError(f"trial {summary['id']}: the summary has no 'model' and 'data'.")
        blocks = {summary["model"]: summary["data"]}
    source = summary.get("source")
    source = source if isinstance(source, Mapping) else {"name": source}
    period = summary.get("period") or {}
    alert = summary.get("alert")
    flagged = alert.get("flagged") if isinstance(alert, Mapping) else alert
    shift = summary.get("data_shift")
    shifted = shift.get("flagged") if isinstance(shift, Mapping) else None
    common = {
        "id": str(summary["id"]),
        "timestamp": utc_iso(summary.get("timestamp")),
        "runner": to_text(summary.get("runner")),
        "batch_size": to_int(summary.get("batch_size")),
        "seed": to_text(to_int(summary.get("seed"))),
        "data_sha256": to_text(source.get("csv_sha256")),
        "source": to_text(source.get("name")),
        "closed_from": _period_bound(period.get("closed_from")),
        "closed_to": _period_bound(period.get("closed_to")),
        "run_id": to_text(summary.get("run_id")),
        "period_label": to_text(summary.get("period_label")),
        "results_path": to_text(summary.get("results_path")),
        "alert": None if flagged is None else int(bool(flagged)),
        "stream": to_text(source.get("stream")),
        "incidents_before_end": to_int(source.get("incidents_before_end")),
        "population": population(summary),
        "data_shift": None if shifted is None else int(bool(shifted)),
        "summary": json.dumps(null_if_undefined(summary), allow_nan=False, default=str),
    }
    rows = []
    for model, block in blocks.items():
        if not isinstance(block, Mapping):
            raise SummaryError(f"trial {summary['id']}: model {model!r} has no data block.")
        rows.append({**common, "model": str(model), **_metric_columns(block)})
    return [{name: row[name] for name in COLUMN_NAMES} for row in rows]


def rows_from_v1(old: Sequence[Any]) -> list[dict[str, Any]]:
    """The rows of one trial of a version-1 history: from its summary JSON where it parses,
    else from the old columns (so no trial is dropped)."""
    record = dict(zip(V1_COLUMNS, old, strict=True))
    with contextlib.suppress(ValueError, TypeError, SummaryError):
        summary = json.loads(record["summary"])
        rows = rows_from_summary(summary)
        timestamp = rows[0]["timestamp"]
        with contextlib.suppress(SummaryError):
            timestamp = utc_iso(record["timestamp"])
        for row in rows:  # the columns as stored are what users saw: they win over the JSON
            row.update(id=str(record["id"]), timestamp=timestamp, summary=record["summary"])
        return rows
    row = dict.fromkeys(COLUMN_NAMES)
    row.update(
        id=str(record["id"]),
        model=str(record["model"] or ""),
        timestamp=record["timestamp"],
        runner=record["runner"],
        batch_size=to_int(record["batch_size"]),
        seed=to_text(to_int(record["seed"])),
        num_obs=to_int(record["num_obs"]),
        summary=record["summary"],
        **{column: finite(record[column]) for column in _METRICS},
    )
    with contextlib.suppress(SummaryError):
        row["timestamp"] = utc_iso(record["timestamp"])
    return [row]


# --- Rows read back ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    """One model's result in one trial, as the history holds it."""

    id: str
    model: str
    timestamp: str
    runner: str | None
    batch_size: int | None
    seed: int | None
    num_obs: int | None
    num_scored: int | None
    MAE: float | None
    MedAE: float | None
    MSE: float | None
    R2: float | None
    RMSE: float | None
    MAE_low: float | None
    MAE_high: float | None
    MedAE_low: float | None
    MedAE_high: float | None
    RMSE_low: float | None
    RMSE_high: float | None
    baseline_MAE: float | None
    skill: float | None
    data_sha256: str | None
    source: str | None
    closed_from: str | None
    closed_to: str | None
    run_id: str | None
    period_label: str | None
    results_path: str | None
    alert: bool | None
    stream: str | None = None  # None: recorded before streams (schema 2), see `chain_end`
    population: str | None = None
    data_shift: bool | None = None  # a backtest's period whose mix of tickets shifted
    incidents_before_end: int | None = None  # in the export then, closed before closed_to

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> HistoryRow:
        """From a row of the `trials` table (as `rows_from_summary` makes or a query returns)."""
        return cls(
            id=row["id"],
            model=row["model"],
            timestamp=row["timestamp"],
            runner=row["runner"],
            batch_size=to_int(row["batch_size"]),
            seed=to_int(row["seed"]),
            num_obs=to_int(row["num_obs"]),
            num_scored=to_int(row["num_scored"]),
            MAE=finite(row["mae"]),
            MedAE=finite(row["medae"]),
            MSE=finite(row["mse"]),
            R2=finite(row["r2"]),
            RMSE=finite(row["rmse"]),
            MAE_low=finite(row["mae_low"]),
            MAE_high=finite(row["mae_high"]),
            MedAE_low=finite(row["medae_low"]),
            MedAE_high=finite(row["medae_high"]),
            RMSE_low=finite(row["rmse_low"]),
            RMSE_high=finite(row["rmse_high"]),
            baseline_MAE=finite(row["baseline_mae"]),
            skill=finite(row["skill"]),
            data_sha256=row["data_sha256"],
            source=row["source"],
            closed_from=row["closed_from"],
            closed_to=row["closed_to"],
            run_id=row["run_id"],
            period_label=row["period_label"],
            results_path=row["results_path"],
            alert=None if row["alert"] is None else bool(row["alert"]),
            stream=row.get("stream"),
            population=row.get("population"),
            data_shift=None if row.get("data_shift") is None else bool(row["data_shift"]),
            incidents_before_end=to_int(row.get("incidents_before_end")),
        )


def order_key(row: HistoryRow) -> tuple[str, str, str]:
    # Python compares code points, as SQLite's BINARY and PostgreSQL's "C" collation do.
    return (row.timestamp, row.id, row.model)
