"""The Dask cluster a flow runs on: a LocalCluster started here, or an existing scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ticketeval.defaults import DEFAULT_SCHEDULER_TIMEOUT, WORKER_TIMEOUT
from ticketeval.errors import (
    FlowError,
    RemoteError,
    SettingsError,
    TicketevalError,
    UnreachableError,
    UsageError,
)
from ticketeval.history.urls import is_server_url
from ticketeval.pipeline.interrupts import (
    quiet_logs_on_interrupt,
    quiet_signals_in_forked_workers,
    workers_stopper,
)
from ticketeval.pipeline.memory_watch import MemoryWatch, interruptible_by

if TYPE_CHECKING:
    from prefect import Flow


# A worker at rest, with the tasks' libraries imported, holds about 150 MiB, and Dask pauses a
# worker at 80% of its limit: below this a worker pauses or restarts before any task runs.
MIN_MEMORY_LIMIT = 256 * 2**20
# How long an --address has to answer as a Dask scheduler, and then to have a worker.
# A Saturn job's Dask workers are pods that may first need a machine: give them longer.
SATURN_WORKER_TIMEOUT = 900.0


@dataclass(frozen=True)
class ClusterOptions:
    """Where run-local runs: a new LocalCluster, an existing scheduler at `address`, or (with
    `saturn`, inside a Saturn Cloud job) the Dask cluster Saturn attached to the job.

    Every value is checked here, before any data is read or a cluster starts."""

    workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | None = None
    address: str | None = None
    verbose: bool = False
    # How long a scheduler given by --address has to answer (TICKETEVAL_SCHEDULER_TIMEOUT).
    scheduler_timeout: float = DEFAULT_SCHEDULER_TIMEOUT
    saturn: bool = False
    # Serve the LocalCluster's dashboard; None: as the settings say (TICKETEVAL_DASHBOARD).
    dashboard: bool | None = None

    @property
    def remote(self) -> bool:
        """Whether the workers are other machines (their own disks, their own settings)."""
        return self.address is not None or self.saturn

    def __post_init__(self) -> None:
        if self.saturn and self.address is not None:
            raise UsageError("--saturn and --address name two clusters: give one.")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be at least 1, not {self.workers}.")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise UsageError(
                f"--threads-per-worker must be at least 1, not {self.threads_per_worker}."
            )
        for option, value in (
            ("--workers", self.workers),
            ("--threads-per-worker", self.threads_per_worker),
        ):
            if value is not None and value > max_local_parallelism():
                # Thousands of worker processes never start: refused now, not after minutes.
                raise UsageError(
                    f"{option} {value} is more than this machine can run: give at most "
                    f"{max_local_parallelism()} (4 per CPU core)."
                )
        if self.memory_limit is not None:
            memory_limit_bytes(self.memory_limit)
        if self.address is not None or self.saturn:
            if self.address is not None:
                scheduler_host_port(self.address)
            shaping = [
                option
                for option, value in (
                    ("--workers", self.workers),
                    ("--threads-per-worker", self.threads_per_worker),
                    ("--memory-limit", self.memory_limit),
                    ("--dashboard" if self.dashboard else "--no-dashboard", self.dashboard),
                )
                if value is not None
            ]
            if shaping:
                where = "--saturn the job's" if self.saturn else "--address the scheduler's own"
                verb = "shapes" if len(shaping) == 1 else "shape"
                raise UsageError(
                    f"{', '.join(shaping)} {verb} the LocalCluster ticketeval starts; with "
                    f"{where} workers run the flow: drop them."
                )

    def workers_history(self, history: str) -> str | None:
        """The history the flow's workers write to: this machine's, except that a scheduler
        given by address (or a Saturn job's cluster) gets it only when it is a server (a SQLite
        path there would be its own disk)."""
        if self.remote and not is_server_url(history):
            return None
        return history


def max_local_parallelism() -> int:
    """The most workers, or threads per worker, a LocalCluster may be asked for: 4 per core."""
    return 4 * (os.cpu_count() or 1)


def memory_limit_bytes(text: str) -> int | None:
    """--memory-limit in bytes (None for 'auto'); refuses what is not a size, or too small."""
    if text.strip().lower() == "auto":
        return None
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(text) if text.strip() else None
    except ValueError:
        size = None
    if size is None or size < 0:
        raise UsageError(
            f"--memory-limit {text!r} is not a size: give one like 2GiB or 512MiB, or 'auto'."
        )
    if size < MIN_MEMORY_LIMIT:
        raise UsageError(
            f"--memory-limit {text} is below the minimum of {MIN_MEMORY_LIMIT // 2**20} MiB a "
            "Dask worker needs before any task runs: give at least 256MiB, or 'auto'."
        )
    return size


def default_threads() -> int:
    """A thread per core, at most 4: the flow never has more than four tasks to run at once."""
    return max(1, min(4, os.cpu_count() or 1))


def scheduler_host_port(address: str) -> tuple[str, int]:
    """The host and port of a `tcp://host:port` address; refuses anything else."""
    problem = f"--address {address!r} is not a Dask scheduler address like tcp://host:8786"
    try:
        parsed = urlparse(address)
        host, port = parsed.hostname, parsed.port
    except ValueError as error:  # tcp://[::1 or a port beyond 65535
        raise UsageError(f"{problem} ({error}).") from None
    if parsed.scheme != "tcp" or not host or not port:
        raise UsageError(f"{problem}.")
    return host, port


def check_scheduler(address: str, timeout: float = DEFAULT_SCHEDULER_TIMEOUT) -> None:
    """Refuse, within `timeout` seconds, an address where no Dask scheduler answers: Dask's own
    client would wait forever on a server that accepts the connection and says nothing."""
    host, port = scheduler_host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise UnreachableError(
            f"cannot reach the Dask scheduler at {address}: {error.strerror or error}."
        ) from None
    advice = "check the host and port (a Dask scheduler listens on 8786 by default)"
    try:
        identity = asyncio.run(asyncio.wait_for(_identity(address, timeout), timeout))
    except TimeoutError:
        raise UnreachableError(
            f"{address} accepted the connection but did not answer as a Dask scheduler within "
            f"{timeout:g} s: {advice}."
        ) from None
    except Exception as error:  # whatever else it sends: struct, memory, decoding errors
        raise UnreachableError(
            f"{address} does not speak Dask's protocol ({type(error).__name__}): {advice}."
        ) from None
    kind = identity.get("type") if isinstance(identity, dict) else None
    if kind != "Scheduler":
        raise UnreachableError(
            f"{address} answered as a Dask {kind or 'peer'}, not a scheduler: give the "
            "scheduler's address."
        )


async def _identity(address: str, timeout: float) -> Any:
    from distributed.comm import connect

    comm = await connect(address, timeout=timeout)
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


def prefect_logs_to_stderr() -> None:
    """Prefect 1 logs to stdout, which Dask workers share with the CLI and which `--json`
    keeps for JSON: move those logs to stderr (here, and on each worker)."""
    import prefect.utilities.logging  # noqa: F401  (configures the "prefect" logger)

    for handler in logging.getLogger("prefect").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(CurrentStderr())


class CurrentStderr:
    """Whatever `sys.stderr` is when a record is written, not when Prefect was imported: a
    caller in the same process (a test's runner, a notebook) may swap it, and close the old."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def warm_up_worker() -> None:
    """Import what the tasks need, on a worker, while the client builds the flow."""
    import ticketeval.pipeline.flow  # noqa: F401  (pandas, pyarrow and the tasks' modules)

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
    import dask
    from distributed import Client, LocalCluster

    # Harmless: the LocalCluster and Prefect's executor both watch worker status.
    warnings.filterwarnings("ignore", "Scheduler already contains a plugin", UserWarning)
    if not cluster.verbose:
        # On Ctrl-C, gathers still pending die with the client, which asyncio logs as
        # "Task exception was never retrieved" tracebacks.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    watch: MemoryWatch | None = None
    security: Any = None  # a Saturn cluster's TLS settings, when it has them
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_heap_frozen())
            address = cluster.address
            if cluster.saturn:
                saturn_cluster = attach_saturn_cluster(verbose=cluster.verbose)
                # A job's cluster outlives a closed client (shutdown_on_close is False for
                # jobs): close it as the run ends, whatever the outcome.
                stack.callback(close_saturn_cluster, saturn_cluster)
                address = saturn_cluster.scheduler_address
                security = saturn_cluster.security
                client = stack.enter_context(
                    Client(address, set_as_default=False, security=security)
                )
                try:
                    client.wait_for_workers(1, timeout=SATURN_WORKER_TIMEOUT)
                except (OSError, TimeoutError):
                    raise UnreachableError(
                        f"the job's Saturn Dask cluster ({address}) had no worker after "
                        f"{SATURN_WORKER_TIMEOUT:g} s: see its workers in Saturn Cloud."
                    ) from None
                dashboard = saturn_cluster.dashboard_link or client.dashboard_link
            elif address is None:
                # The worker forked from this process starts with Dask, pandas and pyarrow
                # already imported: about 0.7 s of a 2.8 s run-local, where spawning a fresh
                # interpreter imports them again. A user's own setting wins.
                if dask.config.get("distributed.worker.multiprocessing-method") == "spawn":
                    stack.enter_context(
                        dask.config.set({"distributed.worker.multiprocessing-method": "fork"})
                    )
                quiet_signals_in_forked_workers()
                local = LocalCluster(
                    n_workers=cluster.workers or 1,
                    threads_per_worker=cluster.threads_per_worker or default_threads(),
                    memory_limit=cluster.memory_limit or "auto",
                    # The scheduler's HTTP server (health, metrics) always starts: on a free
                    # port here, not on 8787 (taken by a second run: a warning). Bokeh's
                    # dashboard only when asked.
                    dashboard_address="127.0.0.1:0",
                    scheduler_kwargs={"dashboard": cluster.dashboard is not False},
                    host="127.0.0.1",
                    # Dask's warnings and errors while it shuts down (killing a busy worker, a
                    # heartbeat to a closed scheduler on Ctrl-C, with a traceback) are noise in
                    # cron mail; a failed task is reported by the flow's state, in one line.
                    silence_logs=logging.INFO if cluster.verbose else logging.CRITICAL,
                )
                stack.callback(local.close)
                stack.push(workers_stopper(local))  # runs before local.close
                address = local.scheduler_address
                # Without its dashboard, Dask still formats a link (to port 8787): none is given.
                dashboard = None if cluster.dashboard is False else local.dashboard_link
                client = stack.enter_context(Client(address, set_as_default=False))
                watch = MemoryWatch(client, local, cluster.memory_limit)
                stack.callback(watch.stop)
                stack.enter_context(interruptible_by(watch))
            else:
                check_scheduler(address, cluster.scheduler_timeout)
                try:
                    client = stack.enter_context(
                        Client(address, set_as_default=False, timeout=cluster.scheduler_timeout)
                    )
                    client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
                except (OSError, TimeoutError) as error:
                    raise UnreachableError(
                        f"the Dask scheduler at {address} did not give a worker within "
                        f"{WORKER_TIMEOUT:g} s ({error}): start one, e.g. dask worker {address}."
                    ) from None
                dashboard = client.dashboard_link
            stack.push(quiet_logs_on_interrupt)  # runs first: before the cluster closes
            if on_cluster:
                on_cluster(address, dashboard)
            warm_up = threading.Thread(target=_warm_up, args=(client,), daemon=True)
            warm_up.start()
            flow = build_flow()
            from prefect.executors import DaskExecutor

            prefect_logs_to_stderr()
            gc.freeze()  # Prefect's objects too, now imported
            warm_up.join()
            executor = DaskExecutor(
                address=address, client_kwargs={"security": security} if security else {}
            )
            state = flow.run(executor=executor)
    except KeyboardInterrupt:
        if watch is not None and watch.problem is not None:
            raise watch.problem from None
        raise
    return _flow_summary(flow, state, result_task)


