"""Reliability where a process is the point: one executable test per exit code, kill -9, a dead
Dask worker, and overlapping fetches (Ctrl-C: test_hostile_cli; overlapping runs: test_history)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from tests.support.helpers import (
    DEMO_ROWS,
    assert_no_process_left,
    expect_error,
    invoke,
    run_ticketeval,
    snapshot,
    start_ticketeval,
    ticketeval_executable,
)
from tests.unit.data.test_bad_data import _with_value
from ticketeval.data import cache, demo
from ticketeval.errors import ExitCode
from ticketeval.history import store as history
from ticketeval.settings import load_settings

pytestmark = pytest.mark.usefixtures("without_dashboard")  # the cluster is not the point here

# --- Helpers -----------------------------------------------------------------------------------


def exited_within(process: subprocess.Popen[str] | subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait up to `seconds` for the process to exit (a polling interval, not a synchronisation)."""
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


# --- Bad data through `fetch --source FILE` ----------------------------------------------------


# --- Re-exported data: the same events in other spellings --------------------------------------


# --- Options and settings ----------------------------------------------------------------------


# --- Properties of the parser ------------------------------------------------------------------


# --- kill -9 in the middle of parsing -----------------------------------------------------------


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory, demo_csv: bytes) -> Path:
    """300,000 events (120 MB): the session's 2,000 demo events 150 times over, which the parser
    reads like any other rows (generating 300,000 took 2 s of CPU)."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    header, body = demo_csv.split(b"\n", 1)
    with path.open("wb") as out:
        out.write(header + b"\n")
        for _ in range(300_000 // DEMO_ROWS):
            out.write(body)
    return path


def test_sigkill_mid_parse_leaves_the_previous_cache(data_dir: Path, big_csv: Path) -> None:
    before = snapshot(data_dir)
    size = big_csv.stat().st_size
    process = subprocess.Popen(
        [ticketeval_executable(), "fetch", "--source", str(big_csv)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watched = psutil.Process(process.pid)
    parsing = False
    try:
        for _ in range(6000):  # bounded: at most ~2 minutes of polling
            if exited_within(process, 0.02):
                break  # it finished before we saw it parse: the assertion below fails
            with_children = watched.cpu_times()
            # Imported, the file read into memory, and busy: it is parsing the CSV.
            if with_children.user + with_children.system > 0.5 and watched.memory_info().rss > size:
                parsing = True
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert parsing and process.returncode == -signal.SIGKILL, process.returncode
    after = snapshot(data_dir)
    leftovers = sorted(set(after) - set(before))
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers
    assert {name: after[name] for name in before} == before
    info = cache.read_cache_info(data_dir)
    assert info is not None and info.rows == DEMO_ROWS and info.source == "demo"
    result = invoke("evaluate", "--batch-size", "100", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"]["rows"] == DEMO_ROWS


# --- The installed executable: the exit codes no other process test gives -----------------------
# (0: test_cli; 1 and the killed worker: below; 4: test_fetch; 5: test_flow; 6: test_saturn;
# 130 and 143: test_hostile_cli)


@pytest.mark.parametrize(
    ("arguments", "code", "fragments"),
    [
        (["evaluate", "--batch-size", "0"], ExitCode.USAGE, ("at least 1, not 0",)),
        (["fetch", "--source", "bad-date.csv"], ExitCode.DATA, ("'sys_updated_at'", "'31/13")),
        (
            ["evaluate", "--quiet", "--json", "--batch-size", "100", "--fail-if-mae-above", "1"],
            ExitCode.MAE_ABOVE_LIMIT,
            ("is above the limit of 1 s",),
        ),
    ],
    ids=["2-usage", "3-data", "10-mae-above-limit"],
)
def test_the_executable_exits_with_the_documented_code(
    data_dir: Path,
    tmp_path: Path,
    demo_csv: bytes,
    arguments: list[str],
    code: ExitCode,
    fragments: tuple[str, ...],
) -> None:
    (tmp_path / "bad-date.csv").write_bytes(
        _with_value(demo_csv, "sys_updated_at", "31/13/2016 25:61")
    )
    result = run_ticketeval(*arguments)
    expect_error(result, code, *fragments)
    recorded = history.read_trials(load_settings().history)
    if code == ExitCode.MAE_ABOVE_LIMIT:  # the trial is still recorded, and printed
        assert [row.id for row in recorded] == [json.loads(result.stdout)["id"]]
    else:
        assert recorded == [] and result.stdout == ""


# --- A dead worker during run-local -------------------------------------------------------------
# (Ctrl-C and SIGTERM once the cluster is up: test_hostile_cli.py::
# test_a_signal_during_run_local_closes_the_cluster_and_says_so.)


STALLING_MODEL = """
import os
from pathlib import Path

