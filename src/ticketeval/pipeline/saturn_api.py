"""Saturn Cloud's REST API, called as saturn-client 2026.2.1 calls it: one requests Session with
`Authorization: token`, the settings' timeout, retries for transient failures only, and every
failure one line without the token. The only owner of Saturn's URLs, payload shapes, HTTP
status meanings and instance sizes: `describe-sizes`, `register` and `ticketeval job` use it.

requests is imported inside the functions that call Saturn, to keep `--help` fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, TypedDict
from urllib.parse import quote

from ticketeval import __version__
from ticketeval.errors import RemoteError, UnreachableError, UsageError

if TYPE_CHECKING:
    import requests

    from ticketeval.settings import Settings

# The job recipe schema ticketeval writes, and so the oldest Saturn API that reads it.
RECIPE_SCHEMA_VERSION = "2025.10.01"
# From this API version Saturn lists a job's pods (with exit codes) under /api/active/pods.
ACTIVE_PODS_VERSION = "2026.02.01"
# Transient answers worth another try; anything else is the same on every try.
TRANSIENT_STATUSES = (429, 502, 503, 504)
RETRIES = 3


class NotFound(RemoteError):
    """Saturn answered 404."""


class Conflict(RemoteError):
    """Saturn answered 409: the request conflicts with the resource's current state."""


# The parts of Saturn's JobRecipe schema that ticketeval writes (`ticketeval job deploy`).


class SecretAttachment(TypedDict):
    name: str
    attachment_type: Literal["environment_variable"]
    location: str  # the environment variable the pod sees


class InstanceSpec(TypedDict):
    instance_type: str


class WorkerSpec(TypedDict):
    instance_type: str
    num_processes: int
    num_threads: int


class DaskClusterSpec(TypedDict):
    num_workers: int
    scheduler: InstanceSpec
    worker: WorkerSpec


class JobSpec(TypedDict):
    name: str
    description: str
    image: str
    instance_type: str
    command: str
    environment_variables: dict[str, str]
    secrets: list[SecretAttachment]
    start_script: str
    schedule: str | None
    concurrency_policy: Literal["Allow", "Forbid", "Replace"]
    dask_cluster: DaskClusterSpec


class JobRecipe(TypedDict):
    schema_version: str
    type: Literal["job"]
    spec: JobSpec


class JobRun(TypedDict):
    """One run of a job (one pod), as `job status` and `job logs --json` show it."""

    run: str  # the pod's name
    status: str | None
    start: str | None
    end: str | None
    exit_code: int | None


class JobState(TypedDict):
    status: str | None
    schedule: str | None  # the cron line Saturn holds, on or off
    scheduled: bool  # whether that schedule is on


def saturn_refusal(status: int, request: str, server_message: str = "") -> RemoteError:
    """What Saturn's HTTP error `status` for `request` ('GET /api/...') means, in one line."""
    said = f": {server_message}" if server_message else ""
    if status in (401, 403):
        return RemoteError(
            f"Saturn Cloud refused SATURN_TOKEN (HTTP {status} for {request}){said}; "
            "check the token (Saturn: Settings, API token) and its access."
        )
    if status == 404:
        return NotFound(f"Saturn Cloud has no {request.split(' ', 1)[-1]} (HTTP 404){said}.")
    if status == 409:
        return Conflict(
            f"Saturn Cloud refused {request}: it conflicts with the current state of what it "
            f"names (HTTP 409){said}."
        )
    return RemoteError(f"Saturn Cloud answered HTTP {status} for {request}{said}.")


