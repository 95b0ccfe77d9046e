"""The Saturn Cloud and Prefect Cloud commands: `describe-sizes` and `register`.

Plain functions with their options; `app.py` adds them to the app.
"""

import json
from typing import Any

from ticketeval import core
from ticketeval.cli.options import (
    AdaptMaxOption,
    AdaptMinOption,
    BatchSizeOption,
    DryRunOption,
    InstanceSizeOption,
    JsonOption,
    ProjectOption,
    SaturnWorkersOption,
    ScheduleHoursOption,
    SchedulerSizeOption,
    ShutdownOnCloseOption,
    SpotOption,
    VerboseOption,
    WorkerSizeOption,
)
from ticketeval.cli.render import Reporter, new_table, stdout
from ticketeval.cli.runtime import flow_settings, reported_errors, settings_for


def describe_sizes(*, json_output: JsonOption = False) -> None:
    """List Saturn Cloud's instance sizes (for --worker-size, --scheduler-size, --instance-size).

    Needs BASE_URL and SATURN_TOKEN.

    \b
    Example: ticketeval describe-sizes
    """
    reporter = Reporter()
    with reported_errors(reporter):
        sizes = core.describe_sizes(settings_for(None))
        if json_output:
            print(json.dumps(sizes))
            return
        render_sizes(sizes)


def register(
    *,
    workers: SaturnWorkersOption = 1,
    worker_size: WorkerSizeOption = None,
    scheduler_size: SchedulerSizeOption = None,
    spot: SpotOption = None,
    shutdown_on_close: ShutdownOnCloseOption = True,
    adapt_min: AdaptMinOption = None,
    adapt_max: AdaptMaxOption = None,
    instance_size: InstanceSizeOption = None,
    schedule_hours: ScheduleHoursOption = None,
    batch_size: BatchSizeOption = None,
    project: ProjectOption = None,
    dry_run: DryRunOption = False,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Register the flow with Prefect Cloud, to run on a Saturn Cloud Dask cluster.

    Needs BASE_URL, SATURN_TOKEN, PREFECT_USER_TOKEN and a project.

    \b
    Example: ticketeval register --workers 3 --worker-size xlarge --schedule-hours 24
    """
    reporter = Reporter()
    with reported_errors(reporter):
        from ticketeval.pipeline.saturn import SaturnClusterOptions

        cluster = SaturnClusterOptions(
            workers, worker_size, scheduler_size, spot, shutdown_on_close, adapt_min, adapt_max
        )
        settings = flow_settings(None, verbose=verbose)
        registration = core.register(
            settings,
            cluster=cluster,
            instance_size=instance_size,
            schedule_hours=schedule_hours,
            batch_size=batch_size,
            project=project,
            dry_run=dry_run,
        )
        for warning in registration.warnings:
            reporter.info(warning)
        details = registration.to_dict()
        if dry_run and (worker_size or scheduler_size or instance_size):
            reporter.info(
                "The sizes were not checked against Saturn Cloud's list (a dry run makes no "
                "network call): see ticketeval describe-sizes."
            )
        if json_output:
            print(json.dumps(details))
            return
        render_registration(details, dry_run=dry_run)


# --- What they print ---------------------------------------------------------------------------


def render_sizes(sizes: dict[str, str]) -> None:
    table = new_table("Saturn Cloud sizes")
    table.add_column("size", style="bold", overflow="fold")
    table.add_column("description", overflow="fold")
    for name, description in sizes.items():
        table.add_row(name, description)
    stdout.print(table)


def render_registration(details: dict[str, Any], *, dry_run: bool) -> None:
    title = "Would register (dry run)" if dry_run else "Registered"
    table = new_table(title, show_header=False)
    table.add_column(style="bold", no_wrap=True, overflow="fold")
    table.add_column(overflow="fold")
    for name, value in details.items():
        if name != "dry_run":
            table.add_row(name.replace("_", " "), plain_text(value))
    stdout.print(table)


def plain_text(value: object) -> str:
    """A registration detail as a reader wants it: lists and mappings without JSON brackets."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, dict):
        # Keyword arguments, shown as the call receives them.
        return ", ".join(f"{key}={item!r}" for key, item in value.items()) or "-"
    return str(value)