def attach_saturn_cluster(*, verbose: bool = False) -> Any:
    """The Dask cluster Saturn Cloud attached to this job (or Jupyter server): dask-saturn's
    SaturnCluster() with no arguments, as its documentation says for a job. Its failures
    become one line each."""
    import requests

    if not verbose:
        # dask-saturn logs its steps, and a warning when its worker plugin cannot be registered
        # (distributed 2025 removed the call it uses; the plugin only sets up Saturn's own
        # logging): noise in the job's log, which --verbose keeps.
        logging.getLogger("dask-saturn").setLevel(logging.ERROR)

    try:
        from dask_saturn import SaturnCluster

        return SaturnCluster()
    except RuntimeError as error:  # dask-saturn's missing SATURN_BASE_URL / SATURN_TOKEN
        raise SettingsError(
            f"--saturn attaches to the Dask cluster of a Saturn Cloud job ({error}): run it "
            "in a Saturn job (ticketeval job deploy), where Saturn sets them."
        ) from None
    except requests.RequestException as error:
        raise UnreachableError(
            f"Saturn Cloud could not be reached for the job's Dask cluster: {type(error).__name__}."
        ) from None
    except ValueError as error:  # dask-saturn's refusals (Saturn's message, as it words them)
        raise RemoteError(
            f"Saturn Cloud did not give the job's Dask cluster: {str(error).splitlines()[0]}"
        ) from None


def close_saturn_cluster(cluster: Any) -> None:
    # The trial is recorded by then: a cluster Saturn already closed is no failure of it.
    with contextlib.suppress(Exception):
        cluster.close()


@contextlib.contextmanager
def _heap_frozen() -> Iterator[None]:
    """The objects alive now (mostly the imported libraries') are left out of the cycle
    collector's passes until the run ends: the passes over them cost this process, and a forked
    worker, about 0.3 s of a 2 s run-local, and the worker's copied the memory pages it shares
    with this process. Objects that stay alive to the end need no collecting."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
