"""Headless Chromium for the tests: render a local page to a PNG and list the network requests
the page made.

Requests are read from Chromium's own network log (`--log-net-log`, JSON): every URL request
the network service starts is an URL_REQUEST_START_JOB event with its URL, initiator and
network isolation key. Requests a file:// page makes carry the key "file://" (and the initiator
"null"); the browser's own background requests (update checks, time sync), which it makes even
with --disable-background-networking, carry the initiator "not an origin" and no file:// key,
so they are listed apart. file: and data: URLs never reach the network service, so they are not
in the log at all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
)
TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Rendering:
    screenshot: Path
    page_requests: list[str]  # URLs the page asked the network for
    browser_requests: list[str]  # the browser's own background requests, not the page's


def chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    found = chromium()
    if found is None:
        pytest.skip(f"headless Chromium is not installed (none of {', '.join(CHROMIUM_NAMES)})")
    return found


def render(page: Path, screenshot: Path, *, width: int = 1200, height: int = 3000) -> Rendering:
    """Open `page` (a local file) in headless Chromium, screenshot it, return what it requested."""
    executable = require_chromium()
    with tempfile.TemporaryDirectory(prefix="ticketeval-chromium-") as scratch:
        net_log = Path(scratch) / "net-log.json"
        command = [
            executable,
            *FLAGS,
            f"--user-data-dir={Path(scratch) / 'profile'}",
            f"--log-net-log={net_log}",
            f"--screenshot={screenshot}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ]
        # A session of its own, so a timeout can end Chromium's helper processes too.
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(
                f"Chromium did not finish within {TIMEOUT_SECONDS:.0f} s"
            ) from None
        tail = stderr.decode(errors="replace")[-2000:]
        assert process.returncode == 0, f"Chromium exited with {process.returncode}: {tail}"
        assert screenshot.exists(), f"Chromium wrote no screenshot: {tail}"
        assert net_log.exists(), f"Chromium wrote no network log: {tail}"
        page_requests, browser_requests = _requests(net_log)
    return Rendering(screenshot, page_requests, browser_requests)


def _requests(net_log: Path) -> tuple[list[str], list[str]]:
    log = json.loads(net_log.read_text(encoding="utf-8"))
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    page, browser = [], []
    for event in log["events"]:
        params = event.get("params") or {}
        if event.get("type") != start_job or "url" not in params:
            continue
        key = str(params.get("network_isolation_key", ""))
        own = params.get("initiator") == "not an origin" and "file://" not in key
        (browser if own else page).append(params["url"])
    return page, browser
