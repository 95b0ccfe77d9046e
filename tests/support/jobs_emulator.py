"""A loopback emulator of Saturn Cloud's Jobs API, as saturn-client 2026.2.1 calls it.

It extends the Saturn + Prefect Cloud emulator (tests/support/emulator.py) with the routes
saturn-client uses for jobs (read from its core.py and cli/commands.py, and saturn-api's
client.yaml): the API status, instance sizes, secrets, `PUT /api/recipes` (each recipe validated
against Saturn's JobRecipe schema, tests/support/schemas/saturn_job_recipe.json), the job's cron
schedule, start, stop, delete, its pods' history and logs. Starting a job starts a run: a "pod"
that executes the job's command locally, as a subprocess with its own HOME, the job's environment
variables and its secrets, Saturn's variables (SATURN_BASE_URL, a resource token of its own) and
nothing of the test's environment. When the pod's `dask_saturn.SaturnCluster()` asks for the
job's cluster, the emulator starts a real Dask cluster on 127.0.0.1 whose workers get the job's
environment and secrets too (one worker process whatever num_workers says: the machine is small).

What it does not do: pull the image or run the recipe's start_script (the test's interpreter has
ticketeval installed, as the image would after `pip install`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from tests.support.emulator import SIZES, CloudEmulator, Received

SCHEMA_FILE = Path(__file__).parent / "schemas" / "saturn_job_recipe.json"
API_VERSION = "2026.02.01"
OWNER = "ada"


def job_recipe_validator() -> Any:
    import jsonschema  # type: ignore[import-untyped]

    schema = json.loads(SCHEMA_FILE.read_text())
    return jsonschema.Draft202012Validator(schema)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass
class Run:
    """One start of a job: its pod, a local process."""

    pod_name: str
    job_id: str
    token: str
    home: Path
    log_path: Path
    environment: dict[str, str]
    start_time: str
    process: subprocess.Popen[bytes] | None = None
    end_time: str | None = None
    exit_code: int | None = None
    cluster_id: str | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def status(self) -> str:
        if self.exit_code is None:
            return "running"
        return "completed" if self.exit_code == 0 else "error"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Job:
    id: str
    recipe: dict[str, Any]
    cron: str | None = None
    scheduled: bool = False
    runs: list[Run] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.recipe["spec"]["name"])

    @property
    def running(self) -> list[Run]:
        return [run for run in self.runs if run.exit_code is None]


class JobsEmulator(CloudEmulator):
    """Saturn Cloud with Jobs. `pods_dir` holds each run's HOME; `pod_env` is what every pod
    and its cluster's workers get besides the job's own (e.g. a marker to find processes)."""

    def __init__(
        self,
        *,
        saturn_token: str,
        pods_dir: Path,
        pod_env: dict[str, str] | None = None,
        api_version: str = API_VERSION,
    ) -> None:
        super().__init__(saturn_token=saturn_token, prefect_api_key="unused")
        self.pods_dir = pods_dir
        self.pod_env = dict(pod_env or {})
        self.api_version = api_version
        self.validator = job_recipe_validator()
        self.jobs: dict[str, Job] = {}
        self.secrets: dict[str, tuple[str, str]] = {}  # name -> (id, value)
        self.deleted_jobs: list[str] = []
        # Answer the next requests of a method with 503 (transient failures): method -> count.
        self.fail_next: dict[str, int] = {}

    # -- what tests look at ----------------------------------------------------------------------

    def job_named(self, name: str) -> Job:
        with self._lock:
            [job] = [job for job in self.jobs.values() if job.name == name]
            return job

    def wait_for_runs(self, job: Job, timeout: float = 300) -> None:
        for run in list(job.runs):
            assert run.finished.wait(timeout), f"the run {run.pod_name} did not end"

    def secret_value(self, name: str) -> str:
        return self.secrets[name][1]

    # -- life cycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        with self._lock:
            runs = [run for job in self.jobs.values() for run in job.running]
        for run in runs:
            self._terminate(run)
        super().stop()

    # -- HTTP ------------------------------------------------------------------------------------

    def _authorized(self, request: Received) -> bool:
        return super()._authorized(request) or self._pod_of(request) is not None

    def _pod_of(self, request: Received) -> Run | None:
        token = request.headers.get("Authorization", "").removeprefix("token ")
        with self._lock:
            for job in self.jobs.values():
                for run in job.runs:
                    if run.token == token:
                        return run
        return None

    def _dispatch(self, request: Received) -> tuple[int, bytes, str]:
        with self._lock:
            transient = self.fail_next.get(request.method, 0) > 0
            if transient:
                self.fail_next[request.method] -= 1
        if transient:
            return 503, b'{"message": "Service Unavailable"}', "application/json"
        return super()._dispatch(request)

    def _saturn_routes(self) -> list[tuple[str, str, Callable[..., tuple[int, Any]]]]:
        job = r"/api/jobs/([^/]+)"
        return [
            ("GET", r"/api/status", self._status),
            ("GET", r"/api/secrets", self._list_secrets),
            ("POST", r"/api/secrets", self._create_secret),
            ("PATCH", r"/api/secrets/([^/]+)", self._update_secret),
            ("PUT", r"/api/recipes", self._apply),
            ("GET", r"/api/recipes/job/([^/]+)", self._get_recipe),
            ("GET", job, self._get_job),
            ("PATCH", job, self._patch_job),
            ("DELETE", job, self._delete_job),
            ("POST", job + r"/schedule", self._schedule),
            ("POST", job + r"/unschedule", self._unschedule),
            ("POST", job + r"/start", self._start),
            ("POST", job + r"/stop", self._stop_job),
            ("GET", job + r"/history", self._history),
            ("GET", job + r"/logs", self._historic_logs),
            ("GET", r"/api/active/pods", self._active_pods),
            ("GET", r"/api/active/pods/([^/]+)/logs", self._pod_logs),
            *super()._saturn_routes(),
        ]

    @staticmethod
    def _query(request: Received) -> dict[str, str]:
        return {key: values[-1] for key, values in parse_qs(request.query).items()}

    def _status(self, request: Received) -> tuple[int, Any]:
        return 200, {"status": "ok", "version": self.api_version}

    def _servers(self, request: Received) -> tuple[int, Any]:
        # The current API's shape (saturn-client's `sc options`): name -> InstanceSize.
        sizes = {
            name: {"name": name, "display": display, "cores": 2, "memory": "4 GB", "gpu": 0,
                   "cloud": "aws", "hardware_type": "cpu"}
            for name, display in self.sizes.items()
        }  # fmt: skip
        return 200, {"sizes": sizes, "auto_shutoff": ["1 hour"], "disk_space": ["10Gi"]}

    # -- secrets ---------------------------------------------------------------------------------

    def _secret_record(self, name: str, secret_id: str) -> dict[str, Any]:
        return {"id": secret_id, "name": name, "owner": {"name": OWNER}, "created_at": now(),
                "access": "owner", "editable": True}  # fmt: skip

    def _list_secrets(self, request: Received) -> tuple[int, Any]:
        wanted = self._query(request).get("name")
        with self._lock:
            found = [
                self._secret_record(name, secret_id)
                for name, (secret_id, _) in self.secrets.items()
                if wanted is None or name == wanted
            ]
        return 200, {"secrets": found}

    def _create_secret(self, request: Received) -> tuple[int, Any]:
        body = request.json()
        if not body.get("name") or "value" not in body:
            return 422, {"message": "name and value are required"}
        with self._lock:
            if body["name"] in self.secrets:
                return 409, {"message": f"secret {body['name']} already exists"}
            secret_id = uuid.uuid4().hex
            self.secrets[body["name"]] = (secret_id, body["value"])
        return 201, self._secret_record(body["name"], secret_id)

    def _update_secret(self, request: Received, secret_id: str) -> tuple[int, Any]:
        body = request.json()
        with self._lock:
            for name, (known, _) in list(self.secrets.items()):
                if known == secret_id:
                    self.secrets[name] = (secret_id, body["value"])
                    return 200, self._secret_record(name, secret_id)
        return 404, {"message": "secret not found"}

    # -- recipes and jobs ------------------------------------------------------------------------

    def _apply(self, request: Received) -> tuple[int, Any]:
        recipe = request.json()
        errors = sorted(self.validator.iter_errors(recipe), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(part) for part in errors[0].path)
            return 422, {"message": f"invalid recipe at {where or '/'}: {errors[0].message}"}
        spec = recipe["spec"]
        sizes = [spec["instance_type"]]
        if "dask_cluster" in spec:
            cluster = spec["dask_cluster"]
            sizes += [cluster["scheduler"]["instance_type"], cluster["worker"]["instance_type"]]
        unknown = [size for size in sizes if size not in self.sizes]
        if unknown:
            return 422, {"message": f"unknown instance type {unknown[0]}"}
        with self._lock:
            for secret in spec.get("secrets", []):
                if secret.get("name") not in self.secrets:
                    return 422, {"message": f"secret {secret.get('name')} not found"}
            # Saturn fills in what the recipe left out: the owner, secrets' descriptions.
            stored = json.loads(json.dumps(recipe))
            stored["spec"]["owner"] = OWNER
            for secret in stored["spec"].get("secrets", []):
                secret.setdefault("description", "")
            existing = [job for job in self.jobs.values() if job.name == spec["name"]]
            job = existing[0] if existing else Job(id=uuid.uuid4().hex, recipe=stored)
            job.recipe = stored
            if spec.get("schedule") and job.cron is None:
                job.cron = spec["schedule"]  # stored, not enabled: /schedule turns it on
            self.jobs[job.id] = job
            return 200, self._recipe_of(job)

    def _recipe_of(self, job: Job) -> dict[str, Any]:
        return {**job.recipe, "state": {"id": job.id, "status": self._job_status(job)}}

    @staticmethod
    def _job_status(job: Job) -> str:
        return "running" if job.running else "stopped"

    def _job(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def _get_recipe(self, request: Received, name: str) -> tuple[int, Any]:
        with self._lock:
            found = [job for job in self.jobs.values() if job.name == unquote(name)]
            if not found:
                return 404, {"message": f"job {unquote(name)} not found"}
            return 200, self._recipe_of(found[0])

    def _job_record(self, job: Job) -> dict[str, Any]:
        spec = job.recipe["spec"]
        return {
            "id": job.id, "name": job.name, "command": spec["command"],
            "status": self._job_status(job), "scheduled": job.scheduled,
            "cron_schedule_options": {"schedule": job.cron,
                                      "concurrency_policy": spec.get("concurrency_policy")},
            "running_count": len(job.running), "resource_type": "job",
        }  # fmt: skip

    def _get_job(self, request: Received, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id)
        return (200, self._job_record(job)) if job else (404, {"message": "job not found"})

    def _patch_job(self, request: Received, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id)
        if job is None:
            return 404, {"message": "job not found"}
        options = request.json().get("cron_schedule_options") or {}
        with self._lock:
            if "schedule" in options:
                job.cron = options["schedule"]
        return 200, self._job_record(job)

    def _schedule(self, request: Received, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id)
        if job is None:
            return 404, {"message": "job not found"}
        if not job.cron:
            return 400, {"message": "the job has no cron schedule"}
        job.scheduled = True
        return 200, self._job_record(job)

    def _unschedule(self, request: Received, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id)
        if job is None:
            return 404, {"message": "job not found"}
        job.scheduled = False
        return 200, self._job_record(job)

    def _delete_job(self, request: Received, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id)
        if job is None:
            return 404, {"message": "job not found"}
        if job.running and self._query(request).get("allow_active") != "true":
            return 409, {"message": "job is active"}
        with self._lock:
            del self.jobs[job_id]
            self.deleted_jobs.append(job_id)
        return 204, b""

    # -- runs ------------------------------------------------------------------------------------

    def _start(self, request: Received, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id)
        if job is None:
            return 404, {"message": "job not found"}
        if job.running and job.recipe["spec"].get("concurrency_policy") == "Forbid":
            return 409, {"message": "job is already running"}
        run = self._launch(job)
        with self._lock:
            job.runs.append(run)
        return 200, self._job_record(job)

    def _launch(self, job: Job) -> Run:
        spec = job.recipe["spec"]
        pod_name = f"{job.name}-{len(job.runs) + 1:03d}-{uuid.uuid4().hex[:5]}"
        home = self.pods_dir / pod_name
        home.mkdir(parents=True)
        token = uuid.uuid4().hex  # the pod's own resource token, never the user's
        environment = {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            **self.pod_env,
            **spec.get("environment_variables", {}),
            **self._attached_secrets(spec),
            "SATURN_BASE_URL": self.base_url,
            "SATURN_TOKEN": token,
            "SATURN_IS_INTERNAL": "true",
            "SATURN_RESOURCE_TYPE": "Job",
            "SATURN_JOB_ID": job.id,
            "SATURN_JOB_NAME": job.name,
        }
        run = Run(pod_name, job.id, token, home, home / "pod.log", environment, now())
        with run.log_path.open("wb") as log:
            run.process = subprocess.Popen(
                ["bash", "-c", spec["command"]],
                cwd=home,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so that stop signals the pod's whole process group
            )
        threading.Thread(target=self._watch, args=(run,), daemon=True).start()
        return run

    def _attached_secrets(self, spec: dict[str, Any]) -> dict[str, str]:
        with self._lock:
            return {
                secret["location"]: self.secrets[secret["name"]][1]
                for secret in spec.get("secrets", [])
                if secret["attachment_type"] == "environment_variable"
            }

    def _watch(self, run: Run) -> None:
        assert run.process is not None
        code = run.process.wait()
        with self._lock:
            run.end_time, run.exit_code = now(), code
        run.finished.set()

    def _terminate(self, run: Run) -> None:
        if run.process is not None and run.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGTERM)
            try:
                run.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(run.process.pid, signal.SIGKILL)
        run.finished.wait(60)

    def _stop_job(self, request: Received, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id)
        if job is None:
            return 404, {"message": "job not found"}
        for run in job.running:
            self._terminate(run)
        return 200, self._job_record(job)

    def _history(self, request: Received, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id)
        if job is None:
            return 404, {"message": "job not found"}
        pods = [
            {"pod_name": run.pod_name, "status": run.status, "last_seen": run.end_time or now(),
             "start_time": run.start_time, "end_time": run.end_time or "",
             "label_job_name": job.name}
            for run in job.runs
        ]  # fmt: skip
        return 200, {"pods": pods}

    def _historic_logs(self, request: Received, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id)
        pod_name = self._query(request).get("pod_name")
        runs = [run for run in (job.runs if job else []) if run.pod_name == pod_name]
        if not runs:
            return 404, {"message": "pod not found"}
        lines = [
            {"timestamp": runs[0].start_time, "content": line, "pod_name": pod_name,
             "container_name": "main"}
            for line in runs[0].log().splitlines()
        ]  # fmt: skip
        return 200, {"logs": lines}

    def _run_named(self, pod_name: str) -> Run | None:
        with self._lock:
            for job in self.jobs.values():
                for run in job.runs:
                    if run.pod_name == pod_name:
                        return run
        return None

    def _active_pods(self, request: Received) -> tuple[int, Any]:
        query = self._query(request)
        job = self._job(query.get("workload_id", ""))
        if query.get("workload_type") != "job" or job is None:
            return 200, {"pod_summaries": []}
        summaries = []
        for run in job.runs:
            container = {"name": "main", "status": run.status, "started_at": run.start_time,
                         "finished_at": run.end_time, "exit_code": run.exit_code}  # fmt: skip
            summaries.append(
                {"name": run.pod_name, "namespace": "main-namespace", "status": run.status,
                 "labels": {"saturncloud.io/resource-id": job.id, "job-name": job.name},
                 "annotations": {}, "conditions": [], "started_at": run.start_time,
                 "completed_at": run.end_time, "deleted_at": None, "node_name": "node-1",
                 "reason": None, "controller_uid": None, "controller_kind": "Job",
                 "init_container_summaries": [], "container_summaries": [container]}
            )  # fmt: skip
        return 200, {"pod_summaries": summaries}

    def _pod_logs(self, request: Received, pod_name: str) -> tuple[int, Any]:
        run = self._run_named(unquote(pod_name))
        if run is None:
            return 404, {"message": "pod not found"}
        page_size = int(self._query(request).get("page_size", "1000"))
        return 200, {"logs": "\n".join(run.log().splitlines()[-page_size:]) + "\n"}

    # -- the job's Dask cluster ------------------------------------------------------------------

    def _start_cluster(self, request: Received) -> tuple[int, Any]:
        """A job's pod asks for its cluster (dask-saturn's POST /api/dask_clusters with the pod's
        token): a real Dask cluster whose workers get the job's environment and secrets."""
        run = self._pod_of(request)
        if run is None:
            return super()._start_cluster(request)
        from distributed import LocalCluster

        job = self._job(run.job_id)
        assert job is not None
        worker_home = run.home / "worker"
        worker_env = {
            **{k: v for k, v in run.environment.items() if k not in ("PATH",)},
            "HOME": str(worker_home),
            # A worker pod's own disk (the test process's settings must not reach it).
            "TICKETEVAL_DATA_DIR": str(worker_home / ".cache" / "ticketeval"),
            "TICKETEVAL_HISTORY_DIR": str(worker_home / ".local" / "share" / "ticketeval"),
        }
        with self._lock:
            cluster_id = f"dask-{len(self.clusters) + 1}"
            self.cluster_requests.append(
                {"job": job.name, **job.recipe["spec"]["dask_cluster"], "request": request.json()}
            )
            run.cluster_id = cluster_id
            self.clusters[cluster_id] = LocalCluster(
                n_workers=1,
                threads_per_worker=2,
                host="127.0.0.1",
                dashboard_address=":0",
                # Its link is reported as Saturn's is; no test opens the page: no Bokeh.
                scheduler_kwargs={"dashboard": False},
                env=worker_env,
            )
        return 200, {"status": "ready", "id": cluster_id}


@contextmanager
def running_jobs_emulator(
    *, saturn_token: str, pods_dir: Path, pod_env: dict[str, str] | None = None
) -> Iterator[JobsEmulator]:
    emulator = JobsEmulator(saturn_token=saturn_token, pods_dir=pods_dir, pod_env=pod_env)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


__all__ = ["SIZES", "JobsEmulator", "Job", "Run", "running_jobs_emulator", "job_recipe_validator"]
