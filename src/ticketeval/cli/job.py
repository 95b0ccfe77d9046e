"""`ticketeval job`: the nightly trial as a Saturn Cloud job (deploy, start, stop, status, logs,
delete). A Typer sub-app that `cli/app.py` adds to the app; the work is in `core.job_*`."""

import json
from typing import TYPE_CHECKING, Annotated

import typer

from ticketeval import core
from ticketeval.cli.options import BatchSizeOption, Group, JsonOption
from ticketeval.cli.render import Reporter
from ticketeval.cli.runtime import reported_errors, settings_for
from ticketeval.defaults import (
    DEFAULT_HISTORY_SECRET,
    DEFAULT_IMAGE,
    DEFAULT_INSTANCE_SIZE,
    DEFAULT_JOB_NAME,
    DEFAULT_SCHEDULER_SIZE,
    DEFAULT_WORKER_SIZE,
)

if TYPE_CHECKING:
    from ticketeval.pipeline.saturn_api import JobRun

app = typer.Typer(
    name="job",
    help="Run the trial on Saturn Cloud as a Job: a cron schedule, its own Dask cluster, the "
    "history as a secret. Works for every Saturn account (no Prefect Cloud).",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=Group,
)

NameOption = Annotated[
    str, typer.Option("--name", help="The Saturn job's name (lowercase letters, digits, '-').")
]


