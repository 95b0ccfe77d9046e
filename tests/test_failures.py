"""Reliability: bad data, re-exported data, bad options and settings, kill -9, Ctrl-C, a dead
Dask worker, and overlapping runs, with real files and real processes.

Every failing command must exit with its documented code (README, errors.ExitCode) and print
one line on stderr, never a traceback, and change nothing it was not asked to change. The many
bad inputs run in-process (CliRunner); the installed executable runs where a process is the
point: one test per exit code, kill -9, Ctrl-C, a killed worker and overlapping runs.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketeval.data import cache, demo, parsing
from ticketeval.errors import DataError, ExitCode
from ticketeval.history import store as history
from ticketeval.settings import load_settings

from .conftest import (
    DEMO_ROWS,
    assert_no_process_left,
    csv_bytes,
    csv_rows,
    expect_error,
    invoke,
    run_ticketeval,
    snapshot,
    start_ticketeval,
    ticketeval_executable,
    zip_of,
)

__all__ = ["expect_error", "snapshot"]  # other test modules import them from here too

# --- Helpers -----------------------------------------------------------------------------------


def exited_within(process: subprocess.Popen[str] | subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait up to `seconds` for the process to exit (a polling interval, not a synchronisation)."""
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


class StderrLines:
    """Read a child's stderr on a thread, so the test can wait for a given line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: io.TextIOBase) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 180) -> bool:
        """True once a line containing `text` arrived; False if stderr closed first."""
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                return False
            self.lines.append(line)
            if text in line:
                return True

    def rest(self) -> list[str]:
        self._thread.join(timeout=120)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return [line.rstrip("\n") for line in self.lines]


@pytest.fixture(scope="module")
def demo_csv() -> bytes:
    return demo.demo_event_log(DEMO_ROWS, seed=3)


# --- Bad data through `fetch --source FILE` ----------------------------------------------------


def _without_columns(data: bytes, names: set[str]) -> bytes:
    rows = csv_rows(data)
    keep = [i for i, name in enumerate(rows[0]) if name not in names]
    return csv_bytes([[row[i] for i in keep] for row in rows])


def _with_value(data: bytes, column: str, value: str, row: int = 5) -> bytes:
    rows = csv_rows(data)
    rows[row][rows[0].index(column)] = value
    return csv_bytes(rows)


def _truncated_zip(data: bytes) -> bytes:
    whole = zip_of({parsing.CSV_NAME: data})
    return whole[: len(whole) // 2]


def _zip_with_garbled_member(data: bytes) -> bytes:
    whole = bytearray(zip_of({parsing.CSV_NAME: data}))
    whole[40:4040] = b"x" * 4000  # the member's header and data; the directory is intact
    return bytes(whole)


# name, file contents from the demo CSV, what the one-line message must name
BAD_FILES: list[tuple[str, Callable[[bytes], bytes], tuple[str, ...]]] = [
    ("truncated.zip", _truncated_zip, ("truncated.zip is not a valid zip file",)),
    ("garbled.zip", _zip_with_garbled_member, ("garbled.zip is corrupt", parsing.CSV_NAME)),
    ("empty.zip", lambda data: b"", ("empty.zip is not a valid zip file",)),
    (
        "error-page.zip",
        lambda data: b"<!DOCTYPE html>\n<html><body><h1>503 Service Unavailable</h1></body></html>",
        ("error-page.zip is not a valid zip file", "HTML page"),
    ),
    (
        "no-csv.zip",
        lambda data: zip_of({"README.txt": b"the data is elsewhere", "x.json": b"{}"}),
        ("no-csv.zip holds no CSV file", parsing.CSV_NAME),
    ),
    (
        "columns.csv",
        lambda data: _without_columns(data, {"priority", "closed_at"}),
        ("columns.csv lacks the required column(s) priority, closed_at",),
    ),
    (
        "bad-date.csv",
        lambda data: _with_value(data, "sys_updated_at", "31/13/2016 25:61"),
        ("bad-date.csv", "'sys_updated_at'", "'31/13/2016 25:61'", "%d/%m/%Y %H:%M"),
    ),
    ("empty.csv", lambda data: b"", ("empty.csv is empty",)),
    (
        "header-only.csv",
        lambda data: data.split(b"\n", 1)[0] + b"\n",
        ("header-only.csv has a header but no rows",),
    ),
    (
        "bad-bool.csv",
        lambda data: _with_value(data, "made_sla", "yes"),
        ("'made_sla'", "'yes'", "true/false"),
    ),
    (
        "bad-count.csv",
        lambda data: _with_value(data, "reopen_count", "two"),
        ("'reopen_count'", "'two'", "whole numbers"),
    ),
    (
        "huge-count.csv",
        lambda data: _with_value(data, "sys_mod_count", "99999999999999999999"),
        ("'sys_mod_count'", "99999999999999999999"),
    ),
    (
        "impossible-date.csv",
        lambda data: _with_value(data, "closed_at", "31/2/2016 10:00"),
        ("'closed_at'", "'31/2/2016 10:00'"),
    ),
    (
        "two-digit-year.csv",
        lambda data: _with_value(data, "opened_at", "29/2/16 10:00"),
        ("'opened_at'", "'29/2/16 10:00'"),
    ),
    (
        "ragged.csv",
        lambda data: data + b'"INC9","too","few"\n',
        ("ragged.csv is not a readable CSV",),
    ),
    (
        "latin1.csv",
        lambda data: _with_value(data, "caller_id", "Caller Jos\u00e9").replace(
            "Jos\u00e9".encode(), "Jos\u00e9".encode("latin-1")
        ),
        ("latin1.csv is not a readable CSV",),
    ),
]


@pytest.mark.parametrize(
    ("name", "make", "fragments"), BAD_FILES, ids=[name for name, _, _ in BAD_FILES]
)
def test_bad_data_is_refused_with_exit_3_and_changes_nothing(
    data_dir: Path,
    tmp_path: Path,
    demo_csv: bytes,
    name: str,
    make: Callable[[bytes], bytes],
    fragments: tuple[str, ...],
) -> None:
    source = tmp_path / name
    source.write_bytes(make(demo_csv))
    before = snapshot(data_dir)
    expect_error(invoke("fetch", "--source", str(source)), ExitCode.DATA, *fragments)
    assert snapshot(data_dir) == before
    # `evaluate --source` goes through the same checks.
    result = invoke("evaluate", "--batch-size", "10", "--source", str(source))
    expect_error(result, ExitCode.DATA, *fragments)
    assert snapshot(data_dir) == before


def test_a_missing_source_file_is_a_data_error(data_dir: Path, tmp_path: Path) -> None:
    before = snapshot(data_dir)
    result = invoke("fetch", "--source", str(tmp_path / "nowhere.zip"))
    expect_error(result, ExitCode.DATA, "nowhere.zip does not exist")
    assert snapshot(data_dir) == before


def test_evaluate_with_nothing_cached_says_what_to_do(isolated_environment: Path) -> None:
    result = invoke(
        "evaluate", "--batch-size", "10", env={"TICKETEVAL_DATA_URL": "http://127.0.0.1:9/x.zip"}
    )
    expect_error(result, ExitCode.NETWORK, "--source demo", "No data was changed")
    assert not isolated_environment.exists() or not any(isolated_environment.iterdir())


# --- Re-exported data: the same events in other spellings --------------------------------------


def _dates(data: bytes, separator: str) -> bytes:
    """Every date zero-padded, day first, with `separator`: 29/2/2016 1:16 -> 29/02/2016 01:16."""
    rows = csv_rows(data)
    pattern = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2})$")
    for row in rows[1:]:
        for i, value in enumerate(row):
            match = pattern.match(value)
            if match:
                day, month, year, hour, minute = match.groups()
                date = separator.join((f"{int(day):02d}", f"{int(month):02d}", year))
                row[i] = f"{date} {int(hour):02d}:{minute}"
    return csv_bytes(rows)


def _upper_booleans(data: bytes) -> bytes:
    rows = csv_rows(data)
    spelled = {"true": "TRUE", "false": "FALSE"}
    return csv_bytes([rows[0], *([spelled.get(v, v) for v in row] for row in rows[1:])])


REEXPORTS: dict[str, tuple[Callable[[bytes], bytes], bytes]] = {
    # name: (rewrite, a pattern the rewritten file must contain)
    "TRUE-FALSE": (_upper_booleans, rb"(?s),TRUE,.*,FALSE,"),
    "padded-slash-dates": (lambda data: _dates(data, "/"), rb",0\d/0\d/\d{4} 0\d:\d\d,"),
    "padded-dash-dates": (lambda data: _dates(data, "-"), rb",0\d-0\d-\d{4} 0\d:\d\d,"),
    "CRLF": (lambda data: data.replace(b"\n", b"\r\n"), rb"\r\n"),
    "BOM": (lambda data: b"\xef\xbb\xbf" + data, rb'^\xef\xbb\xbf"number",'),
    "all-of-them": (
        lambda data: b"\xef\xbb\xbf" + _upper_booleans(_dates(data, "-")).replace(b"\n", b"\r\n"),
        rb"(?s)^\xef\xbb\xbfnumber,.*,FALSE,.*\d\d-0\d-\d{4} .*\r\n",
    ),
}


def _trial_data(data_dir: Path, source: Path) -> dict[str, object]:
    fetched = invoke("fetch", "--source", str(source), "--data-dir", str(data_dir))
    assert fetched.exit_code == 0, fetched.output
    result = invoke(
        "evaluate", "--batch-size", "500", "--seed", "3", "--json", "--data-dir", str(data_dir)
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["data"]


@pytest.fixture(scope="module")
def original_trial(demo_csv: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("original")
    source = directory / "original.csv"
    source.write_bytes(demo_csv)
    return _trial_data(directory / "data", source)


@pytest.mark.parametrize("name", list(REEXPORTS))
def test_reexported_data_gives_exactly_the_same_metrics(
    name: str, demo_csv: bytes, original_trial: dict[str, object], tmp_path: Path
) -> None:
    rewrite, expected = REEXPORTS[name]
    data = rewrite(demo_csv)
    assert data != demo_csv and re.search(expected, data)  # the rewrite did rewrite
    source = tmp_path / f"{name}.csv"
    source.write_bytes(data)
    trial = _trial_data(tmp_path / "data", source)
    assert trial == original_trial


def test_an_unknown_date_format_is_refused_naming_the_expected_ones(
    data_dir: Path, demo_csv: bytes, tmp_path: Path
) -> None:
    rows = csv_rows(_dates(demo_csv, "/"))
    for row in rows[1:]:
        for i, value in enumerate(row):
            match = re.match(r"^(\d{2})/(\d{2})/(\d{4}) (\d{2}:\d{2})$", value)
            if match:
                row[i] = f"{match[3]}-{match[2]}-{match[1]}T{match[4]}"  # ISO 8601
    source = tmp_path / "iso.csv"
    source.write_bytes(csv_bytes(rows))
    before = snapshot(data_dir)
    line = expect_error(
        invoke("fetch", "--source", str(source)),
        ExitCode.DATA,
        "iso.csv",
        "'opened_at'",
        "T",
        "expected day-first dates",
    )
    for date_format in parsing.DATE_FORMATS:
        assert repr(date_format) in line
    assert snapshot(data_dir) == before


# --- Options and settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "code", "fragments"),
    [
        (["evaluate", "--batch-size", "0"], ExitCode.USAGE, ("at least 1, not 0",)),
        (["evaluate", "--batch-size", "-5"], ExitCode.USAGE, ("at least 1, not -5",)),
        (
            ["evaluate", "--batch-size", "5000"],
            ExitCode.USAGE,
            ("batch size 5,000", f"the {DEMO_ROWS:,} events in the data"),
        ),
        (["run-local", "--batch-size", "5000"], ExitCode.USAGE, ("5,000", f"{DEMO_ROWS:,}")),
        (["evaluate", "--model", "nosuch"], ExitCode.MODEL, ("'nosuch'", "heuristic")),
        (
            ["evaluate", "--model", "no_such_module:predict"],
            ExitCode.MODEL,
            ("'no_such_module:predict' cannot be imported", "No module named"),
        ),
        (["run-local", "--model", "nosuch"], ExitCode.MODEL, ("'nosuch'",)),
        (
            ["run-local", "--address", "nonsense"],
            ExitCode.USAGE,
            ("--address 'nonsense'", "tcp://host:8786"),
        ),
        (
            ["run-local", "--address", "tcp://127.0.0.1:1"],
            ExitCode.NETWORK,
            ("cannot reach the Dask scheduler at tcp://127.0.0.1:1",),
        ),
        (["run-local", "--workers", "0"], ExitCode.USAGE, ("--workers must be at least 1",)),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_options_are_refused_in_one_line(
    data_dir: Path, arguments: list[str], code: ExitCode, fragments: tuple[str, ...]
) -> None:
    before = snapshot(data_dir)
    expect_error(invoke(*arguments), code, *fragments)
    assert snapshot(data_dir) == before  # no trial recorded, no cache touched


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("TICKETEVAL_BATCH_SIZE", "abc", "valid integer"),
        ("TICKETEVAL_BATCH_SIZE", "0", "greater than 0"),
        ("TICKETEVAL_TIMEOUT", "soon", "valid number"),
        ("TICKETEVAL_DATA_URL", "not-a-url", "'not-a-url' is not an http(s) URL"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(
    data_dir: Path, variable: str, value: str, fragment: str
) -> None:
    result = invoke("evaluate", env={variable: value})
    expect_error(result, ExitCode.USAGE, f"{variable}: ", fragment)


def test_a_bad_setting_in_dot_env_is_refused_too(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TICKETEVAL_BATCH_SIZE=abc\n")
    expect_error(invoke("evaluate"), ExitCode.USAGE, "TICKETEVAL_BATCH_SIZE")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("https://x.example/", "must not end with '/': use 'https://x.example'"),
        ("not-a-url", "'not-a-url' is not an http(s) URL"),
    ],
)
def test_describe_sizes_refuses_a_bad_base_url(value: str, fragment: str) -> None:
    result = invoke("describe-sizes", env={"BASE_URL": value, "SATURN_TOKEN": "t"})
    expect_error(result, ExitCode.USAGE, "BASE_URL: ", fragment)


def test_describe_sizes_with_nothing_set_names_the_missing_variable() -> None:
    expect_error(invoke("describe-sizes"), ExitCode.USAGE, "BASE_URL is not set")


def test_describe_sizes_without_a_token_names_it() -> None:
    result = invoke("describe-sizes", env={"BASE_URL": "https://x.example"})
    expect_error(result, ExitCode.USAGE, "SATURN_TOKEN is not set")


# --- Properties of the parser ------------------------------------------------------------------

BASE_ROWS = csv_rows(demo.demo_event_log(8, seed=11))
HEADER = BASE_ROWS[0]
PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
valid_moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 12, 31))


def spell(moment: datetime, separator: str, padded: bool, seconds: bool) -> str:
    day, month = (
        (f"{moment.day:02d}", f"{moment.month:02d}")
        if padded
        else (str(moment.day), str(moment.month))
    )
    clock = f"{moment.hour:02d}:{moment.minute:02d}" + (f":{moment.second:02d}" if seconds else "")
    return f"{day}{separator}{month}{separator}{moment.year} {clock}"


bad_dates = st.one_of(
    st.text(max_size=20),
    st.builds(
        lambda d, m, y, h, n: f"{d}/{m}/{y} {h}:{n}",
        st.integers(-5, 40),
        st.integers(-2, 14),
        st.integers(-10, 30000),
        st.integers(-1, 30),
        st.integers(-1, 70),
    ),
    valid_moments.map(lambda moment: moment.isoformat()),
)


def any_value(column: str) -> st.SearchStrategy[str]:
    """Anything a cell of `column` might hold: missing, well-formed, or garbage."""
    base = st.sampled_from([row[HEADER.index(column)] for row in BASE_ROWS[1:]])
    garbage = st.text(max_size=12)
    if column in parsing.DATE_COLUMNS:
        good = st.builds(spell, valid_moments, st.just("/"), st.booleans(), st.just(False))
        return st.one_of(st.just("?"), base, good, bad_dates)
    if column in parsing.BOOL_COLUMNS:
        spelled = st.sampled_from(["true", "false", "TRUE", "False", "tRuE"])
        return st.one_of(st.just("?"), spelled, garbage)
    if column in parsing.INT_COLUMNS:
        numbers = st.integers(-(10**25), 10**25).map(str)
        return st.one_of(st.just("?"), base, numbers, garbage)
    return st.one_of(st.just("?"), base, garbage)


event_rows = st.fixed_dictionaries({column: any_value(column) for column in HEADER})


@PROPERTY_SETTINGS
@given(rows=st.lists(event_rows, min_size=0, max_size=6))
def test_parse_returns_a_table_or_raises_data_error_only(rows: list[dict[str, str]]) -> None:
    data = csv_bytes([HEADER, *([row[column] for column in HEADER] for row in rows)])
    try:
        table = parsing.parse_event_log(data)
    except DataError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert isinstance(table, pa.Table)
    assert table.num_rows == len(rows) and table.column_names == list(parsing.COLUMNS)


@PROPERTY_SETTINGS
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                column: st.one_of(st.just("?"), st.sampled_from([r[i] for r in BASE_ROWS[1:]]))
                for i, column in enumerate(HEADER)
            }
        ),
        min_size=1,
        max_size=6,
    )
)
def test_question_marks_anywhere_become_missing_values(rows: list[dict[str, str]]) -> None:
    data = csv_bytes([HEADER, *([row[column] for column in HEADER] for row in rows)])
    table = parsing.parse_event_log(data)
    for column in parsing.COLUMNS:
        missing = [row[column] == "?" for row in rows]
        assert [value is None for value in table[column].to_pylist()] == missing, column


@PROPERTY_SETTINGS
@given(
    moments=st.lists(valid_moments.map(lambda m: m.replace(microsecond=0)), min_size=1, max_size=6),
    separator=st.sampled_from(["/", "-"]),
    padded=st.lists(st.booleans(), min_size=6, max_size=6),
    seconds=st.booleans(),
)
def test_valid_dates_in_every_accepted_spelling_read_back_exactly(
    moments: list[datetime], separator: str, padded: list[bool], seconds: bool
) -> None:
    rows = [list(BASE_ROWS[1]) for _ in moments]
    column = HEADER.index("sys_updated_at")
    for row, moment, pad in zip(rows, moments, padded, strict=False):
        row[column] = spell(moment, separator, pad, seconds)
    table = parsing.parse_event_log(csv_bytes([HEADER, *rows]))
    expected = [m if seconds else m.replace(second=0) for m in moments]
    assert table["sys_updated_at"].to_pylist() == expected


@PROPERTY_SETTINGS
@given(value=bad_dates, column=st.sampled_from(parsing.DATE_COLUMNS))
def test_a_bad_date_is_refused_naming_the_column_and_the_value(value: str, column: str) -> None:
    rows = [list(row) for row in BASE_ROWS]
    rows[2][HEADER.index(column)] = value
    try:
        table = parsing.parse_event_log(csv_bytes(rows))
    except DataError as error:
        if value.strip() not in parsing.MISSING_MARKERS:
            assert repr(column) in str(error) or "not a readable CSV" in str(error)
        return
    # Accepted: then it really was a date, and it reads back as the one written.
    read = table[column][1].as_py()
    if read is None:
        assert value in parsing.MISSING_MARKERS
        return
    numbers = [int(part) for part in re.findall(r"\d+", value)]
    assert numbers[:3] == [read.day, read.month, read.year], (value, read)


@pytest.mark.parametrize(
    "value", ["31/2/2016 10:00", "29/2/2017 10:00", "31/4/2016 10:00", "29/2/16 10:00"]
)
def test_dates_that_do_not_exist_are_refused(value: str) -> None:
    rows = [list(row) for row in BASE_ROWS]
    rows[3][HEADER.index("closed_at")] = value
    with pytest.raises(DataError, match=re.escape(repr(value))):
        parsing.parse_event_log(csv_bytes(rows))


# --- kill -9 in the middle of parsing -----------------------------------------------------------


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.csv"
    path.write_bytes(demo.demo_event_log(300_000, seed=9))
    return path


def test_sigkill_mid_parse_leaves_the_previous_cache(data_dir: Path, big_csv: Path) -> None:
    before = snapshot(data_dir)
    size = big_csv.stat().st_size
    process = subprocess.Popen(
        [ticketeval_executable(), "fetch", "--source", str(big_csv)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watched = psutil.Process(process.pid)
    parsing = False
    try:
        for _ in range(6000):  # bounded: at most ~2 minutes of polling
            if exited_within(process, 0.02):
                break  # it finished before we saw it parse: the assertion below fails
            with_children = watched.cpu_times()
            # Imported, the file read into memory, and busy: it is parsing the CSV.
            if with_children.user + with_children.system > 0.5 and watched.memory_info().rss > size:
                parsing = True
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert parsing and process.returncode == -signal.SIGKILL, process.returncode
    after = snapshot(data_dir)
    leftovers = sorted(set(after) - set(before))
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers
    assert {name: after[name] for name in before} == before
    info = cache.read_cache_info(data_dir)
    assert info is not None and info.rows == DEMO_ROWS and info.source == "demo"
    result = invoke("evaluate", "--batch-size", "100", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"]["rows"] == DEMO_ROWS


def test_temporary_files_a_killed_fetch_left_are_removed_later(data_dir: Path) -> None:
    # What kill -9 during a write leaves: a partial file under a hidden temporary name.
    old = data_dir / ".events.parquet.abandoned.tmp"
    old.write_bytes(b"PAR1 half a parquet file")
    fresh = data_dir / ".events.parquet.inflight.tmp"
    fresh.write_bytes(b"PAR1 being written right now")
    two_hours_ago = old.stat().st_mtime - 2 * 3600
    os.utime(old, (two_hours_ago, two_hours_ago))
    result = invoke("fetch", "--source", "demo", "--demo-events", "500")
    assert result.exit_code == 0, result.output
    assert not old.exists()  # abandoned long ago: removed
    assert fresh.exists()  # maybe another fetch's, still being written: left alone


# --- The installed executable: the exit codes no other process test gives -----------------------
# (0: test_cli; 1, 130 and the killed worker: below; 4: test_fetch; 5: test_flow; 6: test_saturn)


@pytest.mark.parametrize(
    ("arguments", "code", "fragments"),
    [
        (["evaluate", "--batch-size", "0"], ExitCode.USAGE, ("at least 1, not 0",)),
        (["fetch", "--source", "bad-date.csv"], ExitCode.DATA, ("'sys_updated_at'", "'31/13")),
        (
            ["evaluate", "--quiet", "--json", "--batch-size", "100", "--fail-if-mae-above", "1"],
            ExitCode.MAE_ABOVE_LIMIT,
            ("is above the limit of 1 s",),
        ),
    ],
    ids=["2-usage", "3-data", "10-mae-above-limit"],
)
def test_the_executable_exits_with_the_documented_code(
    data_dir: Path,
    tmp_path: Path,
    demo_csv: bytes,
    arguments: list[str],
    code: ExitCode,
    fragments: tuple[str, ...],
) -> None:
    (tmp_path / "bad-date.csv").write_bytes(
        _with_value(demo_csv, "sys_updated_at", "31/13/2016 25:61")
    )
    result = run_ticketeval(*arguments)
    expect_error(result, code, *fragments)
    recorded = history.read_trials(load_settings().history)
    if code == ExitCode.MAE_ABOVE_LIMIT:  # the trial is still recorded, and printed
        assert [row.id for row in recorded] == [json.loads(result.stdout)["id"]]
    else:
        assert recorded == [] and result.stdout == ""


# --- Ctrl-C and a dead worker during run-local -------------------------------------------------


@pytest.fixture
def restore_sigint() -> Callable[[], None]:
    def restore() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return restore


def test_ctrl_c_during_run_local_exits_130_and_stops_the_cluster(
    isolated_environment: Path, restore_sigint: Callable[[], None], process_marker: str
) -> None:
    process = start_ticketeval(
        ["run-local", "--batch-size", "200", "--source", "demo"], preexec_fn=restore_sigint
    )
    stderr = StderrLines(process)
    try:
        assert stderr.wait_for("Dask scheduler tcp://"), stderr.rest()
        assert stderr.lines[-1].strip().endswith("/status")  # the dashboard link
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    lines = stderr.rest()
    assert process.returncode == ExitCode.INTERRUPTED, lines
    assert not any("Traceback" in line for line in lines), lines
    after = lines[lines.index(next(x for x in lines if "Dask scheduler" in x)) + 1 :]
    assert after == ["Error: interrupted."], lines
    assert_no_process_left(process_marker)


STALLING_MODEL = """
import os
from pathlib import Path

