"""The event log's schema and its CSV parser: text in, a typed Arrow table out."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ticketeval.errors import DataError

CSV_NAME = "incident_event_log.csv"

COLUMNS = (
    "number", "incident_state", "active", "reassignment_count", "reopen_count", "sys_mod_count",
    "made_sla", "caller_id", "opened_by", "opened_at", "sys_created_by", "sys_created_at",
    "sys_updated_by", "sys_updated_at", "contact_type", "location", "category", "subcategory",
    "u_symptom", "cmdb_ci", "impact", "urgency", "priority", "assignment_group", "assigned_to",
    "knowledge", "u_priority_confirmation", "notify", "problem_id", "rfc", "vendor", "caused_by",
    "closed_code", "resolved_by", "resolved_at", "closed_at",
)  # fmt: skip
DATE_COLUMNS = ("opened_at", "sys_created_at", "sys_updated_at", "resolved_at", "closed_at")
BOOL_COLUMNS = ("active", "made_sla", "knowledge", "u_priority_confirmation")
INT_COLUMNS = ("reassignment_count", "reopen_count", "sys_mod_count")
MISSING_MARKERS = ("?", "")
# Day-first, as UCI writes them ("29/2/2016 01:16"); the others are what spreadsheets and data
# portals re-export the same data as. %d and %m accept both padded and unpadded numbers.
DATE_FORMATS = ("%d/%m/%Y %H:%M", "%d-%m-%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d-%m-%Y %H:%M:%S")

PRIORITIES = ("1 - Critical", "2 - High", "3 - Moderate", "4 - Low")


def parse_event_log(csv: bytes | Path, *, name: str = CSV_NAME) -> pa.Table:
    """Parse the event log CSV into a typed Arrow table, vectorised.

    Dates become timestamps, `true`/`false` (any case) booleans, counts integers, and every
    other column a dictionary (pandas: categorical). `?` and empty cells are missing.
    """
    if not (csv.strip() if isinstance(csv, bytes) else csv.stat().st_size):
        # Refused before Arrow sees it: Arrow's reader, failing on an empty file, can leave a
        # thread behind that aborts the process at exit.
        raise DataError(f"{name} is empty: expected the incident event log CSV.")
    _refuse_binary(csv, name)
    source = pa.BufferReader(csv) if isinstance(csv, bytes) else str(csv)
    try:
        table = pacsv.read_csv(
            source,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(COLUMNS, pa.string()),
                null_values=list(MISSING_MARKERS),
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as error:
        # Printable only: a binary file's bytes must not reach the terminal.
        detail = "".join(c if c.isprintable() else "?" for c in str(error).splitlines()[0])
        if "Empty CSV file" in detail:
            raise DataError(f"{name} is empty: expected the incident event log CSV.") from None
        raise DataError(f"{name} is not a readable CSV ({detail}).") from None
    names = table.column_names
    repeated = [column for column in COLUMNS if names.count(column) > 1]
    if repeated:
        raise DataError(
            f"{name} has the column(s) {', '.join(repeated)} more than once in its header: "
            "keep one of each and fetch again."
        )
    missing = [column for column in COLUMNS if column not in names]
    if missing:
        raise DataError(
            f"{name} lacks the required column(s) {', '.join(missing)}: "
            "is this the UCI incident event log?"
        )
    if table.num_rows == 0:
        raise DataError(f"{name} has a header but no rows.")
    return pa.table({column: _convert(column, table[column], name) for column in COLUMNS})


def _refuse_binary(csv: bytes | Path, name: str) -> None:
    """A CSV is text: NUL bytes in its first 64 KiB mean a binary file (a Parquet file, an
    image, a disk image of zeros), said as such instead of Arrow's puzzling errors."""
    if isinstance(csv, bytes):
        head = csv[: 1 << 16]
    else:
        with open(csv, "rb") as stream:
            head = stream.read(1 << 16)
    if b"\0" in head:
        kind = " (a Parquet file)" if head.startswith(b"PAR1") else ""
        raise DataError(
            f"{name} is not a CSV: it holds binary data{kind}; give the incident event log's "
            ".csv or .zip."
        )


