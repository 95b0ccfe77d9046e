"""Saturn Cloud Jobs: the nightly trial as a Saturn job (a command on a cron schedule, with its
own Dask cluster and secrets), for every Saturn account, without Prefect Cloud.

The job recipe follows Saturn's `JobRecipe` schema (saturn-api's client.yaml, as saturn-client
2026.2.1 sends it); the REST calls are the ones saturn-client makes (`GET /api/status`,
`PUT /api/recipes`, `/api/jobs/{id}/...`), over one requests Session: `Authorization: token`,
the settings' timeout, retries for transient failures only. The history's URL reaches the job's
pod only through a Saturn secret: never in the recipe, a message or the output.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ticketeval import __version__
from ticketeval.errors import RemoteError, SettingsError, UnreachableError, UsageError

if TYPE_CHECKING:
    import requests

    from ticketeval.settings import Settings

# The recipe schema ticketeval writes, and so the oldest Saturn API that reads it.
RECIPE_SCHEMA_VERSION = "2025.10.01"
# From this API version Saturn lists a job's pods (with exit codes) under /api/active/pods.
ACTIVE_PODS_VERSION = "2026.02.01"
DEFAULT_JOB_NAME = "ticketeval-nightly"
DEFAULT_IMAGE = "saturncloud/saturn-python:2023.09.01"
DEFAULT_INSTANCE_SIZE = "large"
DEFAULT_SCHEDULER_SIZE = "medium"
DEFAULT_WORKER_SIZE = "large"
DEFAULT_HISTORY_SECRET = "ticketeval-history-url"
HISTORY_VARIABLE = "TICKETEVAL_HISTORY_URL"
DATA_URL_VARIABLE = "TICKETEVAL_DATA_URL"
# Transient answers worth another try; anything else is the same on every try.
TRANSIENT_STATUSES = (429, 502, 503, 504)
RETRIES = 3
FOLLOW_INTERVAL = 1.0  # seconds between two reads of a running pod's log (--follow)
_LIVE_STATUSES = {"pending", "running"}
# Saturn's resource names: lowercase letters, digits and hyphens (a Kubernetes name part).
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?")
_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*,/?#LW-]+")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


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


def build_recipe(settings: Settings, options: JobOptions) -> dict[str, Any]:
    """The job recipe (Saturn's JobRecipe). It names the history's secret, never its value."""
    environment = {}
    if settings.data_url is not None:
        if urlsplit(settings.data_url).password is not None:
            raise UsageError(
                f"{DATA_URL_VARIABLE} holds a password: a job's environment is not secret; "
                "serve the data without one, or keep the whole URL in a Saturn secret."
            )
        environment[DATA_URL_VARIABLE] = settings.data_url
    spec: dict[str, Any] = {
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


# --- The REST client ---------------------------------------------------------------------------


class NotFound(RemoteError):
    """Saturn answered 404."""


class SaturnJobsClient:
    """The Saturn API calls the job commands make, each failure one line (no token in it)."""

    def __init__(self, settings: Settings) -> None:
        environment = settings.saturn_environment()  # SATURN_BASE_URL and SATURN_TOKEN, checked
        self.base_url = environment["SATURN_BASE_URL"]
        self._token = environment["SATURN_TOKEN"]
        self.timeout = settings.timeout
        self.session = _session(self._token, settings.retry_backoff)
        self.version = ""

    def close(self) -> None:
        self.session.close()

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        import requests

        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(
                method, url, json=json, params=params, timeout=self.timeout
            )
        except requests.exceptions.RetryError:
            raise UnreachableError(
                f"Saturn Cloud at {self.base_url} kept answering a temporary error for "
                f"{method} {path} ({RETRIES + 1} tries): try again later."
            ) from None
        except requests.Timeout:
            raise UnreachableError(
                f"Saturn Cloud at {self.base_url} did not answer within {self.timeout:g} s "
                "(TICKETEVAL_TIMEOUT): check SATURN_BASE_URL and the network."
            ) from None
        except requests.ConnectionError:
            raise UnreachableError(
                f"Saturn Cloud at {self.base_url} is unreachable: check SATURN_BASE_URL and "
                "the network."
            ) from None
        if not response.ok:
            raise self._refusal(method, path, response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RemoteError(
                f"Saturn Cloud answered {method} {path} with something that is not JSON: is "
                f"{self.base_url} a Saturn Cloud installation?"
            ) from None

    def _refusal(self, method: str, path: str, response: requests.Response) -> RemoteError:
        status = response.status_code
        message = self._server_message(response)
        said = f": {message}" if message else ""
        if status in (401, 403):
            return RemoteError(
                f"Saturn Cloud refused SATURN_TOKEN (HTTP {status} for {method} {path}){said}; "
                "check the token (Saturn: Settings, API token) and its access."
            )
        if status == 404:
            return NotFound(f"Saturn Cloud has no {path} (HTTP 404){said}.")
        if status == 409:
            return RemoteError(
                f"Saturn Cloud refused {method} {path}: it conflicts with the job's current "
                f"state (HTTP 409){said}."
            )
        return RemoteError(f"Saturn Cloud answered HTTP {status} for {method} {path}{said}.")

    def _server_message(self, response: requests.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return ""
        if not isinstance(body, dict):
            return ""
        text = body.get("message") or body.get("detail") or ""
        line = " ".join(str(text).split())[:200]
        # Whatever the server echoes, the token never reaches a message.
        return line.replace(self._token, "***") if self._token else line

    # -- the calls ---------------------------------------------------------------------------------

    def check_api(self) -> str:
        """Saturn's API version, refused when older than the recipe schema ticketeval writes."""
        status = self.request("GET", "/api/status")
        version = str((status or {}).get("version", "")) if isinstance(status, dict) else ""
        if not re.match(r"\d{4}\.\d{2}\.\d{2}", version):
            raise RemoteError(
                f"Saturn Cloud at {self.base_url} did not say its API version (GET /api/status): "
                "is it a Saturn Cloud installation?"
            )
        if version[:10] < RECIPE_SCHEMA_VERSION:
            raise RemoteError(
                f"Saturn Cloud at {self.base_url} runs API {version}, older than "
                f"{RECIPE_SCHEMA_VERSION}, the job recipe schema ticketeval writes: ask its "
                "administrator to upgrade, or use `ticketeval register` (Prefect Cloud 1)."
            )
        self.version = version
        return version

    def sizes(self) -> list[str]:
        """The installation's instance sizes, by name (as `sc options` lists them)."""
        options = self.request("GET", "/api/info/servers")
        sizes = options.get("sizes") if isinstance(options, dict) else None
        if not isinstance(sizes, dict):
            raise RemoteError("Saturn Cloud's /api/info/servers lists no sizes.")
        return [str(name) for name in sizes]

    def job_recipe(self, name: str) -> dict[str, Any] | None:
        """The job's recipe as Saturn has it (with `state.id`), or None when there is none."""
        try:
            recipe = self.request("GET", f"/api/recipes/job/{quote(name, safe='')}")
        except NotFound:
            return None
        return recipe if isinstance(recipe, dict) else None

    def job_id(self, name: str) -> str:
        recipe = self.job_recipe(name)
        if recipe is None:
            raise NotFound(
                f"Saturn Cloud has no job named {name!r}: deploy it first (ticketeval job "
                "deploy), or give its --name."
            )
        return str(recipe["state"]["id"])

    def store_secret(self, name: str, value: str) -> str:
        """Create the secret, or set its value: 'created' or 'updated' (Saturn never shows a
        secret's value, so an update cannot tell whether it changed)."""
        existing = self._secret(name)
        if existing is None:
            self.request("POST", "/api/secrets", json={"name": name, "value": value})
            return "created"
        self.request("PATCH", f"/api/secrets/{existing}", json={"value": value})
        return "updated"

    def has_secret(self, name: str) -> bool:
        return self._secret(name) is not None

    def _secret(self, name: str) -> str | None:
        listing = self.request("GET", "/api/secrets", params={"name": name})
        for secret in (listing or {}).get("secrets", []):
            if secret.get("name") == name:
                return str(secret["id"])
        return None

    def apply(self, recipe: dict[str, Any]) -> dict[str, Any]:
        applied = self.request("PUT", "/api/recipes", json=recipe)
        if not isinstance(applied, dict) or "id" not in applied.get("state", {}):
            raise RemoteError("Saturn Cloud applied the recipe but returned no job id.")
        return applied

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/jobs/{job_id}") or {})

    def schedule(self, job_id: str, cron: str) -> None:
        # As saturn-client's `sc schedule`: set the cron, then turn the schedule on.
        self.request(
            "PATCH", f"/api/jobs/{job_id}", json={"cron_schedule_options": {"schedule": cron}}
        )
        self.request("POST", f"/api/jobs/{job_id}/schedule")

    def unschedule(self, job_id: str) -> None:
        self.request("POST", f"/api/jobs/{job_id}/unschedule")

    def start(self, job_id: str) -> None:
        self.request("POST", f"/api/jobs/{job_id}/start")

    def stop(self, job_id: str) -> None:
        self.request("POST", f"/api/jobs/{job_id}/stop")

    def delete(self, job_id: str) -> None:
        self.request("DELETE", f"/api/jobs/{job_id}")

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        """The job's runs (its pods), newest first: start, end, status, exit code."""
        history = self.request("GET", f"/api/jobs/{job_id}/history") or {}
        runs = {
            str(pod["pod_name"]): {
                "run": str(pod["pod_name"]),
                "status": pod.get("status"),
                "start": pod.get("start_time"),
                "end": pod.get("end_time") or None,
                "exit_code": None,
            }
            for pod in history.get("pods", [])
        }
        if self.version[:10] >= ACTIVE_PODS_VERSION:
            for pod in self._live_pods(job_id):
                container = _main_container(pod)
                run = runs.setdefault(str(pod["name"]), {"run": str(pod["name"])})
                run.update(
                    status=pod.get("status"),
                    start=pod.get("started_at") or run.get("start"),
                    end=pod.get("completed_at") or run.get("end"),
                    exit_code=container.get("exit_code") if container else None,
                )
        return sorted(runs.values(), key=lambda run: (run.get("start") or "", run["run"]))[::-1]

    def _live_pods(self, job_id: str) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"workload_type": "job", "workload_id": job_id}
        while True:
            page = self.request("GET", "/api/active/pods", params=params) or {}
            yield from page.get("pod_summaries", [])
            if not page.get("next_key"):
                return
            params["next_key"] = page["next_key"]

    def logs(self, job_id: str, run: dict[str, Any]) -> str:
        """A run's log: the live pod's while Saturn still has it, else its historical log."""
        if self.version[:10] >= ACTIVE_PODS_VERSION:
            try:
                live = self.request(
                    "GET", f"/api/active/pods/{quote(run['run'], safe='')}/logs",
                    params={"page_size": 1000},
                )  # fmt: skip
                return str((live or {}).get("logs", ""))
            except NotFound:
                pass
        history = self.request(
            "GET", f"/api/jobs/{job_id}/logs", params={"pod_name": run["run"], "page_size": 1000}
        )
        lines = (history or {}).get("logs", [])
        if isinstance(lines, str):
            return lines
        return "".join(f"{line['content'].rstrip(chr(10))}\n" for line in lines)