import numpy as np
import time


def model(batch):
    # The first call marks itself and stalls until its worker is killed; the rerun goes on.
    started = Path(os.environ["STALL_DIR"]) / "started"
    if not started.exists():
        started.write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)
    return np.full(len(batch), 3600.0)
"""


def run_and_kill_the_worker_of_predict(
    tmp_path: Path, model_dir: Path, env: dict[str, str] | None = None
) -> tuple[int, str, list[str]]:
    """run-local with a model that stalls in `predict`; kill -9 the worker process running it
    (the pid the model wrote) once it is there. Returns the exit code, stdout, stderr lines."""
    (model_dir / "stall.py").write_text(STALLING_MODEL)
    started = tmp_path / "started"
    arguments = ["run-local", "--batch-size", "200", "--json", "--source", "demo"]
    process = start_ticketeval(
        [*arguments, "--model", "stall:model"], env={"STALL_DIR": str(tmp_path), **(env or {})}
    )
    try:
        for _ in range(6000):  # bounded: about two minutes of polling
            if (started.exists() and started.read_text()) or exited_within(process, 0.02):
                break
        assert started.exists(), process.communicate(timeout=300)
        psutil.Process(int(started.read_text())).kill()
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stdout, stderr.splitlines()


def test_a_worker_killed_during_a_task_is_survived_and_the_trial_recorded_once(
    isolated_environment: Path, tmp_path: Path, model_dir: Path, process_marker: str
) -> None:
    """The LocalCluster's nanny restarts the worker and Dask reruns the lost tasks (up to
    `distributed.scheduler.allowed-failures`, 3, deaths per task): the run succeeds."""
    code, stdout, lines = run_and_kill_the_worker_of_predict(tmp_path, model_dir)
    assert code == 0, lines
    assert not any("Traceback" in line or "Error" in line for line in lines), lines
    summary = json.loads(stdout)
    assert summary["data"]["num_obs"] == 200 and summary["model"] == "stall:model"
    recorded = history.read_trials(load_settings().history)
    assert [row.id for row in recorded] == [summary["id"]]
    assert_no_process_left(process_marker)


def test_a_task_whose_worker_dies_too_often_fails_with_exit_1_in_one_line(
    isolated_environment: Path, tmp_path: Path, model_dir: Path, process_marker: str
) -> None:
    """With no worker death allowed (Dask's own setting), the same kill fails the flow."""
    code, stdout, lines = run_and_kill_the_worker_of_predict(
        tmp_path, model_dir, env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    )
    assert code == ExitCode.FAILED, lines
    assert stdout == ""
    assert not any("Traceback" in line for line in lines), lines
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == [lines[-1]], lines
    assert "KilledWorker" in errors[0] and "'predict-" in errors[0]  # the task, by its key
    assert history.read_trials(load_settings().history) == []
    assert_no_process_left(process_marker)


# --- Overlapping runs --------------------------------------------------------------------------


def finish_all(processes: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    outcomes = []
    try:
        for process in processes:
            _, err = process.communicate(timeout=600)
            outcomes.append((process.returncode, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return outcomes


def test_overlapping_forced_fetches_leave_one_whole_cache(
    isolated_environment: Path, tmp_path: Path, process_marker: str
) -> None:
    """Two sources fetched with --force by overlapping processes: whichever rename comes last
    wins, and the cache is that source's whole file, never a mix or a torn write."""
    sources = {}
    for name, events, seed in (("a.csv", 1_500, 1), ("b.csv", 2_500, 2)):
        path = tmp_path / name
        path.write_bytes(demo.demo_event_log(events, seed=seed))
        alone = tmp_path / f"alone-{name}"  # what a fetch of this source alone caches
        cache.fetch(str(path), data_dir=alone)
        sources[str(path.resolve())] = pq.read_table(cache.cache_path(alone))
    processes = [
        start_ticketeval(["fetch", "--force", "--source", source])
        for _ in range(2)
        for source in sources
    ]
    outcomes = finish_all(processes)
    assert [code for code, _ in outcomes] == [0] * 4, outcomes
    info = cache.read_cache_info(isolated_environment)
    assert info is not None and info.source in sources
    table = pq.read_table(cache.cache_path(isolated_environment))
    assert table.equals(sources[info.source]) and info.rows == table.num_rows
    assert sorted(os.listdir(isolated_environment)) == ["events.parquet"]  # no temporary left
    assert_no_process_left(process_marker)


def test_overlapping_runs_all_succeed_and_each_lands_once(
    data_dir: Path, process_marker: str
) -> None:
    runs = [["evaluate", "--batch-size", "200"]] * 3 + [
        ["run-local", "--batch-size", "200", "--workers", "1"]
    ]
    outcomes = finish_all([start_ticketeval(arguments) for arguments in runs])
    assert [code for code, _ in outcomes] == [0] * 4, outcomes
    assert not any("Traceback" in err for _, err in outcomes)
    rows = history.read_trials(load_settings().history)
    assert len(rows) == 4 and len({row.id for row in rows}) == 4
    assert sorted(row.runner for row in rows) == ["evaluate"] * 3 + ["run-local"]
    assert_no_process_left(process_marker)
