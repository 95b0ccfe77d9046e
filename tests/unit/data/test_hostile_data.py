"""Hostile data, files, settings and models: each refused in one line with its exit code,
nothing half-written, and no computed trial lost (issue 11, the data side)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.helpers import as_unprivileged, expect_error, invoke, snapshot
from ticketeval.data import cache
from ticketeval.data.demo import demo_event_log
from ticketeval.errors import ExitCode
from ticketeval.settings import MAX_SEED

DEMO_EVENTS = 2_000  # the size of conftest's demo cache


def trials(data_dir: Path) -> list[dict]:
    """The summaries the history holds."""
    path = data_dir / "history.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as connection:
        return [json.loads(row[0]) for row in connection.execute("SELECT summary FROM trials")]


@pytest.fixture
def log_csv(tmp_path: Path) -> Path:
    """A local event log (the demo's bytes, as if it were a real file someone has)."""
    path = tmp_path / "log.csv"
    path.write_bytes(demo_event_log(DEMO_EVENTS, seed=7))
    return path


@pytest.fixture
def real_cache(isolated_environment: Path, log_csv: Path) -> Path:
    """A data directory whose real-data cache was fetched from `log_csv`."""
    cache.fetch(str(log_csv), data_dir=isolated_environment)
    return isolated_environment


# --- seeds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (("evaluate", "--source", "demo", "--seed", "-1"), {}, "--seed -1 is out of range"),
        (
            ("evaluate", "--source", "demo", "--seed", str(2**63)),
            {},
            f"--seed {2**63} is out of range",
        ),
        (("fetch", "--source", "demo", "--seed", "-1"), {}, "--seed -1 is out of range"),
        (("evaluate", "--source", "demo"), {"TICKETEVAL_SEED": "-3"}, "TICKETEVAL_SEED"),
        (("evaluate", "--source", "demo"), {"TICKETEVAL_SEED": str(2**64)}, "TICKETEVAL_SEED"),
    ],
)
def test_a_seed_out_of_range_is_refused_before_anything_is_computed(
    data_dir: Path, args: tuple[str, ...], env: dict[str, str], fragment: str
) -> None:
    before = snapshot(data_dir)
    expect_error(invoke(*args, env=env), ExitCode.USAGE, fragment, after_notes=True)
    assert snapshot(data_dir) == before
    assert trials(data_dir) == []


def test_the_largest_seed_is_scored_and_recorded(data_dir: Path) -> None:
    largest = 2**63 - 1
    assert largest == MAX_SEED  # the README's range
    result = invoke("evaluate", "--source", "demo", "--batch-size", "50", "--seed", str(largest))
    assert result.exit_code == 0, result.output
    [recorded] = trials(data_dir)
    assert recorded["seed"] == largest


# --- files, directories and settings -------------------------------------------------------------