class SaturnAPI:
    """The Saturn API calls ticketeval makes. A context manager: it closes its session."""

    def __init__(self, settings: Settings) -> None:
        environment = settings.saturn_environment()  # SATURN_BASE_URL and SATURN_TOKEN, checked
        self.base_url = environment["SATURN_BASE_URL"]
        self._token = environment["SATURN_TOKEN"]
        self.timeout = settings.timeout
        self.session = _session(self._token, settings.retry_backoff)
        self.version = ""

    def __enter__(self) -> SaturnAPI:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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
            raise saturn_refusal(
                response.status_code, f"{method} {path}", self._server_message(response)
            )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RemoteError(
                f"Saturn Cloud answered {method} {path} with something that is not JSON: is "
                f"{self.base_url} a Saturn Cloud installation?"
            ) from None

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

    # -- the installation ------------------------------------------------------------------------

    def check_api(self) -> str:
        """Saturn's API version, refused when older than the job recipe schema ticketeval
        writes."""
        status = self.request("GET", "/api/status")
        version = str(status.get("version", "")) if isinstance(status, dict) else ""
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

    def sizes(self) -> dict[str, str]:
        """The installation's instance sizes, name → description, in Saturn's order. Older
        APIs give the description as text, current ones an object with its `display`."""
        options = self.request("GET", "/api/info/servers")
        sizes = options.get("sizes") if isinstance(options, dict) else None
        if not isinstance(sizes, dict):
            raise RemoteError("Saturn Cloud's /api/info/servers lists no sizes.")
        return {
            str(name): str(size.get("display", name)) if isinstance(size, dict) else str(size)
            for name, size in sizes.items()
        }

    # -- secrets ---------------------------------------------------------------------------------

    def store_secret(self, name: str, value: str) -> Literal["created", "updated"]:
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

    # -- jobs ------------------------------------------------------------------------------------

    def job_recipe(self, name: str) -> dict[str, Any] | None:
        """The job's recipe as Saturn has it (its JSON, with `state.id`), or None."""
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

    def apply(self, recipe: Any) -> str:
        """Create or update the job from its recipe; its id."""
        applied = self.request("PUT", "/api/recipes", json=recipe)
        if not isinstance(applied, dict) or "id" not in applied.get("state", {}):
            raise RemoteError("Saturn Cloud applied the recipe but returned no job id.")
        return str(applied["state"]["id"])

    def job(self, job_id: str) -> JobState:
        job = self.request("GET", f"/api/jobs/{job_id}") or {}
        return JobState(
            status=job.get("status"),
            schedule=(job.get("cron_schedule_options") or {}).get("schedule"),
            scheduled=bool(job.get("scheduled")),
        )

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

    def runs(self, job_id: str) -> list[JobRun]:
        """The job's runs (its pods), newest first: start, end, status, exit code."""
        history = self.request("GET", f"/api/jobs/{job_id}/history") or {}
        runs = {
            str(pod["pod_name"]): JobRun(
                run=str(pod["pod_name"]),
                status=pod.get("status"),
                start=pod.get("start_time"),
                end=pod.get("end_time") or None,
                exit_code=None,
            )
            for pod in history.get("pods", [])
        }
        if self.version[:10] >= ACTIVE_PODS_VERSION:
            for pod in self._live_pods(job_id):
                name = str(pod["name"])
                known = runs.get(name)
                container = _main_container(pod)
                runs[name] = JobRun(
                    run=name,
                    status=pod.get("status"),
                    start=pod.get("started_at") or (known["start"] if known else None),
                    end=pod.get("completed_at") or (known["end"] if known else None),
                    exit_code=container.get("exit_code") if container else None,
                )
        return sorted(runs.values(), key=lambda run: (run["start"] or "", run["run"]))[::-1]

    def _live_pods(self, job_id: str) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"workload_type": "job", "workload_id": job_id}
        while True:
            page = self.request("GET", "/api/active/pods", params=params) or {}
            yield from page.get("pod_summaries", [])
            if not page.get("next_key"):
                return
            params["next_key"] = page["next_key"]

    def logs(self, job_id: str, run: str) -> str:
        """A run's log: the live pod's while Saturn still has it, else its historical log."""
        if self.version[:10] >= ACTIVE_PODS_VERSION:
            try:
                live = self.request(
                    "GET", f"/api/active/pods/{quote(run, safe='')}/logs",
                    params={"page_size": 1000},
                )  # fmt: skip
                return str((live or {}).get("logs", ""))
            except NotFound:
                pass
        history = self.request(
            "GET", f"/api/jobs/{job_id}/logs", params={"pod_name": run, "page_size": 1000}
        )
        lines = (history or {}).get("logs", [])
        if isinstance(lines, str):
            return lines
        return "".join(f"{line['content'].rstrip(chr(10))}\n" for line in lines)


def describe_sizes(settings: Settings) -> dict[str, str]:
    """`describe-sizes`: Saturn's instance sizes, name → description, in Saturn's order."""
    with SaturnAPI(settings) as api:
        return api.sizes()


def check_sizes(sizes: dict[str, str], **given: str | None) -> None:
    """Refuse a size Saturn does not offer, before anything is registered or deployed."""
    for option, size in given.items():
        if size is not None and size not in sizes:
            raise UsageError(
                f"--{option.replace('_', '-')} {size!r} is not a Saturn Cloud size; "
                f"choose one of: {', '.join(sizes)} (see ticketeval describe-sizes)."
            )


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
