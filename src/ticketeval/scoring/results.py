"""Per-event results of a trial: one Parquet file per trial, written atomically, pruned by age.

A trial's summary says how far off the model is on average; these files keep what the report
needs to show where (each event's ticket, priority, state, actual and predicted seconds). This
module owns their format, their atomic write and their retention; it never imports typer or
rich, and raises the TicketevalError family.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ticketeval.errors import DataError, TicketevalError, UsageError
from ticketeval.files import atomic_file

if TYPE_CHECKING:
    from ticketeval.data.batches import Batch
    from ticketeval.scoring.summary import TrialSummary
    from ticketeval.settings import Settings

RESULT_COLUMNS = ("number", "sys_updated_at", "priority", "incident_state", "actual", "predicted")
SUFFIX = ".parquet"
METADATA_KEY = b"ticketeval.scoring.results"
# A temporary file untouched for this long was left by a killed writer (kill -9, power cut).
# Trial ids become file names: no separators, no leading dot (hidden, or "..").
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")

_SCHEMA = pa.schema(
    [
        # Dictionary-encoded: a ticket has several events, and there are a handful of
        # priorities and states, so each string is stored once per file.
        ("number", pa.dictionary(pa.int32(), pa.string())),
        ("sys_updated_at", pa.timestamp("us")),  # pandas 3's unit; the log has minutes
        ("priority", pa.dictionary(pa.int8(), pa.string())),
        ("incident_state", pa.dictionary(pa.int8(), pa.string())),
        ("actual", pa.float64()),
        ("predicted", pa.float64()),
    ]
)


def results_path(directory: Path, trial_id: str) -> Path:
    """Where the results of `trial_id` live: `<directory>/<trial_id>.parquet`."""
    if not _SAFE_ID.fullmatch(trial_id):
        raise UsageError(
            f"Trial id {trial_id!r} cannot name a results file: use letters, digits, '.', '_' "
            "and '-' only, not starting with '.'."
        )
    return Path(directory) / f"{trial_id}{SUFFIX}"


def write_results(
    directory: Path,
    trial_id: str,
    frame: pd.DataFrame,
    *,
    model: str | None = None,
    run_id: str | None = None,
) -> Path:
    """Write a trial's per-event results to `<directory>/<trial_id>.parquet` and return the path.

    `frame` has the columns of RESULT_COLUMNS (others are ignored). The file is written to a
    temporary name beside it and renamed when complete, so a reader never sees half a file and
    an interrupted write leaves the previous one. Creates `directory` if needed.
    """
    destination = results_path(directory, trial_id)
    table = _to_table(frame)
    metadata = {**(table.schema.metadata or {}), METADATA_KEY: _metadata(trial_id, model, run_id)}
    table = table.replace_schema_metadata(metadata)
    with atomic_file(destination) as out:
        pq.write_table(table, out, compression="zstd", use_dictionary=True)
    return destination


def _to_table(frame: pd.DataFrame) -> pa.Table:
    missing = [name for name in RESULT_COLUMNS if name not in frame.columns]
    if missing:
        raise DataError(f"Per-event results lack the column(s) {', '.join(missing)}.")
    arrays = []
    for field in _SCHEMA:
        values = frame[field.name]
        if pa.types.is_dictionary(field.type):
            # Strings whatever the source type (categorical, object, integers); missing stays null.
            strings = values.astype("string").to_numpy(dtype=object, na_value=None)
            arrays.append(pa.array(strings, type=pa.string()).dictionary_encode())
        elif pa.types.is_timestamp(field.type):
            times = pd.to_datetime(values, errors="coerce")
            if getattr(times.dt, "tz", None) is not None:
                times = times.dt.tz_convert("UTC").dt.tz_localize(None)
            arrays.append(pa.array(times.astype("datetime64[us]"), type=field.type))
        else:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            arrays.append(pa.array(numbers.to_numpy(), type=field.type, from_pandas=True))
    # dictionary_encode picks int32 indices; cast to the schema's narrower ones where they fit.
    table = pa.Table.from_arrays(arrays, names=list(RESULT_COLUMNS))
    try:
        return table.cast(_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return table  # more distinct priorities or states than int8 holds: keep int32 indices


def _metadata(trial_id: str, model: str | None, run_id: str | None = None) -> bytes:
    found = {"trial_id": trial_id, "model": model}
    return json.dumps(found if run_id is None else {**found, "run_id": run_id}).encode()


def read_results(path: Path) -> pd.DataFrame:
    """A trial's per-event results; `frame.attrs` holds its `trial_id` and `model`.

    Raises DataError (one line) when the file is missing, is not Parquet, or lacks a column.
    """
    path = Path(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise DataError(f"No per-event results at {path}: the trial kept none.") from None
    except (OSError, pa.ArrowException) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"Cannot read per-event results {path}: {reason}") from None
    missing = [name for name in RESULT_COLUMNS if name not in table.column_names]
    if missing:
        raise DataError(f"Per-event results {path} lack the column(s) {', '.join(missing)}.")
    frame = table.select(list(RESULT_COLUMNS)).to_pandas()
    frame.attrs.update(_read_metadata(table.schema.metadata or {}))
    return frame


def _read_metadata(metadata: dict[bytes, bytes]) -> dict[str, str | None]:
    try:
        found = json.loads(metadata.get(METADATA_KEY, b"{}"))
    except ValueError:
        found = {}
    return {key: found.get(key) for key in ("trial_id", "model")}


def prune_results(directory: Path, keep: int | None) -> list[Path]:
    """Keep the newest `keep` results files in `directory` (by modification time); delete the rest.

    `keep=0` deletes every results file (retention turned off); `None` or a negative number
    keeps them all. (Temporaries a killed writer left behind go with the next write: see
    `files.atomic_file`.) Returns the deleted paths. A missing directory holds nothing.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    deleted: list[Path] = []
    if keep is None or keep < 0:
        return deleted
    found: list[tuple[float, str, Path]] = []
    for path in directory.glob(f"*{SUFFIX}"):
        if path.name.startswith("."):
            continue
        with contextlib.suppress(FileNotFoundError):  # another prune got there first
            found.append((path.stat().st_mtime, path.name, path))
    # Newest first; the name breaks ties so the same files go whatever the listing order.
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    for _, _, path in found[keep:]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            deleted.append(path)
    return deleted