def _main_container(pod: dict[str, Any]) -> dict[str, Any] | None:
    containers = pod.get("container_summaries") or []
    for container in containers:
        if container.get("name") == "main":
            return dict(container)
    return dict(containers[0]) if containers else None


def _session(token: str, backoff: float) -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=RETRIES,
        connect=RETRIES,
        read=RETRIES,
        status=RETRIES,
        # Only what is safe to send twice: starting a job twice would run two trials.
        allowed_methods=frozenset({"GET", "PUT", "DELETE", "PATCH", "HEAD"}),
        status_forcelist=TRANSIENT_STATUSES,
        backoff_factor=backoff,
        raise_on_status=True,
        respect_retry_after_header=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(
        {"Authorization": f"token {token}", "User-Agent": f"ticketeval/{__version__}"}
    )
    return session


# --- The commands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """What `job deploy` did (or, with dry_run, would do). Holds no secret."""

    name: str
    recipe: dict[str, Any]
    dry_run: bool
    job_id: str | None = None
    url: str | None = None
    recipe_changed: bool | None = None  # None: the job was created
    schedule_changed: bool | None = None
    secret: str | None = None  # 'created', 'updated' or 'existing'
    api_version: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        # A secret's update cannot be told from a no-op: Saturn never shows its value.
        return self.recipe_changed is not False or bool(self.schedule_changed)

    def to_dict(self) -> dict[str, Any]:
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
    client = SaturnJobsClient(settings)
    try:
        version = client.check_api()
        from ticketeval.pipeline.saturn import check_sizes

        sizes = client.sizes()
        check_sizes(
            dict.fromkeys(sizes, ""),
            worker_size=options.worker_size,
            scheduler_size=options.scheduler_size,
            instance_size=options.instance_size,
        )
        if history is not None:
            secret = client.store_secret(options.history_secret, history)
        elif client.has_secret(options.history_secret):
            secret = "existing"
        else:
            raise SettingsError(
                f"Saturn Cloud has no secret {options.history_secret!r} for the job's history, "
                "and TICKETEVAL_HISTORY_URL is not set here: set it to postgresql://user:"
                "password@host:5432/db and deploy again (it is stored as that secret)."
            )
        existing = client.job_recipe(options.name)
        recipe_changed: bool | None
        if existing is None:
            recipe_changed = None
        else:
            recipe_changed = not _covers(existing.get("spec", {}), recipe["spec"])
        if recipe_changed is False and existing is not None:
            job_id = str(existing["state"]["id"])
        else:
            job_id = str(client.apply(recipe)["state"]["id"])
        schedule_changed = _set_schedule(client, job_id, options.schedule)
    finally:
        client.close()
    return Deployment(
        name=options.name,
        recipe=recipe,
        dry_run=False,
        job_id=job_id,
        url=job_url(client.base_url, job_id),
        recipe_changed=recipe_changed,
        schedule_changed=schedule_changed,
        secret=secret,
        api_version=version,
    )