import numpy as np
import time


def model(batch):
    # The first call marks itself and stalls until its worker is killed; the rerun goes on.
    started = Path(os.environ["STALL_DIR"]) / "started"
    if not started.exists():
        started.write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)
    return np.full(len(batch), 3600.0)
"""


def run_and_kill_the_worker_of_predict(
    tmp_path: Path, model_dir: Path, env: dict[str, str] | None = None
) -> tuple[int, str, list[str]]:
    """run-local with a model that stalls in `predict`; kill -9 the worker process running it
    (the pid the model wrote) once it is there. Returns the exit code, stdout, stderr lines."""
    (model_dir / "stall.py").write_text(STALLING_MODEL)
    started = tmp_path / "started"
    arguments = ["run-local", "--batch-size", "200", "--json"]  # the test's data_dir
    process = start_ticketeval(
        [*arguments, "--model", "stall:model"], env={"STALL_DIR": str(tmp_path), **(env or {})}
    )
    try:
        for _ in range(6000):  # bounded: about two minutes of polling
            if (started.exists() and started.read_text()) or exited_within(process, 0.02):
                break
        assert started.exists(), process.communicate(timeout=300)
        psutil.Process(int(started.read_text())).kill()
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stdout, stderr.splitlines()


def test_a_worker_killed_during_a_task_is_survived_and_the_trial_recorded_once(
    data_dir: Path, tmp_path: Path, model_dir: Path, process_marker: str
) -> None:
    """The LocalCluster's nanny restarts the worker and Dask reruns the lost tasks (up to
    `distributed.scheduler.allowed-failures`, 3, deaths per task): the run succeeds."""
    code, stdout, lines = run_and_kill_the_worker_of_predict(tmp_path, model_dir)
    assert code == 0, lines
    assert not any("Traceback" in line or "Error" in line for line in lines), lines
    summary = json.loads(stdout)
    assert summary["data"]["num_obs"] == 200 and summary["model"] == "stall:model"
    recorded = history.read_trials(load_settings().history)
    assert [row.id for row in recorded] == [summary["id"]]
    assert_no_process_left(process_marker)


def test_a_task_whose_worker_dies_too_often_fails_with_exit_1_in_one_line(
    data_dir: Path, tmp_path: Path, model_dir: Path, process_marker: str
) -> None:
    """With no worker death allowed (Dask's own setting), the same kill fails the flow."""
    code, stdout, lines = run_and_kill_the_worker_of_predict(
        tmp_path, model_dir, env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    )
    assert code == ExitCode.FAILED, lines
    assert stdout == ""
    assert not any("Traceback" in line for line in lines), lines
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == [lines[-1]], lines
    # Named by its Dask key. Under load another task (get_target) may still be on the killed
    # worker beside predict, and then it is the one the flow's state names.
    assert re.search(r"KilledWorker\('[a-z_]+-(\d+-)?[0-9a-f]{32}'", errors[0]), errors
    assert history.read_trials(load_settings().history) == []
    assert_no_process_left(process_marker)


# --- Overlapping fetches --------------------------------------------------------------------------


def finish_all(processes: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    outcomes = []
    try:
        for process in processes:
            _, err = process.communicate(timeout=600)
            outcomes.append((process.returncode, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return outcomes


def test_overlapping_forced_fetches_leave_one_whole_cache(
    isolated_environment: Path, tmp_path: Path, process_marker: str
) -> None:
    """Two sources fetched with --force by overlapping processes: whichever rename comes last
    wins, and the cache is that source's whole file, never a mix or a torn write."""
    sources = {}
    for name, events, seed in (("a.csv", 1_500, 1), ("b.csv", 2_500, 2)):
        path = tmp_path / name
        path.write_bytes(demo.demo_event_log(events, seed=seed))
        alone = tmp_path / f"alone-{name}"  # what a fetch of this source alone caches
        cache.fetch(str(path), data_dir=alone)
        sources[str(path.resolve())] = pq.read_table(cache.cache_path(alone))
    processes = [
        start_ticketeval(["fetch", "--force", "--source", source])
        for _ in range(2)
        for source in sources
    ]
    outcomes = finish_all(processes)
    assert [code for code, _ in outcomes] == [0] * 4, outcomes
    info = cache.read_cache_info(isolated_environment)
    assert info is not None and info.source in sources
    table = pq.read_table(cache.cache_path(isolated_environment))
    assert table.equals(sources[info.source]) and info.rows == table.num_rows
    assert sorted(os.listdir(isolated_environment)) == ["events.parquet"]  # no temporary left
    assert_no_process_left(process_marker)


# Overlapping evaluate and run-local processes on the default SQLite history: in
# tests/e2e/test_history.py::test_ten_processes_at_once_record_ten_trials_none_twice.
