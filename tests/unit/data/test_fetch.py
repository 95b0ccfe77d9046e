"""`fetch --url` against a real HTTP server on 127.0.0.1 (a thread) that misbehaves on purpose.

A failed download must exit 4 with one line on stderr, leave the previous cache byte for byte,
leave no temporary file, and `evaluate` must still work on the old cache. In-process
(CliRunner); the installed executable's exit code and kill -9 mid-download are in
tests/e2e/test_fetch.py.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.helpers import (
    expect_error,
    invoke,
    snapshot,
    zip_of,
)
from tests.support.loopback import (
    LoopbackServer,
    Response,
    drop,
    error,
    hang,
    loopback,
    serve,
    short,
)
from ticketeval.data import cache, demo, parsing
from ticketeval.errors import ExitCode

__all__ = ["loopback"]  # the fixture, imported so pytest finds it here

DEMO_EVENTS = 2_000


def demo_zip(events: int = DEMO_EVENTS, seed: int = 5) -> bytes:
    """A zip of demo CSV bytes, built here as UCI's would be (the CSV under its real name)."""
    return zip_of({parsing.CSV_NAME: demo.demo_event_log(events, seed=seed)})


@pytest.fixture(scope="module")
def body() -> bytes:
    return demo_zip()


def assert_old_cache_still_works(data_dir: Path, before: dict[str, bytes]) -> None:
    """The data directory is exactly as before (no temporary file) and still usable."""
    assert snapshot(data_dir) == before
    result = invoke("evaluate", "--batch-size", "100", "--seed", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"]["rows"] == DEMO_EVENTS


def test_fetch_url_downloads_parses_and_reports_rows(
    loopback: type[LoopbackServer], body: bytes, isolated_environment: Path
) -> None:
    with loopback([serve(body)]) as server:
        result = invoke("fetch", "--url", server.url("/x.zip"))
    assert result.exit_code == 0, result.output
    assert f"Fetched {DEMO_EVENTS:,} events" in result.stderr
    assert server.url("/x.zip") in result.stderr
    assert "differs from UCI's published file" in result.stderr  # a note, not an error
    assert [request.path for request in server.requests] == ["/x.zip"]
    assert sorted(os.listdir(isolated_environment)) == ["events.parquet"]
    info = cache.read_cache_info(isolated_environment)
    assert info is not None and info.rows == DEMO_EVENTS
    assert info.source == server.url("/x.zip")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """--verbose configures the root logger (and urllib3's) for the process: put them back."""
    root, urllib3 = logging.getLogger(), logging.getLogger("urllib3")
    saved = (root.handlers[:], root.level, urllib3.level)
    yield
    root.handlers[:], (root.level, urllib3.level) = saved[0], saved[1:]


def test_fetch_url_retries_server_errors_and_says_so_with_verbose(
    loopback: type[LoopbackServer], body: bytes, isolated_environment: Path, restore_logging: None
) -> None:
    with loopback([error(500), error(500), serve(body)]) as server:
        result = invoke("fetch", "--url", server.url(), "--verbose")
    assert result.exit_code == 0, result.output
    assert len(server.requests) == 3
    assert result.stderr.count("Retry: /x.zip") == 2  # urllib3's log of each retry
    assert " 500 " in result.stderr
    assert f"Fetched {DEMO_EVENTS:,} events" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_hanging_server_times_out_with_a_clear_message(
    loopback: type[LoopbackServer], data_dir: Path
) -> None:
    before = snapshot(data_dir)
    with loopback([hang()]) as server:
        result = invoke(
            "fetch", "--url", server.url(), "--force", env={"TICKETEVAL_TIMEOUT": "0.2"}
        )
    expect_error(result, ExitCode.NETWORK, f"downloading {server.url()} timed out after 0.2 s")
    assert "No data was changed" in result.stderr
    assert len(server.requests) == 4  # it did reach the server, and retried three times
    assert_old_cache_still_works(data_dir, before)


@pytest.mark.parametrize("misbehaviour", [drop, short], ids=["reset-mid-body", "short-body"])
def test_a_body_cut_short_is_a_network_error_and_changes_nothing(
    loopback: type[LoopbackServer],
    body: bytes,
    data_dir: Path,
    misbehaviour: Callable[[bytes], Response],
) -> None:
    before = snapshot(data_dir)
    with loopback([misbehaviour(body)]) as server:
        result = invoke("fetch", "--url", server.url(), "--force")
    expect_error(
        result,
        ExitCode.NETWORK,
        f"downloading {server.url()} failed",
        f"of {len(body):,} bytes",
        "No data was changed",
    )
    assert server.sent_partial.is_set()
    assert_old_cache_still_works(data_dir, before)


def test_a_download_that_is_not_a_zip_is_a_data_error(
    loopback: type[LoopbackServer], data_dir: Path
) -> None:
    before = snapshot(data_dir)
    page = b"<!DOCTYPE html><html><body>Maintenance</body></html>"
    with loopback([serve(page)]) as server:
        result = invoke("fetch", "--url", server.url(), "--force")
    expect_error(result, ExitCode.DATA, "not a valid zip file", "HTML page")
    assert_old_cache_still_works(data_dir, before)


def assert_killed_run_left_only_the_previous_cache(
    data_dir: Path, before: dict[str, bytes]
) -> None:
    """After a kill -9: the previous files, byte for byte, plus at most hidden temporary files
    (nothing can delete those in a killed process); none of them is taken for a cache."""
    after = snapshot(data_dir)
    leftovers = sorted(set(after) - set(before))
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers
    assert {name: after[name] for name in before} == before
    info = cache.read_cache_info(data_dir)
    assert info is not None and info.source == "demo" and info.rows == DEMO_EVENTS