@app.command()
def deploy(
    *,
    workers: Annotated[int, typer.Option(min=1, help="Dask workers of the job's cluster.")] = 1,
    worker_size: Annotated[
        str, typer.Option(help="Saturn size of each Dask worker (see describe-sizes).")
    ] = DEFAULT_WORKER_SIZE,
    scheduler_size: Annotated[
        str, typer.Option(help="Saturn size of the Dask scheduler.")
    ] = DEFAULT_SCHEDULER_SIZE,
    instance_size: Annotated[
        str, typer.Option(help="Saturn size of the machine running the job's command.")
    ] = DEFAULT_INSTANCE_SIZE,
    schedule: Annotated[
        str | None,
        typer.Option(
            help="Cron schedule (UTC), e.g. '30 6 * * *'. [default: none, start it by hand]",
            show_default=False,
        ),
    ] = None,
    name: NameOption = DEFAULT_JOB_NAME,
    image: Annotated[str, typer.Option(help="The job's image.")] = DEFAULT_IMAGE,
    history_secret: Annotated[
        str,
        typer.Option(
            help="The Saturn secret holding the history's URL, attached to the job as "
            "TICKETEVAL_HISTORY_URL (deploy stores TICKETEVAL_HISTORY_URL in it when set here)."
        ),
    ] = DEFAULT_HISTORY_SECRET,
    batch_size: BatchSizeOption = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="The model(s) the job scores (repeat to compare). [default: heuristic]",
            show_default=False,
        ),
    ] = None,
    open_only: Annotated[
        bool, typer.Option("--open-only", help="Pass --open-only to the job's run-local.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the job's recipe (YAML); no network call.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Create or update the Saturn job (run-local --since-last on its own Dask cluster).

    Sets its schedule too; deploying twice changes nothing.

    Needs SATURN_BASE_URL and SATURN_TOKEN, and a PostgreSQL history: TICKETEVAL_HISTORY_URL
    here, or the secret in Saturn already.

    \b
    Example: ticketeval job deploy --workers 3 --worker-size xlarge --schedule "30 6 * * *"
    """
    reporter = Reporter()
    with reported_errors(reporter):
        from ticketeval.pipeline.saturn_jobs import JobOptions

        options = JobOptions(
            workers=workers,
            worker_size=worker_size,
            scheduler_size=scheduler_size,
            instance_size=instance_size,
            schedule=schedule,
            name=name,
            image=image,
            history_secret=history_secret,
            batch_size=batch_size,
            models=tuple(model or ()),
            open_only=open_only,
        )
        deployment = core.job_deploy(settings_for(None), options, dry_run=dry_run)
        if dry_run:
            if json_output:
                print(json.dumps(deployment.recipe, indent=2))
                return
            import yaml  # type: ignore[import-untyped]  # PyYAML, a dependency of Dask

            print(yaml.safe_dump(deployment.recipe, sort_keys=False), end="")
            reporter.info(
                "A dry run: nothing was sent, and the sizes were not checked against Saturn "
                "Cloud's list (see ticketeval describe-sizes)."
            )
            return
        details = deployment.to_dict()
        if json_output:
            print(json.dumps(details))
            return
        verb = (
            "Created"
            if details["created"]
            else ("Updated" if details["recipe_changed"] else "Unchanged:")
        )
        print(f"{verb} job {deployment.name} (id {deployment.job_id})")
        print(f"  url       {deployment.url}")
        print(f"  command   {deployment.recipe['spec']['command']}")
        cluster = deployment.recipe["spec"]["dask_cluster"]
        print(
            f"  cluster   {cluster['num_workers']} x {cluster['worker']['instance_type']} "
            f"workers, scheduler {cluster['scheduler']['instance_type']}"
        )
        print(f"  schedule  {details['schedule'] or 'none (ticketeval job start)'}")
        print(f"  history   secret {details['history_secret']} ({details['secret']})")


@app.command()
def start(*, name: NameOption = DEFAULT_JOB_NAME, json_output: JsonOption = False) -> None:
    """Run the job now (as its schedule would).

    \b
    Example: ticketeval job start, then ticketeval job logs --follow
    """
    reporter = Reporter()
    with reported_errors(reporter):
        started = core.job_start(settings_for(None), name)
        if json_output:
            print(json.dumps(started))
            return
        print(f"Started job {name} (id {started['id']}): {started['url']}")
        reporter.info(f"Follow it with: ticketeval job logs --follow --name {name}")


@app.command()
def stop(*, name: NameOption = DEFAULT_JOB_NAME, json_output: JsonOption = False) -> None:
    """Stop the job's running run (its schedule stays).

    \b
    Example: ticketeval job stop
    """
    reporter = Reporter()
    with reported_errors(reporter):
        stopped = core.job_stop(settings_for(None), name)
        if json_output:
            print(json.dumps(stopped))
            return
        print(f"Stopped job {name} (id {stopped['id']})")


@app.command()
def status(*, name: NameOption = DEFAULT_JOB_NAME, json_output: JsonOption = False) -> None:
    """The job, its schedule and its runs, newest first: start, end, exit code.

    \b
    Example: ticketeval job status
    """
    reporter = Reporter()
    with reported_errors(reporter):
        shown = core.job_status(settings_for(None), name)
        if json_output:
            print(json.dumps(shown))
            return
        print(f"Job {name} (id {shown['id']}): {shown['status'] or 'unknown'}")
        print(f"  url       {shown['url']}")
        print(f"  schedule  {shown['schedule'] or 'none'}")
        if not shown["runs"]:
            print("  no runs yet")
            return
        print(f"  {'run':<40} {'status':<10} {'start':<26} {'end':<26} exit")
        for run in shown["runs"]:
            print("  " + _run_line(run))


def _run_line(run: "JobRun") -> str:
    exit_code = run["exit_code"]
    return (
        f"{run['run']:<40} {run['status'] or '?':<10} {run['start'] or '-':<26} "
        f"{run['end'] or '-':<26} {'-' if exit_code is None else exit_code}"
    )


@app.command()
def logs(
    *,
    name: NameOption = DEFAULT_JOB_NAME,
    run: Annotated[
        str | None,
        typer.Option("--run", help="This run (see job status). [default: the last]"),
    ] = None,
    every_run: Annotated[
        bool, typer.Option("--all", help="Every run Saturn still has, oldest first.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep reading a running run until it ends.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """A run's log (the last run's by default).

    \b
    Example: ticketeval job logs --follow
    """
    reporter = Reporter()
    with reported_errors(reporter):
        collected: dict[str, str] = {}

        def show(run_name: str, text: str) -> None:
            if json_output:
                collected[run_name] = collected.get(run_name, "") + text
                return
            if run_name not in collected:
                collected[run_name] = ""
                reporter.info(f"== {name}: run {run_name} ==")
            print(text, end="" if text.endswith("\n") or not text else "\n", flush=True)

        chosen = core.job_logs(
            settings_for(None), name, run=run, every_run=every_run, follow=follow, on_text=show
        )
        if json_output:
            print(json.dumps([{**picked, "logs": collected.get(picked["run"], "")}
                              for picked in chosen]))  # fmt: skip


@app.command()
def delete(*, name: NameOption = DEFAULT_JOB_NAME, json_output: JsonOption = False) -> None:
    """Remove the job from Saturn Cloud (its secret and the history stay).

    \b
    Example: ticketeval job delete
    """
    reporter = Reporter()
    with reported_errors(reporter):
        deleted = core.job_delete(settings_for(None), name)
        if json_output:
            print(json.dumps(deleted))
            return
        print(f"Deleted job {name} (id {deleted['id']})")