def _set_schedule(client: SaturnJobsClient, job_id: str, cron: str | None) -> bool:
    """Turn the job's schedule to `cron` (or off); False when it already was."""
    job = client.job(job_id)
    current = (job.get("cron_schedule_options") or {}).get("schedule")
    scheduled = bool(job.get("scheduled"))
    if cron is None:
        if not scheduled:
            return False
        client.unschedule(job_id)
        return True
    if scheduled and current == cron:
        return False
    client.schedule(job_id, cron)
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


def _with_client(settings: Settings, action: Callable[[SaturnJobsClient], Any]) -> Any:
    client = SaturnJobsClient(settings)
    try:
        client.check_api()
        return action(client)
    finally:
        client.close()


def start(settings: Settings, name: str) -> dict[str, Any]:
    def act(client: SaturnJobsClient) -> dict[str, Any]:
        job_id = client.job_id(name)
        client.start(job_id)
        return {"name": name, "id": job_id, "url": job_url(client.base_url, job_id)}

    return dict(_with_client(settings, act))


def stop(settings: Settings, name: str) -> dict[str, Any]:
    def act(client: SaturnJobsClient) -> dict[str, Any]:
        job_id = client.job_id(name)
        client.stop(job_id)
        return {"name": name, "id": job_id}

    return dict(_with_client(settings, act))


