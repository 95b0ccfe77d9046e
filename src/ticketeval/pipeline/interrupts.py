"""What a run does when it is interrupted (Ctrl-C, SIGTERM): ticketeval's own process closes the
cluster and prints one line; the workers it forked and Dask's own logs add nothing to it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any


def quiet_logs_on_interrupt(kind: type[BaseException] | None, *_: object) -> bool:
    # Ctrl-C or SIGTERM: as the cluster closes, Dask's scheduler logs at CRITICAL, with a
    # traceback, the messages it could not send to the client going away. The run ends in
    # one line; nothing is logged after it.
    if kind is not None and issubclass(kind, KeyboardInterrupt):
        logging.disable(logging.CRITICAL)
    return False


_WORKER_SIGNALS_SET = threading.Event()


def _leave_signals_to_the_parent() -> None:
    # A forked worker inherits the CLI's handlers (SIGTERM raises Terminated, Ctrl-C raises
    # KeyboardInterrupt): raised inside Dask's event loop, each printed a 30-line traceback.
    # The parent owns both (it closes the cluster, which ends the worker, and prints one line).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def quiet_signals_in_forked_workers() -> None:
    """Every process forked from this one from now on (the LocalCluster's workers) leaves
    Ctrl-C and SIGTERM to ticketeval's own process: registered once per process."""
    if not _WORKER_SIGNALS_SET.is_set():
        _WORKER_SIGNALS_SET.set()
        os.register_at_fork(after_in_child=_leave_signals_to_the_parent)


def workers_stopper(local: Any) -> Callable[..., bool]:
    """An exit callback that, on Ctrl-C or SIGTERM, ends the LocalCluster's worker processes
    before it closes: a graceful close waits up to 4 s for a task still running, whose result
    nobody will read. Each nanny is told first, so that it does not start a new worker."""

    def stop(kind: type[BaseException] | None, *_: object) -> bool:
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            for nanny in list(local.workers.values()):
                with contextlib.suppress(Exception):  # already gone, or never started
                    nanny.close_gracefully()
                    if nanny.pid:
                        os.kill(nanny.pid, signal.SIGTERM)
        return False

    return stop
