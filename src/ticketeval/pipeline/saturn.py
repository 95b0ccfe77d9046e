"""Saturn Cloud and Prefect Cloud: `describe-sizes` and `register`.

prefect-saturn and dask-saturn read their configuration from environment variables, and Prefect 1
reads its own when `prefect` is first imported, so this module sets those variables (for this
process only, never on disk) before it imports any of them.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ticketeval.errors import RemoteError, SettingsError, UnreachableError, UsageError
from ticketeval.history.store import flow_history_url
from ticketeval.pipeline.saturn_api import check_sizes, describe_sizes, saturn_refusal
from ticketeval.settings import Settings, env_var_name

if TYPE_CHECKING:
    from prefect import Flow

SATURN_CLUSTER_CLASS = "dask_saturn.SaturnCluster"
_ONLY_WHEN_REGISTERED = (
    "prefect_flow_id",
    "prefect_flow_group_id",
    "version",
    "flow_url",
    "project_created",
    "saturn_flow_id",
    "image",
    "labels",
)


POD_HISTORY = "the pod's own: its TICKETEVAL_HISTORY_URL, else a file on its disk"
POD_HISTORY_WARNING = (
    "Warning: TICKETEVAL_HISTORY_URL is not a PostgreSQL URL here, so the flow records its "
    "trials in the Saturn pod's own history (its TICKETEVAL_HISTORY_URL, else a file on its "
    "disk, lost with the pod): set TICKETEVAL_HISTORY_URL=postgresql://user@host/db before "
    "registering, and PGPASSWORD in Saturn's secrets."
)


@dataclass(frozen=True)
class Registration:
    """What was (or, with --dry-run, would be) registered. Holds no secret."""

    flow_name: str
    project: str
    tasks: list[str]
    parameters: dict[str, Any]
    history: str  # where the flow's trials will be recorded (a URL without its password)
    schedule: str
    executor: str
    cluster_class: str
    cluster_kwargs: dict[str, Any]
    adapt_kwargs: dict[str, int]
    instance_size: str | None
    dry_run: bool
    prefect_flow_id: str | None = None
    prefect_flow_group_id: str | None = None
    version: int | None = None
    flow_url: str | None = None
    project_created: bool | None = None
    saturn_flow_id: str | None = None
    image: str | None = None
    labels: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one line each, for stderr

    def to_dict(self) -> dict[str, Any]:
        details = asdict(self)
        details.pop("warnings")
        if self.dry_run:
            # Nothing was sent, so there are no ids, labels or image to show.
            for key in _ONLY_WHEN_REGISTERED:
                details.pop(key)
        return details


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore them (the client libraries read
    them from os.environ; restoring keeps an in-process caller's environment as it was)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _remote_errors(settings: Settings) -> Iterator[None]:
    """Turn the client libraries' HTTP errors into one line each, naming the service."""
    import requests

    def service(url: str | None) -> tuple[str, str]:
        if url and settings.base_url and url.startswith(settings.base_url):
            return "Saturn Cloud", "SATURN_TOKEN"
        return "Prefect Cloud", "PREFECT_USER_TOKEN"

    try:
        yield
    except requests.HTTPError as error:
        response = error.response
        url = response.url if response is not None else None
        status = response.status_code if response is not None else "an error"
        name, token = service(url)
        if name == "Saturn Cloud" and response is not None:
            # One owner of what Saturn's answers mean: the same lines as `ticketeval job`'s.
            raise saturn_refusal(response.status_code, f"{response.request.method} {url}") from None
        if status in (401, 403):
            raise RemoteError(
                f"{name} refused {token} (HTTP {status} from {url}): check the token."
            ) from None
        raise RemoteError(f"{name} answered HTTP {status} for {url}.") from None
    except (requests.ConnectionError, requests.Timeout) as error:
        asked = error.request.url if error.request is not None else settings.base_url
        url = asked.decode() if isinstance(asked, bytes) else asked
        name, _ = service(url)
        problem = (
            "did not answer in time" if isinstance(error, requests.Timeout) else "is unreachable"
        )
        raise UnreachableError(
            f"{name} at {url} {problem}: check BASE_URL / PREFECT__CLOUD__API and the network."
        ) from None
    except (ValueError, KeyError) as error:
        # A response that is not the JSON the client libraries expect.
        raise RemoteError(f"unexpected answer from a remote service: {error}") from None


