"""Defaults that both the settings and the command line's help state, in one place: a module
with no imports, so `ticketeval --help` can show them without loading the settings."""

# How long a Dask scheduler given by --address has to answer as one (TICKETEVAL_SCHEDULER_TIMEOUT).
DEFAULT_SCHEDULER_TIMEOUT = 10.0
# How long it then has to have a worker.
WORKER_TIMEOUT = 60.0

# The Saturn job `ticketeval job deploy` creates, and what it runs on.
DEFAULT_JOB_NAME = "ticketeval-nightly"
DEFAULT_IMAGE = "saturncloud/saturn-python:2023.09.01"
DEFAULT_INSTANCE_SIZE = "large"
DEFAULT_SCHEDULER_SIZE = "medium"
DEFAULT_WORKER_SIZE = "large"
DEFAULT_HISTORY_SECRET = "ticketeval-history-url"
