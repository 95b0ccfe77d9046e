"""The seed's pipeline, kept faithfully as the baseline the benchmarks measure against.

Copied from the Saturn Cloud example notebook this tool grew from, with two changes only:
it reads the local zip instead of downloading UCI's URL (the build machines cannot reach UCI),
and it drops `infer_datetime_format`, which pandas 3 removed. Its quirks are kept on purpose:
the full parse with per-cell `strptime` lambdas on every run, 100 rows sampled *with*
replacement whatever the batch size, and the "4 - Lower" label that never matches.

`python benchmarks/seed_reference.py [ZIP]` runs the whole seed flow once on a LocalCluster.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime
from pathlib import Path
from zipfile import ZipFile

import numpy as np
import pandas as pd
import prefect
from prefect import Flow, Parameter, task
from sklearn.metrics import (
    mean_absolute_error,
    mean_squared_error,
    median_absolute_error,
    r2_score,
)

DEFAULT_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "incident_event_log.zip"
DATE_COLUMNS = ["opened_at", "resolved_at", "closed_at", "sys_created_at", "sys_updated_at"]


def load_ticket_data(zip_path: Path) -> pd.DataFrame:
    """The body of the seed's `get_ticket_data_batch`, up to the sampling."""
    zipfile = ZipFile(zip_path)
    data_file = "incident_event_log.csv"

    # _date_parser has to be a lambda or pandas won't convert dates correctly
    def _date_parser(x: str) -> datetime | pd.NaT:
        return pd.NaT if x == "?" else datetime.strptime(x, "%d/%m/%Y %H:%M")

    # pandas 3 applies the converters and ignores parse_dates for those columns (with a
    # warning): the seed's dates come out of the lambdas either way.
    df = pd.read_csv(
        zipfile.open(data_file),
        parse_dates=DATE_COLUMNS,
        converters=dict.fromkeys(DATE_COLUMNS, _date_parser),
        na_values=["?"],
    )
    df["sys_updated_at"] = pd.to_datetime(df["sys_updated_at"])
    return df


def sample(df: pd.DataFrame) -> pd.DataFrame:
    rows_to_score = np.random.randint(0, df.shape[0], 100)
    return df.iloc[rows_to_score]


@task
def get_trial_id() -> str:
    return str(uuid.uuid4())


@task
def get_ticket_data_batch(batch_size: int, zip_path: Path = DEFAULT_ZIP) -> pd.DataFrame:
    return sample(load_ticket_data(zip_path))


@task
def get_target(df: pd.DataFrame) -> pd.Series:
    return (df["closed_at"] - df["sys_updated_at"]) / np.timedelta64(1, "s")


@task
def predict(df: pd.DataFrame) -> pd.Series:
    seconds_in_an_hour = 60.0 * 60.0
    preds = df["priority"].map(
        {
            "1 - Critical": 6.0 * seconds_in_an_hour,
            "2 - High": 24.0 * seconds_in_an_hour,
            "3 - Moderate": 120.0 * seconds_in_an_hour,
            "4 - Lower": 240.0 * seconds_in_an_hour,
        }
    )
    default_guess_for_no_priority = 180.0 * seconds_in_an_hour
    return preds.fillna(default_guess_for_no_priority)


METRICS = {
    "mae": mean_absolute_error,
    "medae": median_absolute_error,
    "mse": mean_squared_error,
    "r2": r2_score,
}


@task
def evaluate_model(y_true: pd.Series, y_pred: pd.Series, metric_name: str) -> float:
    return METRICS[metric_name](y_true, y_pred)


@task
def get_trial_summary(
    trial_id: str, actuals: pd.Series, input_df: pd.DataFrame, metrics: dict
) -> dict:
    return {
        "id": trial_id,
        "data": {
            "num_obs": input_df.shape[0],
            "metrics": metrics,
            "target": {
                "mean": actuals.mean(),
                "median": actuals.median(),
                "min": actuals.min(),
                "max": actuals.max(),
            },
        },
    }


@task(log_stdout=True)
def write_trial_summary(trial_summary: dict) -> None:
    logger = prefect.context.get("logger")
    logger.info(json.dumps(trial_summary))


def build_seed_flow(zip_path: Path = DEFAULT_ZIP) -> Flow:
    with Flow("seed-ticket-model-evaluation") as flow:
        batch_size = Parameter("batch-size", default=1000)
        trial_id = get_trial_id()
        sample_ticket_df = get_ticket_data_batch(batch_size, zip_path)
        actuals = get_target(sample_ticket_df)
        preds = predict(sample_ticket_df)
        mae = evaluate_model(actuals, preds, "mae")
        medae = evaluate_model(actuals, preds, "medae")
        mse = evaluate_model(actuals, preds, "mse")
        r2 = evaluate_model(actuals, preds, "r2")
        trial_summary = get_trial_summary(
            trial_id=trial_id,
            input_df=sample_ticket_df,
            actuals=actuals,
            metrics={"MAE": mae, "MedAE": medae, "MSE": mse, "R2": r2},
        )
        write_trial_summary(trial_summary)
    return flow


if __name__ == "__main__":  # Dask's worker processes import __main__ again
    from prefect.executors import DaskExecutor

    zip_path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ZIP
    state = build_seed_flow(zip_path).run(executor=DaskExecutor())
    sys.exit(0 if state.is_successful() else 1)