@dataclass(frozen=True)
class SaturnClusterOptions:
    """The Dask cluster Saturn starts for each flow run (dask-saturn's SaturnCluster)."""

    workers: int
    worker_size: str | None = None
    scheduler_size: str | None = None
    spot: bool | None = None
    shutdown_on_close: bool = True
    adapt_min: int | None = None
    adapt_max: int | None = None

    def __post_init__(self) -> None:
        if (self.adapt_min is None) != (self.adapt_max is None):
            raise UsageError("--adapt-min and --adapt-max go together: give both, or neither.")
        if self.adapt_min is not None and self.adapt_max is not None:
            if self.adapt_min > self.adapt_max:
                raise UsageError(
                    f"--adapt-min {self.adapt_min} is larger than --adapt-max {self.adapt_max}."
                )

    def cluster_kwargs(self) -> dict[str, Any]:
        """SaturnCluster's keyword arguments; unset ones are left to Saturn's defaults."""
        kwargs = {
            "n_workers": self.workers,
            "worker_size": self.worker_size,
            "scheduler_size": self.scheduler_size,
            "worker_is_spot": self.spot,
            "shutdown_on_close": self.shutdown_on_close,
        }
        return {name: value for name, value in kwargs.items() if value is not None}

    def adapt_kwargs(self) -> dict[str, int] | None:
        """SaturnCluster.adapt()'s keyword arguments, or None for a fixed size."""
        if self.adapt_min is None or self.adapt_max is None:
            return None
        return {"minimum": self.adapt_min, "maximum": self.adapt_max}


def prefect_cloud_environment(api_key: str) -> dict[str, str]:
    """Prefect 1's configuration for Prefect Cloud with this API key, as environment variables.

    The seed ran `prefect auth login --key`, which writes the key to ~/.prefect/auth.toml; the
    environment keeps it in this process instead. `PREFECT__CLOUD__API` is left as the user set
    it (Prefect's default is Prefect Cloud's URL).
    """
    return {"PREFECT__BACKEND": "cloud", "PREFECT__CLOUD__API_KEY": api_key}


def _apply_to_loaded_prefect(values: dict[str, str]) -> None:
    """Prefect reads its configuration once, at import: if it is already imported (a caller in
    the same process), set the same values on its live configuration too. `prefect.context`
    holds its own copy (per thread), which is what Prefect's Client reads."""
    prefect = sys.modules.get("prefect")
    if prefect is None:
        return
    for config in (prefect.config, prefect.context.config):
        config.backend = values["PREFECT__BACKEND"]
        config.cloud.api_key = values["PREFECT__CLOUD__API_KEY"]
        config.cloud.api = os.environ.get("PREFECT__CLOUD__API", config.cloud.endpoint)


def _schedule_text(flow: Flow) -> str:
    if flow.schedule is None:
        return "none"
    clock = flow.schedule.clocks[0]
    hours = clock.interval.total_seconds() / 3600
    return f"every {hours:g} hours"