def _convert(column: str, values: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    if column in DATE_COLUMNS:
        return _parse_dates(column, values, name)
    if column in BOOL_COLUMNS:
        lowered = pc.utf8_lower(values)
        bad = pc.and_(
            pc.is_valid(lowered), pc.invert(pc.is_in(lowered, pa.array(["true", "false"])))
        )
        _refuse_bad_values(column, values, bad, name, "true/false")
        return pc.equal(lowered, "true")
    if column in INT_COLUMNS:
        try:
            return pc.cast(pc.utf8_trim_whitespace(values), pa.int64())
        except pa.ArrowInvalid as error:
            as_int = pc.match_substring_regex(values, r"^\s*-?\d+\s*$")
            _refuse_bad_values(column, values, pc.invert(as_int), name, "whole numbers")
            # Whole numbers all, but one does not fit in 64 bits; Arrow's message names it.
            detail = str(error).splitlines()[0]
            raise DataError(
                f"{name}: column {column!r} has a number too large to read ({detail}); "
                "expected whole numbers."
            ) from None
    return pc.dictionary_encode(values)


def _parse_dates(column: str, values: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    first_attempt = None
    for date_format in DATE_FORMATS:
        parsed = pc.strptime(values, format=date_format, unit="s", error_is_null=True)
        if parsed.null_count == values.null_count:
            _refuse_impossible_dates(column, values, parsed, name)
            return parsed
        first_attempt = first_attempt if first_attempt is not None else parsed
    assert first_attempt is not None
    bad = pc.and_(pc.is_null(first_attempt), pc.is_valid(values))
    formats = ", ".join(repr(f) for f in DATE_FORMATS)
    _refuse_bad_values(
        column, values, bad, name, f"day-first dates like '29/2/2016 01:16' ({formats})"
    )
    raise AssertionError("unreachable")  # pragma: no cover


def _refuse_impossible_dates(
    column: str, values: pa.ChunkedArray, parsed: pa.ChunkedArray, name: str
) -> None:
    """Arrow's strptime rolls '31/2/2016' over into March and reads '29/2/16' as the year 16:
    refuse a date whose written day, month and four-digit year are not the ones read.

    Only dates read as the 1st to 3rd of a month (where a roll-over lands) or before the year
    1000 are checked against their text, which keeps this cheap.
    """
    suspect = pc.fill_null(
        pc.or_(pc.less_equal(pc.day(parsed), 3), pc.less(pc.year(parsed), 1000)), False
    )
    if not pc.any(suspect).as_py():
        return
    values, parsed = pc.filter(values, suspect), pc.filter(parsed, suspect)
    written = pc.extract_regex(
        values, r"^\s*(?P<day>\d{1,2})[/-](?P<month>\d{1,2})[/-](?P<year>\d{4})\s"
    )
    same = None
    for part, read in (("day", pc.day), ("month", pc.month), ("year", pc.year)):
        equal = pc.equal(pc.cast(pc.struct_field(written, part), pa.int64()), read(parsed))
        same = equal if same is None else pc.and_(same, equal)
    bad = pc.invert(pc.fill_null(same, False))
    expected = "real dates, day first, with a four-digit year, like '29/2/2016 01:16'"
    _refuse_bad_values(column, values, bad, name, expected)


def _refuse_bad_values(
    column: str, values: pa.ChunkedArray, bad: pa.ChunkedArray, name: str, expected: str
) -> None:
    bad_values = pc.filter(values, pc.fill_null(bad, False))
    if len(bad_values):
        raise DataError(
            f"{name}: column {column!r} has {len(bad_values)} value(s) that cannot be read, "
            f"e.g. {bad_values[0].as_py()!r}; expected {expected}."
        )
