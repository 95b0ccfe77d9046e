"""Benchmark: training the time-to-close model on the real file, and predicting with it.

    python benchmarks/training.py

Each stage runs in its own process, so its peak memory (ru_maxrss) is its own: training is the
whole process a user runs (start Python, read the cache, train on the 70% before the cut,
score the holdout, write the model file), once per loss; predicting loads the model file and
times `model(batch)` on 10,000 events drawn from the cache (median of 5). Prints a Markdown
table. Targets: training under 60 s, predicting 10,000 events under 0.5 s.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REAL_ZIP = HERE.parent.parent / "shared" / "data" / "incident_event_log.zip"
PREDICT_EVENTS = 10_000

TRAIN = """
import json, resource, sys, time
from pathlib import Path
start = time.perf_counter()
from ticketeval.scoring.model_file import save_model
from ticketeval.scoring.training import train, training_frame
frame, sha256 = training_frame(Path(sys.argv[1]))
read = time.perf_counter()
result = train(frame, loss=sys.argv[3], data_sha256=sha256)
trained = time.perf_counter()
save_model(result, sys.argv[2])
print(json.dumps({
    "imports_and_read_s": read - start, "train_s": trained - read,
    "save_s": time.perf_counter() - trained,
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "training": result.metadata["training"], "holdout": result.holdout,
}))
"""

PREDICT = """
import json, resource, statistics, sys, time
from pathlib import Path
from ticketeval.data.batches import load_batch
from ticketeval.scoring.model_file import load_model_file
start = time.perf_counter()
model = load_model_file(sys.argv[2])
loaded = time.perf_counter()
batch = load_batch(Path(sys.argv[1]), int(sys.argv[3]), seed=0, columns=model.columns).frame
times = []
for _ in range(5):
    begin = time.perf_counter()
    model(batch)
    times.append(time.perf_counter() - begin)
print(json.dumps({
    "load_s": loaded - start, "predict_s": statistics.median(times),
    "predict_min_s": min(times), "predict_max_s": max(times),
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def child(script: str, *args: str) -> tuple[dict[str, Any], float]:
    """Run `script` in a fresh interpreter; its JSON line and the whole process's wall time."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1]), time.perf_counter() - start


def main() -> int:
    if not REAL_ZIP.exists():
        print(f"The real UCI file is not at {REAL_ZIP}: nothing to measure.")
        return 1
    from ticketeval.data.cache import fetch

    with tempfile.TemporaryDirectory() as directory:
        data_dir = Path(directory) / "data"
        fetch(str(REAL_ZIP), data_dir=data_dir)
        runs = {}
        for loss in ("absolute_error", "log"):
            model_path = str(Path(directory) / f"{loss}.skops")
            runs[loss] = (*child(TRAIN, str(data_dir), model_path, loss), model_path)
        chosen = "absolute_error"
        predicted, _ = child(PREDICT, str(data_dir), runs[chosen][2], str(PREDICT_EVENTS))
        size = os.path.getsize(runs[chosen][2])

    first = runs[chosen][0]
    training, holdout = first["training"], first["holdout"]
    print(f"Training on the real file ({platform.machine()}, {os.cpu_count()} CPUs)\n")
    print(
        f"Cut {training['cut']}: trained on {training['events']:,} events closed "
        f"{training['first_closed_at']} to {training['last_closed_at']}, scored on "
        f"{holdout['events']:,}; the constant (training median) scores MAE "
        f"{holdout['MAE_constant']:,.0f} s there.\n"
    )
    print("| loss | holdout MAE | skill vs constant | heuristic MAE | skill vs heuristic |")
    print("| --- | --- | --- | --- | --- |")
    for loss, (figures, _, _) in runs.items():
        h = figures["holdout"]
        name = f"{loss} (shipped)" if loss == chosen else loss
        print(
            f"| {name} | {h['MAE']:,.0f} s | {h['skill']:.3f} | {h['MAE_heuristic']:,.0f} s "
            f"| {h['skill_vs_heuristic']:.3f} |"
        )
    print("\n| stage | time | target | peak memory |")
    print("| --- | --- | --- | --- |")
    for loss, (figures, wall, _) in runs.items():
        parts = (
            f"train() {figures['train_s']:.1f} s, "
            f"start and read {figures['imports_and_read_s']:.1f} s, save {figures['save_s']:.2f} s"
        )
        verdict = "✓" if wall < 60 else "✗"
        print(
            f"| train ({loss}), whole process | {wall:.1f} s ({parts}) | < 60 s {verdict} "
            f"| {figures['peak_mib']:.0f} MiB |"
        )
    spread = f"{predicted['predict_min_s'] * 1000:.0f}–{predicted['predict_max_s'] * 1000:.0f}"
    verdict = "✓" if predicted["predict_s"] < 0.5 else "✗"
    print(
        f"| predict {PREDICT_EVENTS:,} events | {predicted['predict_s'] * 1000:.0f} ms ({spread})"
        f" | < 0.5 s {verdict} | {predicted['peak_mib']:.0f} MiB |"
    )
    print(
        f"| load the model file ({size / 1024:.0f} KiB) | {predicted['load_s'] * 1000:.0f} ms | | |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
