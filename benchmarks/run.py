"""Benchmarks: ticketeval against the seed's code, measured side by side in the same run.

    python benchmarks/run.py [--quick]

Prints a Markdown report and writes it to benchmarks/RESULTS.md. Every figure is a median of
several runs (min–max shown) and a ratio against its reference measured in this same run; a
figure and its reference run in turn (ours, reference, ours, ...), so a change of load on the
machine weighs on both. `--quick` (under 3 minutes) runs fewer repeats and skips the
1M/10M-event scale runs and the training benchmark (`benchmarks/training.py`).

Commands run as processes, with TICKETEVAL_DATA_DIR and TICKETEVAL_HISTORY_DIR set to
temporary directories: nothing of the user's is read or written.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import seed_reference as seed  # noqa: E402
from ticketeval.data.batches import TRIAL_COLUMNS, load_batch  # noqa: E402
from ticketeval.data.cache import cache_path, fetch, read_cache_info, write_cache  # noqa: E402
from ticketeval.data.demo import demo_event_log  # noqa: E402
from ticketeval.data.parsing import parse_event_log  # noqa: E402
from ticketeval.data.sources import RawLog, read_local  # noqa: E402
from ticketeval.scoring.metrics import bootstrap_intervals  # noqa: E402
from ticketeval.scoring.models import heuristic_model, load_model, model_columns, predict  # noqa: E402
from ticketeval.scoring.trial import compute_target  # noqa: E402

REAL_ZIP = HERE.parent.parent / "shared" / "data" / "incident_event_log.zip"
BIN = Path(sys.executable).parent
HEAVY = (
    "prefect", "dask", "distributed", "pandas", "pyarrow", "sklearn", "skops", "matplotlib",
)  # fmt: skip


@dataclass
class Timing:
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def __str__(self) -> str:
        return f"{fmt(self.median)} ({fmt(min(self.seconds))}–{fmt(max(self.seconds))})"


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def measure(function: Callable[[], object], repeats: int) -> Timing:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return Timing(times)


def run_process(command: list[str], env: dict[str, str]) -> float:
    """Wall time of one process."""
    start = time.perf_counter()
    process = subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr[-500:]}")
    return elapsed


def measure_processes(
    commands: dict[str, list[str]], env: dict[str, str], repeats: int
) -> dict[str, Timing]:
    """Each command's wall time, the commands run in turn `repeats` times (interleaved: a
    change of load on the machine weighs on all of them alike)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        LOADS.append(os.getloadavg()[0])
        for name, command in commands.items():
            times[name].append(run_process(command, env))
    return {name: Timing(seconds) for name, seconds in times.items()}


# A forked child starts with its parent's peak RSS on Linux (it survives exec), and this process
# holds the real data: measure peaks from a small launcher process instead.
_PEAK_RSS_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


# Runs its arguments as a grandchild of this process, for commands that read their own peak.
FROM_A_SMALL_PARENT = [
    sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))",
]  # fmt: skip


