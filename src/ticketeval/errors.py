"""The exceptions ticketeval raises, and the exit code each one maps to.

The core raises these with a sentence that says what is wrong and what to do; only the CLI
turns them into a printed line and an exit code. Kept import-free so `--help` stays fast.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes, documented in the README's table; tests assert these values."""

    OK = 0
    FAILED = 1  # a flow task failed, or an unexpected error
    USAGE = 2  # a bad option or setting (Typer/Click use 2 for usage errors too)
    DATA = 3  # the data cannot be read, is invalid, or is not there yet
    NETWORK = 4  # a download or a remote service could not be reached
    MODEL = 5  # the model failed to import, raised, or returned bad predictions
    REMOTE = 6  # Saturn Cloud or Prefect Cloud refused the request
    SPOOLED = 7  # the trial was scored, the history could not be reached: it waits in the spool
    NOT_KEPT = 8  # the trial was scored and printed, but neither the history nor the spool kept it
    MAE_ABOVE_LIMIT = 10  # --fail-if-mae-above: the trial scored worse than the limit
    MODEL_ALERT = 11  # backtest --fail-on-alert: a period's skill fell below its band
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
    TERMINATED = 143  # SIGTERM (128 + 15): how cron, systemd and Kubernetes stop a job


class TicketevalError(Exception):
    """Base of every error ticketeval reports as one line instead of a traceback."""

    exit_code: ExitCode = ExitCode.FAILED


class SettingsError(TicketevalError):
    """A setting (environment variable or .env entry) is missing or invalid."""

    exit_code = ExitCode.USAGE


class UsageError(TicketevalError):
    """An option value that cannot work, e.g. a batch larger than the data."""

    exit_code = ExitCode.USAGE


class DataError(TicketevalError):
    """The event log cannot be read, does not have the expected shape, or is missing."""

    exit_code = ExitCode.DATA


class DownloadError(TicketevalError):
    """The event log could not be downloaded."""

    exit_code = ExitCode.NETWORK


class ModelError(TicketevalError):
    """The model could not be imported, raised, or returned unusable predictions."""

    exit_code = ExitCode.MODEL


class FlowError(TicketevalError):
    """A task of the Prefect flow failed."""

    exit_code = ExitCode.FAILED


class RemoteError(TicketevalError):
    """Saturn Cloud or Prefect Cloud refused a request (e.g. a rejected token)."""

    exit_code = ExitCode.REMOTE


class UnreachableError(TicketevalError):
    """A server (a Dask scheduler, Saturn Cloud, Prefect Cloud) could not be reached, or did not
    answer as one within its time."""

    exit_code = ExitCode.NETWORK


class HistoryError(TicketevalError):
    """The history cannot be used: corrupt, not ticketeval's, newer, read-only, full or locked."""

    exit_code = ExitCode.DATA


class HistoryUnreachable(HistoryError):
    """The history's server could not be reached or refused the login."""

    exit_code = ExitCode.NETWORK


class HistoryUnavailable(TicketevalError):
    """The trial was computed but the history could not be reached: it is spooled."""

    exit_code = ExitCode.SPOOLED


class TrialNotKept(HistoryError):
    """The trial was computed, but neither the history nor the spool could keep it: it is
    printed (table or JSON) so that nothing computed is lost, and the exit code says so."""

    exit_code = ExitCode.NOT_KEPT


class SummaryError(TicketevalError):
    """A trial summary lacks what the history needs (a bug in its producer, not an outage)."""

    exit_code = ExitCode.FAILED


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A KeyboardInterrupt, so that whatever cleans up after Ctrl-C (closing the
    LocalCluster ticketeval started, removing temporary files) cleans up after it too."""