def discard_run(directory: Path, run_id: str, *, keep: set[str]) -> list[Path]:
    """Delete the results files of backtest run `run_id` whose trial is not in `keep` (the
    recorded ones); return them. Files of other runs and trials are left alone."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    deleted = []
    for path in directory.glob(f"*{SUFFIX}"):
        if path.name.startswith(".") or path.stem in keep:
            continue
        try:
            found = json.loads((pq.read_schema(path).metadata or {}).get(METADATA_KEY, b"{}"))
        except (OSError, ValueError, pa.ArrowException):
            continue
        if isinstance(found, dict) and found.get("run_id") == run_id:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                deleted.append(path)
    return deleted


# Larger batches keep no per-event results: writing ten million rows would cost more than the
# trial, and a page shows the worst twenty and a density, not every event.
RESULTS_MAX_EVENTS = 1_000_000


@dataclass(frozen=True)
class KeptResults:
    """What became of a trial's per-event results: the file, or why there is none."""

    path: Path | None = None
    note: str | None = None  # they could not be written: the trial goes on without them

    def into(self, summary: TrialSummary) -> TrialSummary:
        """The summary with `results_path` or `results_note` (nothing for a large batch)."""
        if self.path is not None:
            summary["results_path"] = str(self.path)
        if self.note is not None:
            summary["results_note"] = self.note
        return summary


class ResultsNotKept(Exception):
    """The per-event results could not be written (the reason); the trial goes on without."""


@dataclass(frozen=True)
class ResultsKeeping:
    """Where trials keep their per-event results (for `ticketeval report`), and how many."""

    directory: Path
    retain: int | None  # how many trials keep theirs (None: all)
    # A backtest's run: its files are tagged with it and not pruned as they are written (the
    # run prunes once recorded, or discards them when it fails).
    run_id: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> ResultsKeeping:
        """Where this machine's trials keep their per-event results, and how many do."""
        return cls(settings.results_dir, settings.results_keep)

    def prune(self) -> None:
        """Keep the newest `retain` results files; delete the others."""
        prune_results(self.directory, self.retain)

    def write(
        self,
        trial_id: str,
        batch: Batch,
        target: pd.Series,
        predictions: np.ndarray,
        model: str,
    ) -> Path | None:
        """Write this trial's results, then drop the oldest beyond the retention; nothing for
        a batch larger than RESULTS_MAX_EVENTS (None)."""
        if len(batch.frame) > RESULTS_MAX_EVENTS:
            return None

        frame = batch.frame
        per_event = pd.DataFrame(
            {
                "number": frame["number"],
                "sys_updated_at": frame["sys_updated_at"],
                "priority": frame["priority"],
                "incident_state": frame["incident_state"],
                "actual": target,
                "predicted": predictions,
            }
        )
        try:
            path = write_results(
                self.directory, trial_id, per_event, model=model, run_id=self.run_id
            )
        except (OSError, TicketevalError) as error:
            # A full disk or an unwritable directory costs the report its per-event charts,
            # never the trial: it is scored, printed and recorded all the same.
            raise ResultsNotKept(getattr(error, "strerror", None) or str(error)) from None
        if self.run_id is None:
            prune_results(self.directory, self.retain)
        return path

    def keep(
        self,
        trial_id: str,
        batch: Batch,
        target: pd.Series,
        predictions: np.ndarray,
        model: str,
    ) -> KeptResults:
        """`write`, never failing the trial: the file, or a note saying why there is none."""
        try:
            return KeptResults(self.write(trial_id, batch, target, predictions, model))
        except ResultsNotKept as error:
            reason = str(error).rstrip(".")
            return KeptResults(
                note=f"Per-event results not kept ({reason}): the report lacks them."
            )
