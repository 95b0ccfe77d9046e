"""`run-local --address` on a Dask scheduler and worker that are other processes with settings
of their own (another HOME, an empty data directory, a download URL, a PostgreSQL history):
the worker fetches from its URL and records into the shared history, as a machine across the
network would.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import run_ticketeval
from tests.support.loopback import LoopbackServer, loopback, serve
from tests.unit.data.test_fetch import demo_zip
from ticketeval.data.cache import cache_path
from ticketeval.history.store import read_trials, redact_url

__all__ = ["loopback"]  # the fixture, imported so pytest finds it here


class Daemon:
    """A process whose stderr is read line by line, to wait for what it announces."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.output = ""  # what it wrote to stderr so far
        self._seen = 0  # how much of it wait_for has looked at
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first match of `pattern` in what it writes from now on (read unbuffered, so
        nothing waits in a buffer the selector cannot see); fails when the process ends or
        `timeout` seconds pass first."""
        assert self.process.stderr is not None
        descriptor = self.process.stderr.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(descriptor, selectors.EVENT_READ)
            while True:
                match = re.compile(pattern).search(self.output, self._seen)
                if match:
                    self._seen = match.end()
                    return match
                left = deadline - time.monotonic()
                chunk = os.read(descriptor, 65536) if left > 0 and selector.select(left) else b""
                if not chunk:  # the time is up, or the process ended
                    raise AssertionError(f"no match for {pattern!r} in:\n{self.output}")
                self.output += chunk.decode(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """The remote machine's own directories: HOME, data, history, working directory."""
    root = tmp_path / "remote"
    for name in ("home", "data", "history", "cwd"):
        (root / name).mkdir(parents=True)
    return root


@pytest.fixture
def cluster(
    remote: Path, postgres_url: str, loopback: type[LoopbackServer]
) -> Iterator[tuple[str, LoopbackServer]]:
    """A scheduler and one worker started as `dask` would be on another machine; the worker's
    environment names its own data directory, download URL and history, not the client's."""
    server = loopback([serve(demo_zip())]).start()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TICKETEVAL_")}
    env = {
        **inherited,
        "HOME": str(remote / "home"),
        "TICKETEVAL_DATA_DIR": str(remote / "data"),
        "TICKETEVAL_HISTORY_DIR": str(remote / "history"),
        "TICKETEVAL_DATA_URL": server.url("/incident_event_log.zip"),
        "TICKETEVAL_HISTORY_URL": postgres_url,
        "TICKETEVAL_RETRY_BACKOFF": "0",
    }
    python = [sys.executable, "-m"]
    scheduler = Daemon(
        [*python, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard"],
        env, remote / "cwd",
    )  # fmt: skip
    worker = None
    try:
        address = scheduler.wait_for(r"Scheduler at:\s+(tcp://\S+)").group(1)
        worker = Daemon(
            [*python, "distributed.cli.dask_worker", address, "--nworkers", "1", "--nthreads",
             "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
            env, remote / "cwd",
        )  # fmt: skip
        worker.wait_for(r"Registered to:")
        yield address, server
    finally:
        daemons = [daemon for daemon in (worker, scheduler) if daemon is not None]
        for daemon in daemons:  # both at once: each takes about a second to close
            daemon.process.terminate()
        for daemon in daemons:
            daemon.stop()


def test_a_remote_worker_fetches_with_its_settings_and_records_in_the_shared_history(
    data_dir: Path, remote: Path, postgres_url: str, cluster: tuple[str, LoopbackServer]
) -> None:
    address, server = cluster
    assert not cache_path(remote / "data").exists()

    # The client has its own cache and no history URL: its local history file is its own.
    result = run_ticketeval(
        "run-local", "--address", address, "--batch-size", "100", "--json", "--quiet"
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [request.path for request in server.requests] == ["/incident_event_log.zip"]
    assert cache_path(remote / "data").exists()  # the worker's data directory, not the client's
    [row] = read_trials(postgres_url)
    assert row.id == summary["id"] and row.runner == "run-local" and row.num_obs == 100
    assert summary["recorded"]["history"] == redact_url(postgres_url)
    assert not (data_dir / "history.sqlite").exists()  # nothing recorded on the client
    assert not (remote / "history" / "history.sqlite").exists()