def delete(settings: Settings, name: str) -> dict[str, Any]:
    def act(client: SaturnJobsClient) -> dict[str, Any]:
        job_id = client.job_id(name)
        try:
            client.delete(job_id)
        except RemoteError as error:
            if "HTTP 409" in str(error):
                raise RemoteError(
                    f"Saturn Cloud will not delete the job {name!r} while it runs (HTTP 409): "
                    "stop it first (ticketeval job stop)."
                ) from None
            raise
        return {"name": name, "id": job_id, "deleted": True}

    return dict(_with_client(settings, act))


def status(settings: Settings, name: str) -> dict[str, Any]:
    def act(client: SaturnJobsClient) -> dict[str, Any]:
        job_id = client.job_id(name)
        job = client.job(job_id)
        cron = (job.get("cron_schedule_options") or {}).get("schedule")
        return {
            "name": name,
            "id": job_id,
            "url": job_url(client.base_url, job_id),
            "status": job.get("status"),
            "schedule": cron if job.get("scheduled") else None,
            "runs": client.runs(job_id),
        }

    return dict(_with_client(settings, act))


def logs(
    settings: Settings,
    name: str,
    *,
    run: str | None = None,
    every_run: bool = False,
    follow: bool = False,
    on_text: Callable[[str, str], None],
) -> list[dict[str, Any]]:
    """Pass each chosen run's log to `on_text(run, text)`: the last run, the one named, or
    every run (oldest first). With `follow`, a run still going is read until it ends."""

    def act(client: SaturnJobsClient) -> list[dict[str, Any]]:
        job_id = client.job_id(name)
        runs = client.runs(job_id)
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
                _follow(client, job_id, picked, on_text)
            else:
                on_text(picked["run"], client.logs(job_id, picked))
        return chosen

    return list(_with_client(settings, act))


def _follow(
    client: SaturnJobsClient,
    job_id: str,
    run: dict[str, Any],
    on_text: Callable[[str, str], None],
) -> None:
    """Print the run's log as it grows, until the run has ended (then its last lines)."""
    shown: list[str] = []
    while True:
        current = next((r for r in client.runs(job_id) if r["run"] == run["run"]), run)
        window = client.logs(job_id, current).splitlines(keepends=True)
        fresh = new_lines(shown, window)
        if fresh:
            on_text(current["run"], "".join(fresh))
            shown = (shown + fresh)[-len(window) :]
        if current.get("status") not in _LIVE_STATUSES:
            return
        time.sleep(FOLLOW_INTERVAL)


def new_lines(shown: list[str], window: list[str]) -> list[str]:
    """The lines of `window` (a live log's last lines) past those already `shown`: the window
    slides once the log is longer than it, so find where the shown lines end inside it."""
    for overlap in range(min(len(shown), len(window)), 0, -1):
        if window[:overlap] == shown[-overlap:]:
            return window[overlap:]
    return window
