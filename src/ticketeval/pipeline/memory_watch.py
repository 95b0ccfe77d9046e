"""The watch that ends a run whose Dask worker stays paused for memory, or keeps being
restarted: Dask itself would wait, silently, forever."""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from ticketeval.errors import FlowError, TicketevalError, UsageError

# How long a worker may stay paused for memory before the run is ended.
PAUSE_GRACE = 3.0


def _worker_memory(dask_scheduler: Any) -> list[tuple[str, int, int | None]]:
    """On the scheduler: each worker's status, process memory and memory limit."""
    return [
        (worker.status.name, worker.memory.process, worker.memory_limit)
        for worker in dask_scheduler.workers.values()
    ]


class MemoryWatch:
    """Ends the run when a worker of the LocalCluster started here stays paused for memory, or
    keeps being restarted (Dask restarts a worker past 95% of its limit, or one a task crashed):
    Dask would wait, silently, forever. It watches from a thread and interrupts the main thread
    (as Ctrl-C would, so the cluster is closed); `problem` says why."""

    def __init__(self, client: Any, local: Any, memory_limit: str | None) -> None:
        self.client, self.local, self.memory_limit = client, local, memory_limit
        self.restarts = 0
        self._pids = self._worker_pids()
        self.problem: TicketevalError | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _watch(self) -> None:
        interval, paused_for = 0.25, 0.0
        while not self._stopped.wait(interval):
            try:
                workers = self.client.run_on_scheduler(_worker_memory)
            except Exception:  # the cluster is closing
                return
            paused = [worker for worker in workers if worker[0] == "paused"]
            paused_for = paused_for + interval if paused else 0.0
            if paused_for >= PAUSE_GRACE:
                self.problem = self._paused(*paused[0][1:])
            pids = self._worker_pids()
            self.restarts += sum(
                1 for name, pid in pids.items() if pid and self._pids.get(name) not in (None, pid)
            )
            self._pids.update({name: pid for name, pid in pids.items() if pid})
            if self.restarts >= 2:
                self.problem = self._restarted()
            if self.problem is not None and not self._stopped.is_set():
                interrupt_main()
                return

    def _worker_pids(self) -> dict[str, int | None]:
        """The process id of each worker, from its nanny (in this process)."""
        return {
            str(name): getattr(getattr(nanny, "process", None), "pid", None)
            for name, nanny in list(self.local.workers.items())
        }

    def _restarted(self) -> TicketevalError:
        if self.memory_limit is not None:
            return UsageError(
                f"the Dask worker was restarted {self.restarts} times: Dask restarts a worker "
                f"past 95% of --memory-limit {self.memory_limit}, or one a task crashed; give "
                "it more (e.g. --memory-limit 2GiB), or check the model."
            )
        return FlowError(
            f"the Dask worker was restarted {self.restarts} times: Dask restarts a worker past "
            "95% of its memory limit, or one a task crashed; give a larger --memory-limit, a "
            "smaller --batch-size, or check the model."
        )

    def _paused(self, used: int, limit: int | None) -> TicketevalError:
        in_use = f"{used / 2**20:,.0f} MiB in use"
        if self.memory_limit is not None:
            return UsageError(
                f"the Dask worker paused: it reached 80% of --memory-limit {self.memory_limit} "
                f"({in_use}) and the trial cannot go on; give it more (e.g. --memory-limit "
                "2GiB) or leave --memory-limit out."
            )
        of = f" of {limit / 2**20:,.0f} MiB" if limit else ""
        return FlowError(
            f"the Dask worker paused: it reached 80% of its memory limit{of} ({in_use}); free "
            "memory on this machine, give a larger --memory-limit, or a smaller --batch-size."
        )


@contextlib.contextmanager
def interruptible_by(watch: MemoryWatch) -> Iterator[None]:
    """Lets the watch interrupt a run started with SIGINT ignored (a job a shell started in the
    background): without a handler its interrupt is lost and the run waits forever. A SIGINT
    from anyone else stays ignored."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if not ignored or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: object) -> None:
        if watch.problem is not None:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupt_main() -> None:
    """Raise KeyboardInterrupt in the main thread, as Ctrl-C would, and at once."""
    if callable(signal.getsignal(signal.SIGINT)):
        # A real signal: the main thread waits on Dask's futures in a lock that only a signal
        # wakes; `interrupt_main` alone is seen when that wait times out, up to 10 s later.
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
    else:
        _thread.interrupt_main()
