"""Bad and re-exported data through `fetch --source FILE`, and the parser's properties."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.helpers import (
    csv_bytes,
    csv_rows,
    expect_error,
    invoke,
    snapshot,
    zip_of,
)
from ticketeval.data import demo, parsing
from ticketeval.errors import DataError, ExitCode


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


BASE_ROWS = csv_rows(demo.demo_event_log(8, seed=11))


HEADER = BASE_ROWS[0]


PROPERTY_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
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
            # A NUL makes the whole file binary data, refused before any column is read.
            binary = "\x00" in value and "holds binary data" in str(error)
            assert repr(column) in str(error) or "not a readable CSV" in str(error) or binary
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
