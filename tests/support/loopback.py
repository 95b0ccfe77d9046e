"""A real HTTP server on 127.0.0.1 for download tests, scripted one response per request.

    with LoopbackServer([error(500), error(500), serve(body)]) as server:
        run_ticketeval("fetch", "--url", server.url("/x.zip"))
        assert len(server.requests) == 3

Each request takes the next scripted response; once the script is used up, the last response
repeats (so `[hang()]` hangs every retry). A hanging response blocks on a threading.Event that
`stop()` sets, so the server always shuts down promptly; nothing ever sleeps.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal

import pytest

Kind = Literal["serve", "status", "hang", "drop", "short"]


@dataclass(frozen=True)
class Response:
    """What the server does with one request.

    serve:  200 with `body`.
    status: `status` with a small HTML body (e.g. 500).
    hang:   send nothing (or, with `send` > 0, the headers and the first `send` bytes of
            `body`), then hold the connection open until the server stops.
    drop:   the headers and the first `send` bytes of `body`, then reset the connection (RST).
    short:  the headers (Content-Length of the whole `body`) and only `send` bytes, then close
            the connection cleanly (FIN).
    """

    kind: Kind
    body: bytes = b""
    status: int = 200
    send: int = 0


def serve(body: bytes) -> Response:
    return Response("serve", body)


def error(status: int = 500) -> Response:
    return Response("status", f"<html><body>error {status}</body></html>".encode(), status)


def hang(body: bytes = b"", send: int = 0) -> Response:
    return Response("hang", body, send=send)


def drop(body: bytes, send: int | None = None) -> Response:
    return Response("drop", body, send=len(body) // 2 if send is None else send)


def short(body: bytes, send: int | None = None) -> Response:
    return Response("short", body, send=len(body) // 2 if send is None else send)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass(eq=False)
class LoopbackServer:
    """A ThreadingHTTPServer on an ephemeral port, run in a thread, as a context manager."""

    script: Sequence[Response]
    requests: list[Request] = field(default_factory=list)
    # Set when a request arrives, and when a hang/drop/short response has sent its bytes.
    received: threading.Event = field(default_factory=threading.Event)
    sent_partial: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if not self.script:
            raise ValueError("the script needs at least one response")
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # stop() waits for serve_forever's next poll (0.5 s by default): keep it short.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/x.zip") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # releases every hanging handler
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _next_response(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            index = min(len(self.requests), len(self.script)) - 1
        self.received.set()
        return self.script[index]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: simple to script
            # Headers and body go out as separate writes: no delayed-ACK wait between them.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                request = Request(self.command, self.path, dict(self.headers.items()))
                response = server._next_response(request)
                if response.kind == "hang" and response.send == 0:
                    server.stopping.wait()
                    return
                self.send_response(response.status)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if response.kind in ("serve", "status"):
                    self.wfile.write(response.body)
                    return
                self.wfile.write(response.body[: response.send])
                self.wfile.flush()
                server.sent_partial.set()
                if response.kind == "hang":
                    server.stopping.wait()
                elif response.kind == "drop":
                    # SO_LINGER 0: close() sends a reset instead of a clean end of stream.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # keep the test output clean

        return Handler


@pytest.fixture
def loopback() -> Iterator[type[LoopbackServer]]:
    """Start servers with `with loopback([...]) as server:`; all are stopped at teardown."""
    started: list[LoopbackServer] = []

    class Tracked(LoopbackServer):
        def start(self) -> LoopbackServer:
            started.append(self)
            return super().start()

        def stop(self) -> None:
            if self in started:
                started.remove(self)
                super().stop()

    yield Tracked
    for server in list(started):
        server.stop()