def peak_rss(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one run of `command`."""
    start = time.perf_counter()
    launched = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_LAUNCHER, *command],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if launched.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {launched.stderr[-500:]}")
    return elapsed, int(launched.stdout.split()[-1])


def parquet_size(path: Path, columns: list[str]) -> int:
    """Compressed bytes of `columns` in a Parquet file, from its footer."""
    metadata = pq.ParquetFile(path).metadata
    return sum(
        metadata.row_group(group).column(index).total_compressed_size
        for group in range(metadata.num_row_groups)
        for index in range(metadata.num_columns)
        if metadata.row_group(group).column(index).path_in_schema in columns
    )


LOADS: list[float] = []  # the 1-minute load average, sampled at every measurement


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


# What a cron user would write instead of `backtest --every week`: one `evaluate` per week.
# A week with no closure makes `evaluate` refuse (exit 3): noted, as the backtest shows it empty.
WEEKLY_LOOP = """
set -u
for week in $WEEKS; do
    from=${week%,*}; to=${week#*,}
    "$TICKETEVAL" evaluate --closed-from "$from" --closed-to "$to" --batch-size all --json \\
        > "$OUT/$from.json" || echo "$?" > "$OUT/$from.failed"
done
"""

# Stands for `run-local` without its flow: the client's imports, then a LocalCluster as
# run-local starts it, its worker importing what the tasks need, closed.
CLUSTER_FLOOR = """
import ticketeval.cli.app, ticketeval.core, ticketeval.pipeline.cluster, ticketeval.pipeline.flow
import prefect.executors
import dask
from distributed import Client, LocalCluster
dask.config.set({"distributed.worker.multiprocessing-method": "fork"})  # as run-local does
from ticketeval.pipeline.cluster import default_threads, warm_up_worker
cluster = LocalCluster(n_workers=1, threads_per_worker=default_threads(), host="127.0.0.1",
                       dashboard_address="127.0.0.1:0", silence_logs=50)
with Client(cluster.scheduler_address, set_as_default=False) as client:
    client.run(warm_up_worker)
cluster.close()
"""


def weeks_of(data_dir: Path) -> list[tuple[datetime, datetime]]:
    """ISO weeks from the Monday of the first closure's week to the week of the last closure:
    worked out here, independently of ticketeval, and checked against the backtest's."""
    closed = pq.read_table(cache_path(data_dir), columns=["closed_at"]).column(0)
    first, last = pc.min(closed).as_py(), pc.max(closed).as_py()
    monday = datetime.combine(first.date() - timedelta(days=first.weekday()), datetime.min.time())
    weeks = []
    while monday <= last:
        weeks.append((monday, monday + timedelta(days=7)))
        monday += timedelta(days=7)
    return weeks


def backtest_against_loop(
    ticketeval: str, env: dict[str, str], work: Path, repeats: int
) -> tuple[Timing, Timing, int, list[str]]:
    """`backtest --every week` and the shell loop of `evaluate` per week, in turn; each run
    with a fresh, empty history. Returns both timings, the weeks, and the disagreements."""
    weeks = weeks_of(Path(env["TICKETEVAL_DATA_DIR"]))
    week_list = " ".join(f"{start:%Y-%m-%d},{end:%Y-%m-%d}" for start, end in weeks)
    backtest_times, loop_times = [], []
    problems: list[str] = []
    for run in range(repeats):
        LOADS.append(os.getloadavg()[0])
        history = work / f"history-backtest-{run}"
        start = time.perf_counter()
        done = subprocess.run(
            [ticketeval, "backtest", "--every", "week", "--json"],
            env={**env, "TICKETEVAL_HISTORY_DIR": str(history)}, capture_output=True, text=True,
        )  # fmt: skip
        backtest_times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"backtest failed: {done.stderr[-500:]}")
        periods = json.loads(done.stdout)["periods"]

        out = work / f"loop-{run}"
        out.mkdir()
        loop_env = {
            **env, "TICKETEVAL_HISTORY_DIR": str(work / f"history-loop-{run}"),
            "WEEKS": week_list, "OUT": str(out), "TICKETEVAL": ticketeval,
        }  # fmt: skip
        start = time.perf_counter()
        subprocess.run(["bash", "-c", WEEKLY_LOOP], env=loop_env, check=True)
        loop_times.append(time.perf_counter() - start)
        if run == 0:
            problems = compare_weeks(weeks, periods, out)
    return Timing(backtest_times), Timing(loop_times), len(weeks), problems


def compare_weeks(
    weeks: list[tuple[datetime, datetime]], periods: list[dict], out: Path
) -> list[str]:
    """Where the backtest and the loop disagree: the weeks, their events, their MAE."""
    if len(periods) != len(weeks):
        return [f"the backtest made {len(periods)} periods, the loop {len(weeks)} weeks"]
    problems = []
    for index, ((start, end), period) in enumerate(zip(weeks, periods, strict=True)):
        name = f"{start:%Y-%m-%d}"
        # The backtest ends its last period just after the newest closure, not at the week's
        # calendar end: the same tickets.
        last = index == len(weeks) - 1
        ends_alike = period["closed_to"] == end.isoformat() or (
            last and start.isoformat() < period["closed_to"] < end.isoformat()
        )
        if period["closed_from"] != start.isoformat() or not ends_alike:
            problems.append(
                f"{name}: the backtest's week is {period['closed_from']} to {period['closed_to']}"
            )
            continue
        if (out / f"{name}.failed").exists():
            if period["events"]:
                problems.append(f"{name}: evaluate failed, the backtest has {period['events']}")
            continue
        data = json.loads((out / f"{name}.json").read_text())["data"]
        mae = data["metrics"]["MAE"]
        if data["num_obs"] != period["events"] or not math.isclose(
            mae, period["MAE"], rel_tol=1e-9
        ):
            problems.append(
                f"{name}: evaluate {data['num_obs']} events, MAE {mae}; "
                f"backtest {period['events']}, MAE {period['MAE']}"
            )
    return problems


def bootstrap_share(
    data_dir: Path, ticketeval: str, env: dict[str, str], size: int, repeats: int
) -> tuple[Timing, Timing]:
    """`bootstrap_intervals` on a trial's target and predictions (in this process), and the
    whole `evaluate` process on the same batch (same size, same seed)."""
    model = load_model("heuristic")
    batch = load_batch(data_dir, size, seed=1, columns=model_columns(model))
    target = compute_target(batch.frame)
    predictions = predict(model, batch.frame)
    bootstrap = measure(
        lambda: bootstrap_intervals(target, predictions, seed=batch.seed), repeats * 2
    )
    command = [ticketeval, "evaluate", "--batch-size", str(size), "--seed", "1", "--json"]
    return bootstrap, measure_processes({"evaluate": command}, env, repeats)["evaluate"]


def synthetic_cache(directory: Path, events: int) -> None:
    """A cache of `events` synthetic events where the real data's goes: `evaluate` then reads
    it as it reads the real file's (with `--source demo` it would check the whole file first)."""
    raw = RawLog(demo_event_log(events, 0), f"synthetic ({events:,} events)")
    write_cache(parse_event_log(raw.csv, name="synthetic"), raw, directory)


NOTES = """## Reading these results

- Time: reading, the target, the model and the four metrics are linear in the rows (no sort;
  medians by partition). Beyond about 100,000 events the bootstrap intervals of the summary
  take most of `evaluate`'s time (figure 7, and the `summarize` stage above): 1,000 resamples
  of n events are 1,000 x n random gathers, and once the errors outgrow the CPU's cache each
  gather costs more, so the time per million events rises from 1M to 10M events.
- Memory: the fixed cost no longer includes scikit-learn (about 140 MiB, not 210), so the
  growth of a small batch, a few MiB of columns, shows as a large ratio. On the real file the
  growth is pandas' Python strings for `number` and `incident_state` (load_batch) and the
  bootstrap's chunk of two million row numbers and values (summarize); on 10M events the
  target is met.
- The reference is the seed's own code (`seed_reference.py`): its parse runs inside every
  trial, which is most of the seed's time in figures 3 and 4.
- Backtest against the loop: the loop pays a whole `evaluate` process (interpreter, imports,
  reading the cache, recording) per week; the backtest pays the LocalCluster once and scores
  the weeks as mapped tasks in one worker that has imported everything once."""


def per_million(seconds: float, events: int) -> str:
    # Below a million events the time beyond the fixed cost is within the runs' noise.
    return fmt(seconds / events * 1e6) if events >= 1_000_000 else "–"


def met(target_met: bool) -> str:
    return "yes" if target_met else "**no**"


def ratio(reference: Timing, ours: Timing) -> float:
    return reference.median / ours.median


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def table(self, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        self.add("| " + " | ".join(header) + " |")
        self.add("| " + " | ".join("---" for _ in header) + " |")
        for row in rows:
            self.add("| " + " | ".join(row) + " |")
        self.add()


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("ticketeval", "pandas", "pyarrow", "numpy", "scikit-learn", "prefect",
                     "distributed")
    )  # fmt: skip
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{memory:.0f} GiB RAM, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; {versions}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 1M/10M runs")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    options = parser.parse_args()
    if not REAL_ZIP.exists():
        print(f"The real UCI file is not at {REAL_ZIP}: nothing to measure against.")
        return 0
    repeats = 3 if options.quick else 7
    process_repeats = 2 if options.quick else 5
    began = time.perf_counter()
    report = Report()
    mode = "quick" if options.quick else "full"
    report.add(f"# Benchmarks ({mode} run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
    report.add()
    report.add(f"Machine: {machine()}.")
    report.add()
    report.add(f"Load average (1, 5, 15 min) at the start: {load_average()}.")
    report.add()
    report.add("Each figure: median (min–max) of the runs; ratio = reference / ticketeval.")
    report.add()

    with tempfile.TemporaryDirectory(prefix="ticketeval-bench-") as work:
        data_dir = Path(work) / "data"
        env = {
            **os.environ,
            "TICKETEVAL_DATA_DIR": str(data_dir),
            "TICKETEVAL_HISTORY_DIR": str(Path(work) / "history"),
            "PYTHONWARNINGS": "ignore",
        }
        for name in ("TICKETEVAL_HISTORY_URL", "TICKETEVAL_HISTORY_PATH", "TICKETEVAL_SEED"):
            env.pop(name, None)
        fetch(str(REAL_ZIP), data_dir=data_dir)
        results: list[tuple[str, ...]] = []

        # 1. Cold load: zip -> typed table, all columns, proper datetimes.
        seed_parse = measure(lambda: seed.load_ticket_data(REAL_ZIP), max(2, repeats // 2))

        def plain_pyarrow() -> pa.Table:
            return pacsv.read_csv(
                io.BytesIO(zipfile.ZipFile(REAL_ZIP).read("incident_event_log.csv")),
                convert_options=pacsv.ConvertOptions(
                    null_values=["?"], timestamp_parsers=["%d/%m/%Y %H:%M"]
                ),
            )

        pyarrow_parse = measure(plain_pyarrow, repeats)
        ours_parse = measure(lambda: parse_event_log(read_local(REAL_ZIP).csv), repeats)
        ours_pandas = measure(
            lambda: parse_event_log(read_local(REAL_ZIP).csv).to_pandas(), repeats
        )
        to_arrow, to_pandas = ratio(seed_parse, ours_parse), ratio(seed_parse, ours_pandas)
        results += [
            ("1. cold load: zip → typed Arrow table", str(ours_parse), f"seed {seed_parse}",
             f"{to_arrow:.1f}x", "≥10x", met(to_arrow >= 10)),
            ("1. cold load, to a pandas DataFrame", str(ours_pandas), f"seed {seed_parse}",
             f"{to_pandas:.1f}x", "≥10x", met(to_pandas >= 10)),
            ("1. cold load vs plain pyarrow", str(ours_parse), f"pyarrow {pyarrow_parse}",
             f"{ours_parse.median / pyarrow_parse.median:.2f}x pyarrow's time", "≤2x",
             met(ours_parse.median <= 2 * pyarrow_parse.median)),
        ]  # fmt: skip

        # 2. Warm load: the columns a trial needs, from the cache.
        warm_read = measure(
            lambda: pq.read_table(cache_path(data_dir), columns=list(TRIAL_COLUMNS)),
            repeats * 3,
        )
        warm_batch = measure(
            lambda: load_batch(data_dir, 1000, seed=1, columns=("priority",)), repeats * 3
        )
        results += [
            ("2. warm load: trial columns from the cache", str(warm_read), f"seed {seed_parse}",
             f"{ratio(seed_parse, warm_read):.0f}x", "≥100x, <20 ms",
             met(ratio(seed_parse, warm_read) >= 100 and warm_read.median < 0.02)),
            ("2. warm load + sample 1,000 → pandas", str(warm_batch), f"seed {seed_parse}",
             f"{ratio(seed_parse, warm_batch):.0f}x", "≥100x, <20 ms",
             met(ratio(seed_parse, warm_batch) >= 100 and warm_batch.median < 0.02)),
        ]  # fmt: skip

        # 3. evaluate as a whole process, warm cache.
        python = str(BIN / "python")
        ticketeval = str(BIN / "ticketeval")
        evaluate = measure_processes(
            {
                "ours": [ticketeval, "evaluate", "--batch-size", "1000", "--json"],
                "seed": [python, str(HERE / "seed_evaluate.py"), str(REAL_ZIP)],
                "floor": [python, "-c", "import pandas, pyarrow.parquet"],
                "python": [python, "-c", "pass"],
            },
            env,
            process_repeats,
        )
        ours_evaluate, seed_evaluate = evaluate["ours"], evaluate["seed"]
        results += [
            ("3. `ticketeval evaluate --batch-size 1000`", str(ours_evaluate),
             f"seed script {seed_evaluate}", f"{ratio(seed_evaluate, ours_evaluate):.1f}x", "≥6x",
             met(ratio(seed_evaluate, ours_evaluate) >= 6)),
            ("3. floor: python + pandas + pyarrow.parquet imports", str(evaluate["floor"]), "",
             f"evaluate is {ours_evaluate.median / evaluate['floor'].median:.2f}x the floor",
             "", ""),
            ("3. of which: the bare interpreter", str(evaluate["python"]), "", "", "", ""),
        ]  # fmt: skip

        # 4. run-local as a whole process, warm cache.
        run_local = measure_processes(
            {
                "ours": [ticketeval, "run-local", "--batch-size", "1000", "--json"],
                "seed": [python, str(HERE / "seed_reference.py"), str(REAL_ZIP)],
                "imports": [python, "-c", "import ticketeval.cli.app, ticketeval.core, "
                            "ticketeval.pipeline.cluster, ticketeval.pipeline.flow, "
                            "prefect.executors, distributed"],
                "floor": [python, "-c", CLUSTER_FLOOR],
            },
            env,
            process_repeats,
        )  # fmt: skip
        ours_run, seed_run = run_local["ours"], run_local["seed"]
        cluster_part = run_local["floor"].median - run_local["imports"].median
        results += [
            ("4. `ticketeval run-local --batch-size 1000`", str(ours_run),
             f"seed flow {seed_run}", f"{ratio(seed_run, ours_run):.1f}x", "≥3x",
             met(ratio(seed_run, ours_run) >= 3)),
            ("4. of which: interpreter + the client's imports (Prefect, Dask, pandas)",
             str(run_local["imports"]), "", "", "", ""),
            ("4. of which: LocalCluster start, its worker's imports, close",
             fmt(cluster_part), "", f"floor (the two above, one process): {run_local['floor']}",
             "", ""),
            ("4. of which: building and running the flow, recording",
             fmt(ours_run.median - run_local["floor"].median), "", "", "", ""),
        ]  # fmt: skip

        # 5. --help.
        help_time = measure_process_list([ticketeval, "--help"], env, repeats * 2)
        trace = subprocess.run(
            [python, "-X", "importtime", "-m", "ticketeval", "--help"],
            env=env, capture_output=True, text=True, check=True,
        ).stderr  # fmt: skip
        imported = {line.split("|")[-1].strip().split(".")[0] for line in trace.splitlines()}
        heavy = sorted(set(HEAVY) & imported)
        results.append(
            ("5. `ticketeval --help`", str(help_time), "", f"heavy imports: {heavy or 'none'}",
             "<0.2 s, none", met(help_time.median < 0.2 and not heavy))
        )  # fmt: skip
        # Against the floor any Typer CLI pays: the interpreter, Typer and Rich's console.
        floor = measure_process_list([python, "-c", "import typer, rich.console"], env, repeats * 2)
        help_ratio = help_time.median / floor.median
        results.append(
            ("5. of which: `python -c \"import typer, rich.console\"`", str(floor), "",
             f"--help is {help_ratio:.2f}x this floor", "<=1.5x", met(help_ratio <= 1.5))
        )  # fmt: skip

        # 6. backtest --every week against a shell loop of evaluate, one per week.
        backtest, loop, weeks, problems = backtest_against_loop(
            ticketeval, env, Path(work), 2 if options.quick else 3
        )
        same = "same MAE and events in every week" if not problems else "; ".join(problems)
        results += [
            (f"6. `ticketeval backtest --every week` ({weeks} weeks)", str(backtest),
             f"loop of `evaluate` per week {loop}", f"{ratio(loop, backtest):.1f}x", "≥5x",
             met(ratio(loop, backtest) >= 5 and not problems)),
            ("6. check: backtest vs the loop, week by week", same, "", "", "same MAE",
             met(not problems)),
        ]  # fmt: skip

        # 7. The bootstrap's share of evaluate.
        rows = read_cache_info(data_dir).rows
        for size in (1_000, 10_000, rows):
            boot, whole = bootstrap_share(data_dir, ticketeval, env, size, process_repeats)
            share = boot.median / whole.median
            target = ("<10%", met(share < 0.10)) if size == 10_000 else ("", "")
            results.append(
                (f"7. bootstrap intervals, {size:,} events", str(boot), f"evaluate {whole}",
                 f"{share:.1%} of evaluate", *target)
            )  # fmt: skip

        report.table(("figure", "ticketeval", "reference", "ratio", "target", "met"), results)

        # 8. Scale: time and peak memory of evaluate as the batch and the log grow.
        report.add("## Scale: `ticketeval evaluate` as the batch and the log grow")
        report.add()
        report.add(
            "Peak RSS is the process's maximum resident set (kernel accounting, measured from a "
            'small launcher process). "Fixed" is the same command on a 1,000-event log '
            '(interpreter, imports, buffers). "Loaded" is the size of the columns `evaluate` '
            "reads, for the whole log: in memory as Arrow, and (in brackets) on disk in the "
            "Parquet cache, compressed. Targets: time growing linearly (the time beyond the "
            "fixed cost, per million events, stays flat), and peak − fixed under 3x loaded."
        )
        report.add()
        columns = list(dict.fromkeys([*TRIAL_COLUMNS, *heuristic_model.columns]))
        tiny = Path(work) / "synthetic-1000"
        synthetic_cache(tiny, 1_000)
        fixed_command = [ticketeval, "evaluate", "--batch-size", "100", "--seed", "1", "--json"]
        fixed_runs = [
            peak_rss(fixed_command, {**env, "TICKETEVAL_DATA_DIR": str(tiny)}) for _ in range(3)
        ]
        fixed_time = statistics.median(t for t, _ in fixed_runs)
        fixed_rss = min(rss for _, rss in fixed_runs) * 1024
        sizes = [(data_dir, rows, batch) for batch in (1_000, 10_000, rows)]
        if not options.quick:
            for events in (1_000_000, 10_000_000):
                synthetic = Path(work) / f"synthetic-{events}"
                synthetic_cache(synthetic, events)
                sizes.append((synthetic, events, events))
        scale_rows = []
        for directory, events, batch in sizes:
            scale_env = {**env, "TICKETEVAL_DATA_DIR": str(directory)}
            command = [ticketeval, "evaluate", "--batch-size", str(batch), "--seed", "1", "--json"]
            timing = [peak_rss(command, scale_env) for _ in range(2 if events > 10**6 else 3)]
            elapsed = statistics.median(t for t, _ in timing)
            cache = cache_path(directory)
            loaded = pq.read_table(cache, columns=columns).nbytes
            on_disk = parquet_size(cache, columns)
            peak = max(rss for _, rss in timing) * 1024
            growth = (peak - fixed_rss) / loaded
            scale_rows.append(
                (f"{events:,}", f"{batch:,}", fmt(elapsed),
                 per_million(elapsed - fixed_time, events), f"{peak / 2**20:.0f} MiB",
                 f"{loaded / 2**20:.1f} MiB ({on_disk / 2**20:.1f} MiB)", f"{growth:.2f}",
                 met(growth < 3))
            )  # fmt: skip
        report.table(
            ("events in the log", "batch", "time", "time beyond fixed, per 1M events",
             "peak RSS", "loaded (on disk)", "(peak − fixed) / loaded", "met"),
            scale_rows,
        )  # fmt: skip
        report.add(
            f"Fixed cost (`evaluate` on a 1,000-event log): {fmt(fixed_time)}, "
            f"{fixed_rss / 2**20:.0f} MiB."
        )
        largest, events, _ = sizes[-1]
        report.add()
        report.add(f"Where the memory goes, on the {events:,}-event log (`memory_stages.py`):")
        report.add()
        stages = subprocess.run(
            [*FROM_A_SMALL_PARENT, python, str(HERE / "memory_stages.py"), str(largest)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for line in stages.splitlines():
            report.add(line)
        report.add()

        # 9. Training (issue 14): its own script, each stage in its own process.
        if not options.quick:
            report.add("## Training the time-to-close model (`training.py`)")
            report.add()
            trained = subprocess.run(
                [python, str(HERE / "training.py")], env=env, capture_output=True, text=True
            )
            if trained.returncode != 0:
                raise RuntimeError(f"training.py failed: {trained.stderr[-500:]}")
            for line in trained.stdout.splitlines():
                report.add(line)
            report.add()

        report.add(NOTES)
        report.add()
        report.add(
            f"Load average at the end: {load_average()}; the 1-minute load during the "
            f"measurements: median {statistics.median(LOADS):.1f} (min {min(LOADS):.1f}, max "
            f"{max(LOADS):.1f}). The run took {time.perf_counter() - began:.0f} s."
        )
    options.output.write_text("\n".join(report.lines) + "\n")
    print(f"\nWritten to {options.output}")
    return 0


def measure_process_list(command: list[str], env: dict[str, str], repeats: int) -> Timing:
    return measure_processes({"command": command}, env, repeats)["command"]


if __name__ == "__main__":
    sys.exit(main())
