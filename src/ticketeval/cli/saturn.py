"""The Saturn Cloud and Prefect Cloud commands: `describe-sizes` and `register`.

Plain functions with their options; `app.py` adds them to the app.
"""

import json

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
from ticketeval.cli.render import Reporter, render_registration, render_sizes
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
