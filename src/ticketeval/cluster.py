"""The Dask cluster a flow runs on: a LocalCluster started here, or an existing scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ticketeval.errors import DownloadError, FlowError, TicketevalError, UsageError

if TYPE_CHECKING:
    from prefect import Flow


@dataclass(frozen=True)
class ClusterOptions:
    """Where run-local runs: a new LocalCluster, or an existing scheduler at `address`."""

    workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | None = None
    address: str | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be at least 1, not {self.workers}.")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise UsageError(
                f"--threads-per-worker must be at least 1, not {self.threads_per_worker}."
            )


def default_threads() -> int:
    """A thread per core, at most 4: the flow never has more than four tasks to run at once."""
    return max(1, min(4, os.cpu_count() or 1))


def check_scheduler_address(address: str, timeout: float = 5.0) -> None:
    """Refuse a malformed or unreachable scheduler address before Dask waits on it."""
    parsed = urlparse(address)
    if parsed.scheme not in ("tcp", "tls") or not parsed.hostname or not parsed.port:
        raise UsageError(
            f"--address {address!r} is not a Dask scheduler address like tcp://host:8786."
        )
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=timeout).close()
    except OSError as error:
        raise DownloadError(
            f"cannot reach the Dask scheduler at {address}: {error.strerror or error}."
        ) from None


def prefect_logs_to_stderr() -> None:
    """Prefect 1 logs to stdout, which Dask workers share with the CLI and which `--json`
    keeps for JSON: move those logs to stderr (here, and on each worker)."""
    import prefect.utilities.logging  # noqa: F401  (configures the "prefect" logger)

    for handler in logging.getLogger("prefect").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def warm_up_worker() -> None:
    """Import what the tasks need, on a worker, while the client builds the flow."""
    import ticketeval.flow  # noqa: F401  (pandas, pyarrow and the tasks' modules)

    prefect_logs_to_stderr()


def _warm_up(client: Any) -> None:
    # Only a head start: on Ctrl-C the client closes under it, and the error it then gets must
    # not be printed as a thread's traceback.
    with contextlib.suppress(Exception):
        client.run(warm_up_worker)


def run_flow(
    build_flow: Callable[[], Flow],
    cluster: ClusterOptions,
    *,
    on_cluster: Callable[[str, str | None], None] | None = None,
    result_task: str = "get_trial_summary",
) -> Any:
    """Start (or connect to) the Dask cluster, build the flow, run it with Prefect's
    DaskExecutor, and return the result of its task named `result_task`.

    The cluster starts first and its workers import the tasks' libraries while this process
    imports Prefect and builds the flow. By default one worker process runs a thread per core:
    the tasks are small, and each extra process costs a second or more of start-up and imports.
    A LocalCluster started here is always closed (also on failure and Ctrl-C); a scheduler given
    by address is left running. A failed task becomes one FlowError naming it.
    """
    from distributed import Client, LocalCluster

    # Harmless: the LocalCluster and Prefect's executor both watch worker status.
    warnings.filterwarnings("ignore", "Scheduler already contains a plugin", UserWarning)
    if not cluster.verbose:
        # On Ctrl-C, gathers still pending die with the client, which asyncio logs as
        # "Task exception was never retrieved" tracebacks.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        address = cluster.address
        if address is None:
            local = LocalCluster(
                n_workers=cluster.workers or 1,
                threads_per_worker=cluster.threads_per_worker or default_threads(),
                memory_limit=cluster.memory_limit or "auto",
                dashboard_address="127.0.0.1:0",
                host="127.0.0.1",
                # Dask's warnings and errors while it shuts down (killing a busy worker, a
                # heartbeat to a closed scheduler on Ctrl-C, with a traceback) are noise in cron
                # mail; a failed task is reported by the flow's state, in one line.
                silence_logs=logging.INFO if cluster.verbose else logging.CRITICAL,
            )
            stack.callback(local.close)
            address, dashboard = local.scheduler_address, local.dashboard_link
        else:
            check_scheduler_address(address)
            dashboard = None
        client = stack.enter_context(Client(address, set_as_default=False))
        if on_cluster:
            on_cluster(address, dashboard or client.dashboard_link)
        warm_up = threading.Thread(target=_warm_up, args=(client,), daemon=True)
        warm_up.start()
        flow = build_flow()
        from prefect.executors import DaskExecutor

        prefect_logs_to_stderr()
        warm_up.join()
        state = flow.run(executor=DaskExecutor(address=address))
    return _flow_summary(flow, state, result_task)


def _flow_summary(flow: Flow, state: Any, result_task: str) -> Any:
    task_states = state.result if isinstance(state.result, dict) else {}
    for task in flow.sorted_tasks():
        task_state = task_states.get(task)
        if task_state is None:
            continue
        # A mapped task's own state succeeds when its children fail: look at each child.
        children = getattr(task_state, "map_states", None) or []
        for child in [task_state, *children]:
            if child.is_failed():
                raise _task_failure(task.name, child)
    if not state.is_successful():
        raise FlowError(f"the flow did not succeed: {state.message}")
    return task_states[flow.get_tasks(name=result_task)[0]].result


def _task_failure(name: str, task_state: Any) -> FlowError:
    error = task_state.result
    if isinstance(error, TicketevalError):
        failure = FlowError(f"task {name!r} failed: {error}")
        failure.exit_code = error.exit_code
        return failure
    if isinstance(error, BaseException):
        detail = f"{type(error).__name__}: {error}"
    else:
        detail = task_state.message
    return FlowError(f"task {name!r} failed: {detail}")
