"""Prefect 1 flows on Dask: a LocalCluster, an existing scheduler, or Saturn Cloud."""

import warnings

# Prefect 1 reads its configuration values through ast.literal_eval (its home directory, under
# HOME, too), and Dask each DASK_ variable: a path with a part like "-9or" printed "<unknown>:1:
# SyntaxWarning: invalid decimal literal" on stderr (in cron's mail). Those strings are settings,
# not code: only their compiler's warnings are left out (set before Prefect is first imported,
# and inherited by the workers forked from this process).
warnings.filterwarnings("ignore", category=SyntaxWarning, module="<unknown>")