def register(
    settings: Settings,
    *,
    cluster: SaturnClusterOptions,
    instance_size: str | None,
    schedule_hours: float | None,
    batch_size: int | str | None,
    project: str | None,
    dry_run: bool,
) -> Registration:
    """Register the flow with Prefect Cloud to run on a Saturn Cloud Dask cluster.

    Every setting is checked before the first network call; with `dry_run`, none is made.
    """
    if schedule_hours is not None and not (math.isfinite(schedule_hours) and schedule_hours > 0):
        raise UsageError(
            f"--schedule-hours must be a positive number of hours, not {schedule_hours}."
        )
    from ticketeval.data.batches import parse_batch_size

    events = parse_batch_size(batch_size)
    if events is not None and events < 1:
        raise UsageError(f"--batch-size must be at least 1 (or 'all'), not {events}.")
    project_name = project or settings.prefect_cloud_project_name
    if not project_name:
        raise SettingsError(
            f"{env_var_name('prefect_cloud_project_name')} is not set: "
            "export it, add it to a .env file, or pass --project."
        )
    cluster_kwargs, adapt_kwargs = cluster.cluster_kwargs(), cluster.adapt_kwargs()
    if not dry_run:
        settings.require("prefect_user_token")
        saturn_environment = settings.saturn_environment()
        assert settings.prefect_user_token is not None
        prefect_environment = prefect_cloud_environment(
            settings.prefect_user_token.get_secret_value()
        )
        # Before `prefect` is imported (by build_flow below): Prefect reads its config then.
        os.environ.update(prefect_environment)
        _apply_to_loaded_prefect(prefect_environment)

    from ticketeval.pipeline.cluster import prefect_logs_to_stderr
    from ticketeval.pipeline.flow import build_flow, flow_name

    prefect_logs_to_stderr()
    history_url = flow_history_url(settings.history)
    flow = build_flow(
        name=flow_name(settings.username),
        batch_size=events,
        seed=settings.seed,
        schedule_hours=schedule_hours,
        runner="saturn",
        # A server's URL travels in the flow without its password (the pod's PGPASSWORD
        # supplies it); a trial the flow cannot record fails its task, which Prefect retries.
        history_url=history_url,
        must_record=True,
    )
    plan = Registration(
        flow_name=flow.name,
        project=project_name,
        tasks=_task_names(flow),
        parameters={
            parameter.name: parameter.default
            for parameter in sorted(flow.parameters(), key=lambda parameter: parameter.name)
        },
        schedule=_schedule_text(flow),
        executor="prefect.executors.DaskExecutor",
        cluster_class=SATURN_CLUSTER_CLASS,
        cluster_kwargs=cluster_kwargs,
        adapt_kwargs=adapt_kwargs or {},
        instance_size=instance_size,
        dry_run=dry_run,
        history=history_url or POD_HISTORY,
        warnings=[] if history_url else [POD_HISTORY_WARNING],
    )
    if dry_run:
        return plan

    with _environment(saturn_environment), _remote_errors(settings):
        check_sizes(
            describe_sizes(settings),
            worker_size=cluster.worker_size,
            scheduler_size=cluster.scheduler_size,
            instance_size=instance_size,
        )
        with _prefect_cloud_errors():
            project_created = _ensure_project(project_name)
            from prefect_saturn import PrefectCloudIntegration

            integration = PrefectCloudIntegration(prefect_cloud_project_name=project_name)
            with warnings.catch_warnings():
                # Task results are not kept between runs by design (each run re-reads the
                # cache), so Prefect's "No result handler" advice does not apply; nor does its
                # advice on write_trial_summary's retries: they happen within the run (30 s
                # apart), while the upstream results are still in memory.
                warnings.filterwarnings("ignore", "No result handler", UserWarning)
                warnings.filterwarnings("ignore", ".* has retry settings but some upstream")
                flow = integration.register_flow_with_saturn(
                    flow,
                    dask_cluster_kwargs=cluster_kwargs,
                    dask_adapt_kwargs=adapt_kwargs,
                    instance_size=instance_size,
                )
                # no_url: Prefect would print the URL on stdout, which --json keeps for JSON.
                flow_id = flow.register(project_name=project_name, no_url=True)
            version, flow_group_id, flow_url = _registered_flow(flow_id)
    return replace(
        plan,
        prefect_flow_id=flow_id,
        prefect_flow_group_id=flow_group_id,
        version=version,
        flow_url=flow_url,
        project_created=project_created,
        saturn_flow_id=integration.flow_id,
        image=integration.image,
        labels=sorted(flow.run_config.labels),
    )


def _task_names(flow: Flow) -> list[str]:
    """The flow's own tasks in run order, without its parameters and Prefect's helper tasks
    (the List/Dict tasks that collect the metrics)."""
    from prefect import Parameter

    return [
        task.name
        for task in flow.sorted_tasks()
        if not isinstance(task, Parameter)
        and type(task).__module__ != "prefect.tasks.core.collections"
    ]


@contextlib.contextmanager
def _prefect_cloud_errors() -> Iterator[None]:
    from prefect.exceptions import AuthorizationError, ClientError

    try:
        yield
    except AuthorizationError:
        raise RemoteError(
            "Prefect Cloud refused PREFECT_USER_TOKEN: it must be a valid Prefect Cloud API key."
        ) from None
    except ClientError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RemoteError(f"Prefect Cloud refused the request: {first_line}") from None


def _ensure_project(project_name: str) -> bool:
    """Create the Prefect Cloud project unless it exists; True when it was created."""
    import prefect
    from prefect.utilities.graphql import with_args

    client = prefect.Client()
    query = {"query": {with_args("project", {"where": {"name": {"_eq": project_name}}}): {"id"}}}
    if client.graphql(query).data.project:
        return False
    client.create_project(project_name=project_name)
    return True


def _registered_flow(flow_id: str) -> tuple[int, str, str]:
    """The registered flow's version, flow group and Prefect Cloud URL (as Prefect prints it)."""
    import prefect
    from prefect.utilities.graphql import with_args

    client = prefect.Client()
    result = client.graphql(
        {"query": {with_args("flow_by_pk", {"id": flow_id}): {"version", "flow_group_id"}}}
    )
    flow = result.data.flow_by_pk
    return (
        int(flow.version),
        str(flow.flow_group_id),
        client.get_cloud_url("flow", flow.flow_group_id),
    )