def test_a_data_directory_that_is_a_file_is_a_bad_setting(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("x")
    for command in (("fetch", "--source", "demo"), ("evaluate", "--source", "demo"), ("history",)):
        result = invoke(*command, env={"TICKETEVAL_DATA_DIR": str(not_a_directory)})
        expect_error(
            result, ExitCode.USAGE, "TICKETEVAL_DATA_DIR", "is not a directory", after_notes=True
        )
    assert not_a_directory.read_text() == "x"


def test_a_data_directory_below_a_file_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = invoke("fetch", "--source", "demo", "--data-dir", str(blocker / "data"))
    expect_error(
        result,
        ExitCode.USAGE,
        "cannot write",
        "--data-dir or TICKETEVAL_DATA_DIR",
        after_notes=True,
    )


def fetch_demo_into(data_dir: str) -> tuple[int, str, str, str]:
    """`fetch --source demo --force` into `data_dir`, from the directory above it."""
    os.chdir(Path(data_dir).parent)  # the test's own working directory is private to its user
    result = invoke("fetch", "--source", "demo", "--force", env={"TICKETEVAL_DATA_DIR": data_dir})
    return result.exit_code, result.stdout, result.stderr, repr(result.exception)


def test_a_read_only_data_directory_is_named_and_its_cache_kept(demo_cache: Path) -> None:
    base = Path(tempfile.mkdtemp())  # not tmp_path: pytest's are private to their user
    try:
        base.chmod(0o755)
        data_dir = base / "data"
        shutil.copytree(demo_cache, data_dir)
        before = snapshot(data_dir)
        data_dir.chmod(0o555)
        # As nobody, the interpreter's own files may be unreadable (a Python under /root):
        # what the command imports, on success and on error, is imported here first.
        assert fetch_demo_into(str(base / "scratch"))[0] == 0
        expect_error(invoke("fetch", "--source", str(base / "missing.csv")), ExitCode.DATA)
        code, stdout, stderr, exception = as_unprivileged(fetch_demo_into, str(data_dir))
        assert exception in ("None", "SystemExit(2)"), exception
        line = expect_error(subprocess.CompletedProcess([], code, stdout, stderr), ExitCode.USAGE)
        for fragment in ("cannot write", str(data_dir), "Permission denied"):
            assert fragment in line, (fragment, line)
        assert snapshot(data_dir) == before
    finally:
        data_dir.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_a_data_directory_name_too_long_is_a_bad_setting(tmp_path: Path) -> None:
    too_long = tmp_path / ("x" * 300) / "data"
    for command in (("fetch", "--source", "demo"), ("evaluate", "--source", "demo")):
        result = invoke(*command, env={"TICKETEVAL_DATA_DIR": str(too_long)})
        expect_error(
            result, ExitCode.USAGE, "TICKETEVAL_DATA_DIR", "File name too long", after_notes=True
        )


def test_a_dotenv_with_binary_bytes_is_named(data_dir: Path, tmp_path: Path) -> None:
    # The autouse fixture made tmp_path the working directory, where .env is read.
    (tmp_path / ".env").write_bytes(b"TICKETEVAL_BATCH_SIZE=10\n\xff\xfe\x00garbage\n")
    expect_error(
        invoke("evaluate", "--source", "demo"),
        ExitCode.USAGE,
        ".env in",
        "not UTF-8",
        after_notes=True,
    )


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_a_timeout_that_is_not_a_finite_number_is_refused(data_dir: Path, value: str) -> None:
    result = invoke("fetch", "--source", "demo", env={"TICKETEVAL_TIMEOUT": value})
    expect_error(result, ExitCode.USAGE, "TICKETEVAL_TIMEOUT", after_notes=True)


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a device"), (".", "a directory")])
def test_fetch_refuses_what_is_not_a_regular_file(data_dir: Path, path: str, kind: str) -> None:
    before = snapshot(data_dir)
    expect_error(invoke("fetch", "--source", path), ExitCode.DATA, f"is {kind}", after_notes=True)
    assert snapshot(data_dir) == before


# --- data ----------------------------------------------------------------------------------------


def test_a_header_with_a_column_twice_is_refused(real_cache: Path, tmp_path: Path) -> None:
    header, rest = demo_event_log(100).split(b"\n", 1)
    doubled = tmp_path / "doubled.csv"
    doubled.write_bytes(header.replace(b'"knowledge"', b'"priority"') + b"\n" + rest)
    before = snapshot(real_cache)
    result = invoke("fetch", "--source", str(doubled))
    expect_error(result, ExitCode.DATA, "doubled.csv", "priority more than once", after_notes=True)
    assert snapshot(real_cache) == before


def corrupt_pages(path: Path, *, checksums: bool) -> None:
    """Overwrite bytes in the middle of a column's data pages, as a bad disk would; the footer
    (schema, provenance) stays intact, so only reading the data finds it."""
    table = pq.read_table(path)
    pq.write_table(table, path, write_page_checksum=checksums)  # metadata kept
    metadata = pq.ParquetFile(path).metadata
    column = metadata.row_group(0).column(table.schema.get_field_index("sys_updated_at"))
    chunk_start = column.dictionary_page_offset or column.data_page_offset
    middle = (column.data_page_offset + chunk_start + column.total_compressed_size) // 2
    data = bytearray(path.read_bytes())
    data[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    assert pq.ParquetFile(path).metadata.num_rows == table.num_rows  # the footer still reads


@pytest.mark.parametrize("checksums", [False, True], ids=["snappy-error", "page-checksum"])
def test_a_cache_with_corrupt_pages_is_reported_and_not_reused(
    real_cache: Path, log_csv: Path, checksums: bool
) -> None:
    corrupt_pages(cache.cache_path(real_cache), checksums=checksums)
    result = invoke("evaluate", "--batch-size", str(DEMO_EVENTS), "--seed", "1")
    expect_error(
        result, ExitCode.DATA, "cannot be read", "run `ticketeval fetch --force`", after_notes=True
    )
    assert trials(real_cache) == []
    # The same source again: the broken cache is replaced, not "reused".
    fetched = invoke("fetch", "--source", str(log_csv), "--json")
    assert fetched.exit_code == 0, fetched.output
    assert json.loads(fetched.stdout)["reused"] is False
    again = invoke("evaluate", "--batch-size", str(DEMO_EVENTS), "--seed", "1", "--json")
    assert again.exit_code == 0, again.output
    assert len(trials(real_cache)) == 1


def test_a_garbage_cache_is_unreadable_not_missing(isolated_environment: Path) -> None:
    isolated_environment.mkdir()
    garbage = cache.cache_path(isolated_environment)
    garbage.write_bytes(b"not parquet at all" * 100)
    # No download is tried (it would fail with exit 4 offline, or replace the file).
    for command in (("evaluate",), ("run-local",)):
        expect_error(
            invoke(*command),
            ExitCode.DATA,
            "events.parquet cannot be read",
            "--force",
            after_notes=True,
        )
    assert garbage.read_bytes() == b"not parquet at all" * 100


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_zip_of_several_csvs_is_read_by_its_columns(isolated_environment: Path) -> None:
    log = demo_event_log(300, seed=2)
    source = zip_of(
        isolated_environment.parent / "export.zip",
        {"a_readme.csv": b"field,meaning\nnumber,the incident\n", "tickets/2016.csv": log},
    )
    result = invoke("fetch", "--source", str(source), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 300


@pytest.mark.parametrize(
    ("members", "fragments"),
    [
        (
            {"one.csv": demo_event_log(50, seed=1), "two.csv": demo_event_log(60, seed=2)},
            ("several CSV files with the event log's columns (one.csv, two.csv)",),
        ),
        (
            {"x.csv": b"a,b\n1,2\n", "y.csv": b"c\n3\n"},
            ("none has the event log's columns (x.csv, y.csv)",),
        ),
    ],
)
def test_an_ambiguous_zip_is_refused_naming_its_csvs(
    real_cache: Path, tmp_path: Path, members: dict[str, bytes], fragments: tuple[str, ...]
) -> None:
    before = snapshot(real_cache)
    source = zip_of(tmp_path / "many.zip", members)
    expect_error(
        invoke("fetch", "--source", str(source)), ExitCode.DATA, *fragments, after_notes=True
    )
    assert snapshot(real_cache) == before


def test_a_batch_with_no_scorable_row_fails_the_mae_limit_and_is_kept(
    isolated_environment: Path, tmp_path: Path
) -> None:
    header, *rows = demo_event_log(200).decode().splitlines()
    closed = header.split(",").index('"closed_at"')
    unclosed = [header] + [
        ",".join("?" if i == closed else cell for i, cell in enumerate(row.split(",")))
        for row in rows
    ]
    assert all(len(row.split(",")) == len(header.split(",")) for row in unclosed)
    source = tmp_path / "open.csv"
    source.write_text("\n".join(unclosed) + "\n")
    result = invoke(
        "evaluate", "--source", str(source), "--batch-size", "200", "--fail-if-mae-above", "1"
    )
    expect_error(
        result, ExitCode.MAE_ABOVE_LIMIT, "no row of the batch could be scored", after_notes=True
    )
    [recorded] = trials(isolated_environment)  # the trial is still recorded
    assert recorded["data"]["num_scored"] == 0 and recorded["data"]["metrics"]["MAE"] is None


# --- demo data kept apart ------------------------------------------------------------------------


def test_demo_data_never_replaces_the_real_cache(real_cache: Path, log_csv: Path) -> None:
    real = cache.cache_path(real_cache).read_bytes()
    demo = invoke("evaluate", "--source", "demo", "--batch-size", "100", "--json")
    assert demo.exit_code == 0, demo.output
    assert json.loads(demo.stdout)["source"]["name"] == "demo"
    assert "demo data is synthetic" in demo.stderr
    assert cache.cache_path(real_cache).read_bytes() == real
    nightly = invoke("evaluate", "--batch-size", "100", "--json")
    assert nightly.exit_code == 0, nightly.output
    assert json.loads(nightly.stdout)["source"]["name"] == str(log_csv.resolve())
    assert "demo" not in nightly.stderr


def test_only_demo_data_is_not_used_for_a_plain_evaluate(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo cache alone: a plain evaluate goes for the real data (here, an unreachable URL).
    cache.cache_path(data_dir).unlink()
    assert cache.cache_path(data_dir, demo=True).exists()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/x.zip"
        result = invoke("evaluate", env={"TICKETEVAL_DATA_URL": url})
    expect_error(result, ExitCode.NETWORK, "connection refused", after_notes=True)
    assert trials(data_dir) == []


def test_a_moved_data_directory_reports_where_the_cache_is_now(
    real_cache: Path, log_csv: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "moved"
    real_cache.rename(moved)
    result = invoke("fetch", "--source", str(log_csv), "--data-dir", str(moved), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["reused"] is True
    assert info["path"] == str(moved / "events.parquet")


# --- models --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "fragment"),
    [
        ('"priority"', "columns attribute is str 'priority', not a tuple"),
        ('("priority", "urgencyy")', "names 'urgencyy', which the event log lacks"),
    ],
)
def test_a_bad_columns_attribute_is_a_model_error(
    data_dir: Path, model_dir: Path, columns: str, fragment: str
) -> None:
    module = f"cols_{abs(hash(columns))}"
    (model_dir / f"{module}.py").write_text(
        f"def model(batch):\n    return [1.0] * len(batch)\nmodel.columns = {columns}\n"
    )
    for command in ("evaluate", "run-local"):
        result = invoke(command, "--source", "demo", "--model", f"{module}:model")
        expect_error(result, ExitCode.MODEL, f"model '{module}:model'", fragment, after_notes=True)
    assert trials(data_dir) == []


def test_a_model_calling_sys_exit_is_a_model_error(data_dir: Path, model_dir: Path) -> None:
    (model_dir / "quitter.py").write_text("import sys\n\ndef model(batch):\n    sys.exit(3)\n")
    result = invoke("evaluate", "--source", "demo", "--model", "quitter:model")
    expect_error(
        result, ExitCode.MODEL, "model 'quitter:model' called sys.exit(3)", after_notes=True
    )
    assert trials(data_dir) == []


# --- downloads -----------------------------------------------------------------------------------


def test_a_refused_connection_is_not_called_a_timeout(isolated_environment: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/x.zip"
        line = expect_error(
            invoke("fetch", "--url", url), ExitCode.NETWORK, "connection refused", after_notes=True
        )
    assert "timed out" not in line


def test_a_name_that_does_not_resolve_is_said_so(
    isolated_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "*")
    url = "http://no-such-host.invalid/x.zip"  # .invalid never resolves (RFC 6761)
    line = expect_error(
        invoke("fetch", "--url", url), ExitCode.NETWORK, "does not resolve", after_notes=True
    )
    assert "timed out" not in line


@pytest.mark.parametrize(
    ("url", "fragment"), [("not-a-url", "'not-a-url' is not an http(s) URL"), ("", "is empty")]
)
def test_a_bad_url_option_is_a_usage_error(real_cache: Path, url: str, fragment: str) -> None:
    before = snapshot(real_cache)
    expect_error(
        invoke("fetch", "--url", url, "--force"),
        ExitCode.USAGE,
        "--url",
        fragment,
        after_notes=True,
    )
    assert snapshot(real_cache) == before


class GzipServer:
    """A real HTTP server sending one body with Content-Encoding: gzip (as some CDNs do)."""

    def __init__(self, body: bytes) -> None:
        payload = gzip.compress(body)

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # no delayed-ACK wait between headers and body

            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # shutdown() waits for serve_forever's next poll (0.5 s by default): keep it short.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/log.zip"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def gzip_url() -> Iterator[str]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("incident_event_log.csv", demo_event_log(500, seed=4))
    with GzipServer(buffer.getvalue()) as url:
        yield url


def test_a_gzip_encoded_download_is_counted_on_the_wire(
    isolated_environment: Path, gzip_url: str
) -> None:
    result = invoke("fetch", "--url", gzip_url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 500


# --- settings only where they are used -----------------------------------------------------------


def test_an_unrelated_base_url_does_not_stop_the_pipeline(data_dir: Path) -> None:
    env = {"BASE_URL": "/api"}
    for command in (
        ("fetch", "--source", "demo"),
        ("evaluate", "--source", "demo", "--batch-size", "50"),
        ("history",),
    ):
        result = invoke(*command, env=env)
        assert result.exit_code == 0, (command, result.output)
    # Where it is used, it is still checked before any network call.
    result = invoke("describe-sizes", env={**env, "SATURN_TOKEN": "t"})
    expect_error(result, ExitCode.USAGE, "BASE_URL: '/api' is not an http(s) URL", after_notes=True)


# --- the summary ---------------------------------------------------------------------------------


def test_per_priority_counts_say_events_and_scored_rows_apart(
    isolated_environment: Path, tmp_path: Path
) -> None:
    header, *rows = demo_event_log(300, seed=5).decode().splitlines()
    closed = header.split(",").index('"closed_at"')
    # Every third event loses its close date: counted in num_obs, not in num_scored.
    rows = [
        ",".join("?" if i == closed and n % 3 == 0 else c for i, c in enumerate(row.split(",")))
        for n, row in enumerate(rows)
    ]
    source = tmp_path / "partly.csv"
    source.write_text("\n".join([header, *rows]) + "\n")
    result = invoke("evaluate", "--source", str(source), "--batch-size", "300", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    groups = data["by_priority"].values()
    assert sum(group["num_obs"] for group in groups) == data["num_obs"] == 300
    assert sum(group["num_scored"] for group in groups) == data["num_scored"] == 200
    assert data["num_dropped"] == 100
