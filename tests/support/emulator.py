"""A loopback emulator of the Saturn Cloud and Prefect Cloud APIs that ticketeval's clients call.

It serves exactly the routes prefect-saturn 0.6.0, dask-saturn 0.4.x and Prefect 1.4.1's `Client`
use (read from their source), checks their auth headers, and records every request, so tests can
run the real client libraries over real HTTP on 127.0.0.1 and assert what reached "the cloud".
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

SIZES = {
    "medium": "Medium - 2 cores - 4 GB RAM",
    "large": "Large - 2 cores - 16 GB RAM",
    "xlarge": "XLarge - 4 cores - 32 GB RAM",
    "2xlarge": "2XLarge - 8 cores - 64 GB RAM",
}
SATURN_IMAGE = "saturncloud/saturn-python:2023.01.01"
TENANT_ID = "6b0f8e5e-3bbd-4a55-a5f4-7a1b0b4e2a10"
TENANT_SLUG = "ticketeval-team"
PREFECT_PATH = "/graphql"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RegisteredFlow:
    """A flow as Prefect Cloud stores it after `create_flow_from_compressed_string`."""

    id: str
    flow_group_id: str
    version: int
    project_id: str
    serialized: dict[str, Any]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    schedule_active: bool = False


@dataclass
class SaturnFlow:
    id: int
    flow_hash: str
    name: str
    project_name: str
    instance_size: str | None
    version_ids: list[str] = field(default_factory=list)


class CloudEmulator:
    """Saturn Cloud (`BASE_URL/api/...`) and Prefect Cloud (`BASE_URL/graphql`) in one server."""

    def __init__(self, *, saturn_token: str, prefect_api_key: str) -> None:
        self.saturn_token = saturn_token
        self.prefect_api_key = prefect_api_key
        self.sizes = dict(SIZES)
        self.received: list[Received] = []
        self.projects: dict[str, str] = {}  # name -> id
        self.flows: list[RegisteredFlow] = []
        self.saturn_flows: dict[str, SaturnFlow] = {}  # flow_hash -> flow
        self.contents: dict[tuple[str, str], bytes] = {}  # (saturn flow id, version id) -> pickle
        self.clusters: dict[str, Any] = {}  # id -> running distributed.LocalCluster
        self.cluster_requests: list[dict[str, Any]] = []
        self.cluster_resizes: list[tuple[str, str, Any]] = []
        self.closed_clusters: list[str] = []
        # The environment the clusters' workers add to this process's: a pod's own settings.
        self.worker_env: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # stop() waits for serve_forever's next poll (0.5 s by default): keep it short.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def prefect_api(self) -> str:
        return self.base_url + PREFECT_PATH

    def start(self) -> CloudEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        for cluster in self.clusters.values():
            cluster.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- what tests look at ----------------------------------------------------------------------

    def requests_to(self, path_prefix: str) -> list[Received]:
        with self._lock:
            return [request for request in self.received if request.path.startswith(path_prefix)]

    def graphql_operations(self) -> list[str]:
        """The GraphQL operations received, in order (e.g. 'create_project', 'project')."""
        return [_operation(request.json()["query"]) for request in self.requests_to(PREFECT_PATH)]

    # -- the HTTP side ---------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: without TCP_NODELAY the body waits for
            # the client's delayed ACK (40 ms a request on Linux).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep pytest's output clean

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                request = Received(
                    self.command, url.path, dict(self.headers.items()), body, url.query
                )
                with emulator._lock:
                    emulator.received.append(request)
                status, payload, content_type = emulator._dispatch(request)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler

    def _dispatch(self, request: Received) -> tuple[int, bytes, str]:
        if request.path == PREFECT_PATH:
            return 200, _json_bytes(self._graphql(request)), "application/json"
        if not self._authorized(request):
            return 401, _json_bytes({"message": "Invalid token"}), "application/json"
        for method, pattern, handler in self._saturn_routes():
            match = re.fullmatch(pattern, request.path)
            if match and request.method == method:
                status, payload = handler(request, *match.groups())
                if isinstance(payload, bytes):
                    return status, payload, "application/octet-stream"
                return status, _json_bytes(payload), "application/json"
        return (
            404,
            _json_bytes({"message": f"no route {request.method} {request.path}"}),
            ("application/json"),
        )

    # -- Saturn ----------------------------------------------------------------------------------

    def _authorized(self, request: Received) -> bool:
        return request.headers.get("Authorization") == f"token {self.saturn_token}"

    def _saturn_routes(self) -> list[tuple[str, str, Callable[..., tuple[int, Any]]]]:
        return [
            ("GET", r"/api/info/servers", self._servers),
            ("GET", r"/api/dask_clusters/info", self._dask_cluster_info),
            ("POST", r"/api/dask_clusters", self._start_cluster),
            ("GET", r"/api/dask_clusters/([^/]+)/info", self._cluster_info),
            ("POST", r"/api/dask_clusters/([^/]+)/(adapt|scale)", self._resize_cluster),
            ("POST", r"/api/dask_clusters/([^/]+)/close", self._close_cluster),
            ("GET", r"/api/dask_clusters/([^/]+)/status", self._cluster_status),
            ("PUT", r"/api/prefect_cloud/flows", self._put_flow),
            ("GET", r"/api/prefect_cloud/flows/([^/]+)/run_job_spec", self._run_job_spec),
            ("POST", r"/api/prefect_cloud/flows/([^/]+)/([^/]+)/content", self._store_content),
            ("GET", r"/api/prefect_cloud/flows/([^/]+)/([^/]+)/content", self._get_content),
        ]

    def _servers(self, request: Received) -> tuple[int, Any]:
        return 200, {"sizes": self.sizes}

    def _dask_cluster_info(self, request: Received) -> tuple[int, Any]:
        sizes = [{"name": name, "display": display} for name, display in self.sizes.items()]
        return 200, {"server_options": {"size": sizes}}

    def _start_cluster(self, request: Received) -> tuple[int, Any]:
        """Start a real Dask cluster on 127.0.0.1 for the project, as Saturn does on Kubernetes.

        One worker process whatever `n_workers` says: the request is recorded for assertions,
        and the test machine stays small."""
        from distributed import LocalCluster

        config = request.json()
        with self._lock:
            cluster_id = f"dask-{len(self.clusters) + 1}"
            self.cluster_requests.append(config)
            self.clusters[cluster_id] = LocalCluster(
                n_workers=1,
                threads_per_worker=2,
                host="127.0.0.1",
                dashboard_address=":0",
                # Its link is reported as Saturn's is; no test opens the page: no Bokeh.
                scheduler_kwargs={"dashboard": False},
                env=self.worker_env,
            )
        return 200, {"status": "ready", "id": cluster_id}

    def _cluster(self, cluster_id: str) -> Any:
        with self._lock:
            return self.clusters[cluster_id]

    def _cluster_info(self, request: Received, cluster_id: str) -> tuple[int, Any]:
        cluster = self._cluster(cluster_id)
        return 200, {
            "scheduler_address": cluster.scheduler_address,
            "dashboard_link": cluster.dashboard_link,
        }

    def _resize_cluster(self, request: Received, cluster_id: str, action: str) -> tuple[int, Any]:
        self._cluster(cluster_id)
        with self._lock:
            self.cluster_resizes.append((cluster_id, action, request.json()))
        return 200, {}

    def _cluster_status(self, request: Received, cluster_id: str) -> tuple[int, Any]:
        with self._lock:
            running = cluster_id in self.clusters
        return 200, {"status": "running" if running else "closed"}

    def _close_cluster(self, request: Received, cluster_id: str) -> tuple[int, Any]:
        with self._lock:
            cluster = self.clusters.pop(cluster_id)
            self.closed_clusters.append(cluster_id)
        cluster.close()
        return 200, {}

    def _put_flow(self, request: Received) -> tuple[int, Any]:
        data = request.json()
        with self._lock:
            flow = self.saturn_flows.get(data["flow_hash"])
            if flow is None:
                flow = SaturnFlow(
                    id=len(self.saturn_flows) + 1,
                    flow_hash=data["flow_hash"],
                    name=data["name"],
                    project_name=data["prefect_cloud_project_name"],
                    instance_size=data.get("instance_size"),
                )
                self.saturn_flows[flow.flow_hash] = flow
            flow.instance_size = data.get("instance_size")
            flow.version_ids.append(uuid.uuid4().hex)
        return 200, {
            "id": flow.id,
            "flow_version_id": flow.version_ids[-1],
            "image": SATURN_IMAGE,
            "labels": ["saturn-cloud", "webhook-flow-storage", f"saturn-flow-{flow.id}"],
        }

    def _run_job_spec(self, request: Received, flow_id: str) -> tuple[int, Any]:
        container = {
            "name": "flow",
            "image": SATURN_IMAGE,
            "command": ["/bin/bash", "-ec"],
            "args": ["source /home/jovyan/.saturn/start_wrapper.sh; prefect execute flow-run"],
            "env": [{"name": "SATURN_RESOURCE_TYPE", "value": "PrefectCloudFlowRun"}],
        }
        spec = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"labels": {"saturn-flow-id": flow_id}},
            "spec": {"template": {"spec": {"containers": [container]}}},
        }
        return 200, spec

    def _store_content(self, request: Received, flow_id: str, version_id: str) -> tuple[int, Any]:
        with self._lock:
            self.contents[(flow_id, version_id)] = request.body
        return 200, {"id": flow_id, "flow_version_id": version_id}

    def _get_content(self, request: Received, flow_id: str, version_id: str) -> tuple[int, Any]:
        content = self.contents.get((flow_id, version_id))
        if content is None:
            return 404, {"message": "no such flow version"}
        return 200, content

    # -- Prefect Cloud ---------------------------------------------------------------------------

    def _graphql(self, request: Received) -> dict[str, Any]:
        if request.headers.get("Authorization") != f"Bearer {self.prefect_api_key}":
            return {
                "errors": [
                    {"message": "Unauthenticated", "extensions": {"code": "UNAUTHENTICATED"}}
                ]
            }
        body = request.json()
        query = body["query"]
        variables = json.loads(body.get("variables") or "null") or {}
        arguments = variables.get("input", {})
        operation = _operation(query)
        with self._lock:
            if operation == "create_project":
                if arguments["name"] in self.projects:
                    return {"errors": [{"message": "Uniqueness violation."}]}
                self.projects[arguments["name"]] = str(uuid.uuid4())
                return {"data": {"create_project": {"id": self.projects[arguments["name"]]}}}
            if operation == "create_flow_from_compressed_string":
                return {"data": {operation: {"id": self._create_flow(arguments)}}}
            if operation in ("register_tasks", "register_edges", "set_schedule_active"):
                flow = self._flow(arguments["flow_id"])
                if operation == "register_tasks":
                    flow.tasks.extend(arguments["serialized_tasks"])
                elif operation == "register_edges":
                    flow.edges.extend(arguments["serialized_edges"])
                else:
                    flow.schedule_active = True
                return {"data": {operation: {"success": True}}}
            if operation == "auth_info":
                return {"data": {"auth_info": {"tenant_id": TENANT_ID}}}
            if operation == "flow_by_pk":
                flow_id = re.search(r'id: "([^"]+)"', query)
                flow = self._flow(flow_id.group(1) if flow_id else "")
                return {
                    "data": {
                        "flow_by_pk": {"version": flow.version, "flow_group_id": flow.flow_group_id}
                    }
                }
            if operation == "project":
                name = re.search(r'_eq: "((?:[^"\\]|\\.)*)"', query)
                project_id = self.projects.get(json.loads(f'"{name.group(1)}"') if name else "")
                return {"data": {"project": [{"id": project_id}] if project_id else []}}
            if operation == "tenant":
                return {"data": {"tenant": [{"id": TENANT_ID, "slug": TENANT_SLUG}]}}
        return {"errors": [{"message": f"the emulator does not serve {operation!r}"}]}

    def _create_flow(self, arguments: dict[str, Any]) -> str:
        serialized = json.loads(gzip.decompress(base64.b64decode(arguments["serialized_flow"])))
        same_group = [
            flow
            for flow in self.flows
            if flow.project_id == arguments["project_id"]
            and flow.serialized["name"] == serialized["name"]
        ]
        flow = RegisteredFlow(
            id=str(uuid.uuid4()),
            flow_group_id=same_group[0].flow_group_id if same_group else str(uuid.uuid4()),
            version=len(same_group) + 1,
            project_id=arguments["project_id"],
            serialized=serialized,
        )
        self.flows.append(flow)
        return flow.id

    def _flow(self, flow_id: str) -> RegisteredFlow:
        for flow in self.flows:
            if flow.id == flow_id:
                return flow
        raise KeyError(flow_id)


def _operation(query: str) -> str:
    """The first field selected by a GraphQL document as Prefect's `parse_graphql` renders it."""
    body = query[query.index("{") + 1 :]
    match = re.match(r"\s*([A-Za-z_]+)", body)
    return match.group(1) if match else ""


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload).encode()


@contextmanager
def running_emulator(*, saturn_token: str, prefect_api_key: str) -> Iterator[CloudEmulator]:
    emulator = CloudEmulator(saturn_token=saturn_token, prefect_api_key=prefect_api_key).start()
    try:
        yield emulator
    finally:
        emulator.stop()
