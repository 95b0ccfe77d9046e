"""Where `evaluate`'s memory goes: peak RSS after each stage of one trial on a cached log.

    python benchmarks/memory_stages.py DATA_DIR

Prints a Markdown table. It calls the same functions, in the same order, as
`ticketeval.scoring.trial.score_trial` (what `ticketeval evaluate` runs), with the whole log as the
batch; the summary's stage includes the bootstrap intervals.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    start = time.perf_counter()
    rows: list[tuple[str, float, float]] = []

    def stage(name: str) -> None:
        rows.append((name, peak_mib(), time.perf_counter() - start))

    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # as the CLI does
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from ticketeval.data.batches import load_batch
    from ticketeval.data.cache import read_cache_info
    from ticketeval.scoring.metrics import METRIC_NAMES, score_metric
    from ticketeval.scoring.models import load_model, model_columns, predict
    from ticketeval.scoring.trial import SUMMARY_COLUMNS, compute_target, summarize

    stage("imports")
    data_dir = Path(sys.argv[1])
    info = read_cache_info(data_dir)
    assert info is not None, f"no cache in {data_dir}"
    model = load_model("heuristic")
    batch = load_batch(data_dir, None, 1, model_columns(model))
    stage(f"load_batch ({info.rows:,} rows)")
    target = compute_target(batch.frame)
    stage("compute_target")
    predictions = predict(model, batch.frame)
    stage("predict")
    batch = replace(batch, frame=batch.frame[list(SUMMARY_COLUMNS)])  # as score_trial does
    metrics = {name: score_metric(name, target, predictions) for name in METRIC_NAMES}
    stage("the four metrics")
    summarize(
        trial_id="memory", batch=batch, target=target, predictions=predictions,
        metrics=metrics, model="heuristic", runner="benchmark",
    )  # fmt: skip
    stage("summarize (RMSE, baseline, per priority, bootstrap intervals)")
    print("| stage | peak RSS after it | its growth | time |")
    print("| --- | --- | --- | --- |")
    previous = rows[0][1]
    for name, peak, elapsed in rows:
        print(f"| {name} | {peak:.0f} MiB | +{peak - previous:.0f} MiB | {elapsed:.2f} s |")
        previous = peak


if __name__ == "__main__":
    main()
