"""A real PostgreSQL server for the tests: started once per session, a fresh database per test.

The server binaries come from the system (`/usr/lib/postgresql/<version>/bin`, the Debian
layout, or `pg_ctl` on PATH); tests that need them are skipped, with the reason, where they are
absent. `initdb` refuses to run as root, so as root every server command runs as the `postgres`
user on a directory that user owns. The server listens on 127.0.0.1 on a free port with
password (SCRAM) authentication, like a team's shared server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER, SUPERUSER_PASSWORD = "postgres_admin", "admin-" + uuid.uuid4().hex
# The role ticketeval connects as: an ordinary user who owns its database, not a superuser.
USER, PASSWORD = "ada", "s3cret-" + uuid.uuid4().hex[:12]


def find_bin_dir() -> Path | None:
    """The newest server installation's bin directory, or None when there is none."""
    candidates = sorted(
        (path for path in PG_ROOT.glob("*/bin") if (path / "initdb").exists()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and (Path(pg_ctl).parent / "initdb").exists():
        return Path(pg_ctl).parent
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """A server this test session started; `stop()`/`start()` let a test take it away."""

    bin_dir: Path
    base: Path
    port: int
    user: str = USER
    password: str = PASSWORD

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        # As root, run as the postgres user (initdb and postgres refuse root).
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run(
            [*prefix, str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(f"{what} failed: {result.stderr or result.stdout}\n{log[-2000:]}")

    def init(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        owned_by_postgres(pwfile)
        result = self._run(
            "initdb", "-D", str(self.data_dir), "--username", SUPERUSER, "--pwfile", str(pwfile),
            "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            "--no-instructions",
        )  # fmt: skip
        pwfile.unlink()
        self._check(result, "initdb")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            # A test server: durability across an OS crash is not wanted, speed is.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        result = self._run(
            "pg_ctl", "start", "-D", str(self.data_dir), "-w", "-t", "60",
            "-l", str(self.log_file), "-o", options,
        )  # fmt: skip
        self._check(result, "pg_ctl start")

    def stop(self) -> None:
        result = self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w")
        self._check(result, "pg_ctl stop")

    def url(self, database: str, *, user: str = USER, password: str = PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser, outside a transaction (CREATE DATABASE)."""
        import psycopg

        url = self.url("postgres", user=SUPERUSER, password=SUPERUSER_PASSWORD)
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql)  # type: ignore[arg-type]


def owned_by_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session, stopped and deleted at its end."""
    pytest.importorskip("psycopg", reason="psycopg (psycopg[binary]) is not installed")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            f"no PostgreSQL server binaries (initdb, pg_ctl) under {PG_ROOT}/*/bin or on PATH: "
            "install the postgresql package"
        )
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    # Not pytest's tmp_path: /tmp/pytest-of-root is not traversable by the postgres user.
    base = Path(tempfile.mkdtemp(prefix="ticketeval-pg-"))
    base.chmod(0o700)
    owned_by_postgres(base)
    server = PostgresServer(bin_dir=bin_dir, base=base, port=free_port())
    try:
        server.init()
        server.start()
        server.admin(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty database owned by the test user, dropped after the test.

    It collates with ICU's en-US (where 'a' < 'B', unlike byte order) when the server has ICU,
    so a query that orders text without an explicit collation shows up as a difference from
    SQLite.
    """
    name = f"t_{uuid.uuid4().hex[:16]}"
    try:
        postgres_server.admin(
            f"CREATE DATABASE {name} OWNER {USER} TEMPLATE template0 "
            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    except Exception:  # a server built without ICU: the default collation will do
        postgres_server.admin(f"CREATE DATABASE {name} OWNER {USER}")
    yield postgres_server.url(name)
    with contextlib.suppress(Exception):  # the server may be down if the test failed mid-way
        postgres_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def stopped(server: PostgresServer) -> Iterator[None]:
    """The session's server stopped for the block, started again after it (whatever happens,
    unless the test started it again itself)."""
    server.stop()
    try:
        yield
    finally:
        with contextlib.suppress(RuntimeError):  # started already by the test
            server.start()
