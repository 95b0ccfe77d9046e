"""The installed executable against a misbehaving HTTP server: exit 4, and kill -9 mid-download.

A failed download must exit 4 with one line on stderr, leave the previous cache byte for byte,
leave no temporary file, and `evaluate` must still work on the old cache. The command runs
in-process (CliRunner), except where the process is the point: exit code 4 from the installed
executable, and kill -9 in the middle of a download.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.support.helpers import (
    expect_error,
    run_ticketeval,
    snapshot,
    ticketeval_executable,
)
from tests.support.loopback import (
    LoopbackServer,
    error,
    hang,
)
from tests.unit.data.test_fetch import (
    assert_killed_run_left_only_the_previous_cache,
    assert_old_cache_still_works,
    body,
)
from ticketeval.errors import ExitCode

__all__ = ["body"]  # a fixture of the unit tests, imported so pytest finds it


def test_fetch_url_that_always_fails_with_500_is_a_network_error(
    loopback: type[LoopbackServer], data_dir: Path
) -> None:
    """The installed executable's exit code 4 (a download failed)."""
    before = snapshot(data_dir)
    with loopback([error(500)]) as server:
        result = run_ticketeval("fetch", "--url", server.url(), "--force")
    expect_error(result, ExitCode.NETWORK, "HTTP 500", server.url(), "No data was changed")
    assert len(server.requests) == 4  # the first try and three retries
    assert_old_cache_still_works(data_dir, before)


def test_sigkill_mid_download_keeps_the_previous_cache(
    loopback: type[LoopbackServer], body: bytes, data_dir: Path
) -> None:
    before = snapshot(data_dir)
    with loopback([hang(body, send=len(body) // 2)]) as server:
        process = subprocess.Popen(
            [ticketeval_executable(), "fetch", "--url", server.url(), "--force"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=os.environ.copy(),  # with TICKETEVAL_RETRY_BACKOFF=0, as every test
        )
        try:
            # The server has the request and has sent half the body; the client is reading.
            assert server.sent_partial.wait(timeout=120), "the download never started"
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            assert process.stderr is not None
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert_killed_run_left_only_the_previous_cache(data_dir, before)
    assert_old_cache_still_works(data_dir, snapshot(data_dir))
