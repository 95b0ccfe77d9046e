"""Saturn Cloud Jobs: the nightly trial as a Saturn job (a command on a cron schedule, with its
own Dask cluster and secrets), for every Saturn account, without Prefect Cloud.

This module builds the job recipe (Saturn's `JobRecipe` schema, saturn-api's client.yaml, as
saturn-client 2026.2.1 sends it) and runs `ticketeval job`'s operations; the REST calls are
`saturn_api`'s. The history's URL reaches the job's pod only through a Saturn secret: never in
the recipe, a message or the output.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar
from urllib.parse import urlsplit

from ticketeval import __version__
from ticketeval.defaults import (
    DEFAULT_HISTORY_SECRET,
    DEFAULT_IMAGE,
    DEFAULT_INSTANCE_SIZE,
    DEFAULT_JOB_NAME,
    DEFAULT_SCHEDULER_SIZE,
    DEFAULT_WORKER_SIZE,
)
from ticketeval.errors import RemoteError, SettingsError, UsageError
from ticketeval.pipeline.saturn_api import (
    RECIPE_SCHEMA_VERSION,
    Conflict,
    JobRecipe,
    JobRun,
    JobSpec,
    SaturnAPI,
    check_sizes,
)

if TYPE_CHECKING:
    from ticketeval.settings import Settings

HISTORY_VARIABLE = "TICKETEVAL_HISTORY_URL"
DATA_URL_VARIABLE = "TICKETEVAL_DATA_URL"
FOLLOW_INTERVAL = 1.0  # seconds between two reads of a running pod's log (--follow)
_LIVE_STATUSES = {"pending", "running"}
# Saturn's resource names: lowercase letters, digits and hyphens (a Kubernetes name part).
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?")
_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*,/?#LW-]+")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_T = TypeVar("_T")


@dataclass(frozen=True)
class JobOptions:
    """What `ticketeval job deploy` builds: the job, its cluster, its schedule, its command."""

    workers: int = 1
    worker_size: str = DEFAULT_WORKER_SIZE
    scheduler_size: str = DEFAULT_SCHEDULER_SIZE
    instance_size: str = DEFAULT_INSTANCE_SIZE
    schedule: str | None = None
    name: str = DEFAULT_JOB_NAME
    image: str = DEFAULT_IMAGE
    history_secret: str = DEFAULT_HISTORY_SECRET
    batch_size: str | None = None
    models: tuple[str, ...] = ()
    open_only: bool = False

    def __post_init__(self) -> None:
        check_job_name(self.name)
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, not {self.workers}.")
        for option, size in (
            ("--worker-size", self.worker_size),
            ("--scheduler-size", self.scheduler_size),
            ("--instance-size", self.instance_size),
        ):
            if not size.strip():
                raise UsageError(f"{option} must name a size (see ticketeval describe-sizes).")
        if not self.image.strip() or any(c.isspace() for c in self.image):
            raise UsageError(f"--image {self.image!r} is not an image name like {DEFAULT_IMAGE}.")
        if not _SECRET_NAME.fullmatch(self.history_secret):
            raise UsageError(
                f"--history-secret {self.history_secret!r} is not a secret name: letters, digits, "
                "'-', '_' and '.', at most 63."
            )
        if self.schedule is not None:
            check_cron(self.schedule)
        if self.batch_size is not None:
            from ticketeval.data.batches import parse_batch_size

            events = parse_batch_size(self.batch_size)
            if events is not None and events < 1:
                raise UsageError(f"--batch-size must be at least 1 (or 'all'), not {events}.")


def check_job_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"--name {name!r} is not a Saturn job name: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 50."
        )


def check_cron(schedule: str) -> None:
    """Refuse what is not a cron line (5 fields) or one of the '@' forms Saturn takes."""
    text = schedule.strip()
    if text in _CRON_MACROS or re.fullmatch(r"@every \d+[smhd](\d+[smhd])*", text):
        return
    fields = text.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(part) for part in fields):
        raise UsageError(
            f"--schedule {schedule!r} is not a cron schedule: give five fields, minute hour "
            "day-of-month month day-of-week (e.g. '30 6 * * *', 06:30 UTC daily), or @daily."
        )


def job_command(options: JobOptions) -> str:
    """The command the job's pod runs: run-local on the job's own Dask cluster, scoring what
    closed since the last trial."""
    words = ["ticketeval", "run-local", "--saturn", "--since-last"]
    if options.batch_size is not None:
        words += ["--batch-size", options.batch_size]
    for model in options.models:
        words += ["--model", model]
    if options.open_only:
        words.append("--open-only")
    return shlex.join(words)


def build_recipe(settings: Settings, options: JobOptions) -> JobRecipe:
    """The job recipe (Saturn's JobRecipe). It names the history's secret, never its value."""
    environment: dict[str, str] = {}
    if settings.data_url is not None:
        if urlsplit(settings.data_url).password is not None:
            raise UsageError(
                f"{DATA_URL_VARIABLE} holds a password: a job's environment is not secret; "
                "serve the data without one, or keep the whole URL in a Saturn secret."
            )
        environment[DATA_URL_VARIABLE] = settings.data_url
    spec: JobSpec = {
        "name": options.name,
        "description": "ticketeval: the time-to-close model's trial on the tickets closed "
        "since the last one",
        "image": options.image,
        "instance_type": options.instance_size,
        "command": job_command(options),
        "environment_variables": environment,
        "secrets": [
            {
                "name": options.history_secret,
                "attachment_type": "environment_variable",
                "location": HISTORY_VARIABLE,
            }
        ],
        # The image is Saturn's: the job installs the ticketeval that deployed it.
        "start_script": f"pip install --quiet 'ticketeval=={__version__}'",
        "schedule": options.schedule,
        # A night's run still going when the next one is due: skip the next one, never two
        # trials of the same tickets at once.
        "concurrency_policy": "Forbid",
        "dask_cluster": {
            "num_workers": options.workers,
            "scheduler": {"instance_type": options.scheduler_size},
            "worker": {
                "instance_type": options.worker_size,
                "num_processes": 1,
                "num_threads": 2,
            },
        },
    }
    return {"schema_version": RECIPE_SCHEMA_VERSION, "type": "job", "spec": spec}


def history_to_store(settings: Settings) -> str | None:
    """The history URL deploy stores in the job's secret: a PostgreSQL server's. None when no
    history is set here (the secret must then exist in Saturn already). A SQLite history is
    refused: in the job it would be a file on the pod's disk, gone with the pod."""
    from ticketeval.history.urls import is_server_url, parse_history_url, redact_url

    if settings.history_url is None and settings.history_path is None:
        return None
    url = settings.history
    if not is_server_url(url):
        raise UsageError(
            f"the history {redact_url(url)} is a SQLite file: a Saturn job would record its "
            "trials on its pod's disk, lost with the pod; set TICKETEVAL_HISTORY_URL="
            "postgresql://user:password@host:5432/db (deploy stores it as a Saturn secret)."
        )
    parse_history_url(url)
    return url


# --- The commands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """What `job deploy` did (or, with dry_run, would do). Holds no secret."""

    name: str
    recipe: JobRecipe
    dry_run: bool
    job_id: str | None = None
    url: str | None = None
    recipe_changed: bool | None = None  # None: the job was created
    schedule_changed: bool | None = None
    secret: Literal["created", "updated", "existing"] | None = None
    api_version: str | None = None

    @property
    def changed(self) -> bool:
        # A secret's update cannot be told from a no-op: Saturn never shows its value.
        return self.recipe_changed is not False or bool(self.schedule_changed)

    def to_dict(self) -> dict[str, Any]:
        """What `job deploy --json` prints."""
        if self.dry_run:
            return {"dry_run": True, "recipe": self.recipe}
        return {
            "dry_run": False,
            "name": self.name,
            "id": self.job_id,
            "url": self.url,
            "created": self.recipe_changed is None,
            "changed": self.changed,
            "recipe_changed": self.recipe_changed is not False,
            "schedule": self.recipe["spec"]["schedule"],
            "schedule_changed": bool(self.schedule_changed),
            "history_secret": self.recipe["spec"]["secrets"][0]["name"],
            "secret": self.secret,
            "api_version": self.api_version,
            "recipe": self.recipe,
        }


# What the other job commands return (and print with --json, as they are).


class JobStarted(TypedDict):
    name: str
    id: str
    url: str


class JobStopped(TypedDict):
    name: str
    id: str


class JobDeleted(TypedDict):
    name: str
    id: str
    deleted: bool


class JobStatus(TypedDict):
    name: str
    id: str
    url: str
    status: str | None
    schedule: str | None  # None when the schedule is off
    runs: list[JobRun]  # newest first


def job_url(base_url: str, job_id: str) -> str:
    """The job's page in Saturn's web interface (as Saturn's documentation shows it)."""
    return f"{base_url}/dash/resources/job/{job_id}"


def deploy(settings: Settings, options: JobOptions, *, dry_run: bool) -> Deployment:
    """Build the job's recipe and, unless `dry_run`, apply it (create or update), store the
    history's secret, and set the schedule. Deploying the same twice changes nothing."""
    recipe = build_recipe(settings, options)
    history = history_to_store(settings)
    if dry_run:
        return Deployment(name=options.name, recipe=recipe, dry_run=True)
    with SaturnAPI(settings) as api:
        version = api.check_api()
        check_sizes(
            api.sizes(),
            worker_size=options.worker_size,
            scheduler_size=options.scheduler_size,
            instance_size=options.instance_size,
        )
        secret: Literal["created", "updated", "existing"]
        if history is not None:
            secret = api.store_secret(options.history_secret, history)
        elif api.has_secret(options.history_secret):
            secret = "existing"
        else:
            raise SettingsError(
                f"Saturn Cloud has no secret {options.history_secret!r} for the job's history, "
                "and TICKETEVAL_HISTORY_URL is not set here: set it to postgresql://user:"
                "password@host:5432/db and deploy again (it is stored as that secret)."
            )
        existing = api.job_recipe(options.name)
        recipe_changed: bool | None
        if existing is None:
            recipe_changed = None
        else:
            recipe_changed = not _covers(existing.get("spec", {}), recipe["spec"])
        if recipe_changed is False and existing is not None:
            job_id = str(existing["state"]["id"])
        else:
            job_id = api.apply(recipe)
        schedule_changed = _set_schedule(api, job_id, options.schedule)
    return Deployment(
        name=options.name,
        recipe=recipe,
        dry_run=False,
        job_id=job_id,
        url=job_url(api.base_url, job_id),
        recipe_changed=recipe_changed,
        schedule_changed=schedule_changed,
        secret=secret,
        api_version=version,
    )


def _set_schedule(api: SaturnAPI, job_id: str, cron: str | None) -> bool:
    """Turn the job's schedule to `cron` (or off); False when it already was."""
    job = api.job(job_id)
    if cron is None:
        if not job["scheduled"]:
            return False
        api.unschedule(job_id)
        return True
    if job["scheduled"] and job["schedule"] == cron:
        return False
    api.schedule(job_id, cron)
    return True


def _covers(theirs: Any, ours: Any) -> bool:
    """Whether Saturn's copy already says everything ours says (it adds its own defaults)."""
    if isinstance(ours, dict):
        return isinstance(theirs, dict) and all(
            _covers(theirs.get(key), value) for key, value in ours.items()
        )
    if isinstance(ours, list):
        return (
            isinstance(theirs, list)
            and len(theirs) == len(ours)
            and all(_covers(t, o) for t, o in zip(theirs, ours, strict=True))
        )
    return bool(theirs == ours)


def _with_api(settings: Settings, action: Callable[[SaturnAPI], _T]) -> _T:
    with SaturnAPI(settings) as api:
        api.check_api()
        return action(api)


def start(settings: Settings, name: str) -> JobStarted:
    def act(api: SaturnAPI) -> JobStarted:
        job_id = api.job_id(name)
        api.start(job_id)
        return JobStarted(name=name, id=job_id, url=job_url(api.base_url, job_id))

    return _with_api(settings, act)


def stop(settings: Settings, name: str) -> JobStopped:
    def act(api: SaturnAPI) -> JobStopped:
        job_id = api.job_id(name)
        api.stop(job_id)
        return JobStopped(name=name, id=job_id)

    return _with_api(settings, act)


def delete(settings: Settings, name: str) -> JobDeleted:
    def act(api: SaturnAPI) -> JobDeleted:
        job_id = api.job_id(name)
        try:
            api.delete(job_id)
        except Conflict:
            raise RemoteError(
                f"Saturn Cloud will not delete the job {name!r} while it runs (HTTP 409): "
                "stop it first (ticketeval job stop)."
            ) from None
        return JobDeleted(name=name, id=job_id, deleted=True)

    return _with_api(settings, act)


def status(settings: Settings, name: str) -> JobStatus:
    def act(api: SaturnAPI) -> JobStatus:
        job_id = api.job_id(name)
        job = api.job(job_id)
        return JobStatus(
            name=name,
            id=job_id,
            url=job_url(api.base_url, job_id),
            status=job["status"],
            schedule=job["schedule"] if job["scheduled"] else None,
            runs=api.runs(job_id),
        )

    return _with_api(settings, act)


def logs(
    settings: Settings,
    name: str,
    *,
    run: str | None = None,
    every_run: bool = False,
    follow: bool = False,
    on_text: Callable[[str, str], None],
) -> list[JobRun]:
    """Pass each chosen run's log to `on_text(run, text)`: the last run, the one named, or
    every run (oldest first). With `follow`, a run still going is read until it ends. The
    chosen runs, in that order."""

    def act(api: SaturnAPI) -> list[JobRun]:
        job_id = api.job_id(name)
        runs = api.runs(job_id)
        if run is not None:
            chosen = [r for r in runs if r["run"] == run]
            if not chosen:
                known = ", ".join(r["run"] for r in runs) or "none yet"
                raise UsageError(f"the job {name!r} has no run {run!r}; its runs: {known}.")
        elif every_run:
            chosen = runs[::-1]
        else:
            chosen = runs[:1]
        if not chosen:
            raise UsageError(f"the job {name!r} has not run yet: ticketeval job start.")
        for picked in chosen:
            if follow:
                _follow(api, job_id, picked, on_text)
            else:
                on_text(picked["run"], api.logs(job_id, picked["run"]))
        return chosen

    return _with_api(settings, act)


def _follow(api: SaturnAPI, job_id: str, run: JobRun, on_text: Callable[[str, str], None]) -> None:
    """Print the run's log as it grows, until the run has ended (then its last lines)."""
    shown: list[str] = []
    while True:
        current = next((r for r in api.runs(job_id) if r["run"] == run["run"]), run)
        window = api.logs(job_id, current["run"]).splitlines(keepends=True)
        fresh = new_lines(shown, window)
        if fresh:
            on_text(current["run"], "".join(fresh))
            shown = (shown + fresh)[-len(window) :]
        if current["status"] not in _LIVE_STATUSES:
            return
        time.sleep(FOLLOW_INTERVAL)


def new_lines(shown: list[str], window: list[str]) -> list[str]:
    """The lines of `window` (a live log's last lines) past those already `shown`: the window
    slides once the log is longer than it, so find where the shown lines end inside it."""
    for overlap in range(min(len(shown), len(window)), 0, -1):
        if window[:overlap] == shown[-overlap:]:
            return window[overlap:]
    return window
