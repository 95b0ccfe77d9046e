"""The model file `ticketeval train` writes and `--model FILE` reads: the trained model
(`TrainedModel`), the skops archive (written atomically and byte-for-byte reproducibly, read
with an explicit allow-list of types), its description, and the period check the leakage
guard uses.

scikit-learn and skops are imported inside the functions that need them, so `ticketeval
--help` does not pay for them.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from ticketeval.errors import ModelError
from ticketeval.files import atomic_file
from ticketeval.scoring.features import feature_matrix, openmp_threads

FORMAT = "ticketeval-model"
FORMAT_VERSION = 1
# A fixed timestamp for every entry of the model file's zip, so equal models give equal bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)

# Every type a model file of FORMAT_VERSION may hold beyond those skops trusts by default: what
# `skops.io.get_untrusted_types` lists for a file this module wrote (scikit-learn 1.9, either
# loss). Anything else is refused.
TRUSTED_TYPES = frozenset(
    {
        "functools.partial",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.utils.validation.check_array",
    }
)


# --- The model ---------------------------------------------------------------------------------


class TrainedModel:
    """A trained model as ticketeval's `--model` expects: `model(batch)` -> seconds per row.

    `columns` names the raw columns it reads (never an outcome column); `metadata` is plain
    data describing how it was trained and how it scored on its holdout.
    """

    def __init__(self, estimator: Any, metadata: dict[str, Any]) -> None:
        self.estimator = estimator
        self.metadata = metadata
        self.columns: tuple[str, ...] = tuple(metadata["columns"])
        self._category_maps: dict[str, list[str]] = metadata["category_maps"]
        self._log_target = metadata["loss"] == "log"

    def __call__(self, batch: pd.DataFrame) -> np.ndarray:
        if len(batch) == 0:
            return np.empty(0, dtype=float)
        with openmp_threads(len(batch)):
            raw = self.estimator.predict(feature_matrix(batch, self._category_maps))
        seconds = np.expm1(raw) if self._log_target else raw
        # A ticket cannot close before the event: negative times are the trees' noise.
        return np.clip(seconds, 0.0, None)

    def __repr__(self) -> str:
        training = self.metadata.get("training", {})
        return f"TrainedModel(loss={self.metadata['loss']!r}, cut={training.get('cut')!r})"


@dataclass(frozen=True)
class TrainingResult:
    """A model trained on the events before the cut, and its figures on the events after."""

    model: TrainedModel

    @property
    def metadata(self) -> dict[str, Any]:
        return self.model.metadata

    @property
    def holdout(self) -> dict[str, Any]:
        return self.model.metadata["holdout"]


# --- The model file ----------------------------------------------------------------------------


def _canonical_skops(data: bytes) -> bytes:
    """The same skops archive with its run-dependent parts made fixed, so equal models give
    equal bytes.

    skops names objects by `id()` (the "__id__" entries, the arrays' file names) and stamps each
    zip entry with the current time. Ids are renumbered in order of first appearance in the
    schema (a renaming: objects that shared an id still share one), files named after their
    number, and every entry dated ZIP_DATE_TIME.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
        contents = {name: archive.read(name) for name in archive.namelist()}
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def renumber(node: Any) -> Any:
        if isinstance(node, dict):
            renamed = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    value = ids.setdefault(value, len(ids))
                elif key == "file" and isinstance(value, str) and value in contents:
                    suffix = Path(value).suffix
                    value = files.setdefault(value, f"{len(files)}{suffix}")
                else:
                    value = renumber(value)
                renamed[key] = value
            return renamed
        if isinstance(node, list):
            return [renumber(item) for item in node]
        return node

    schema = renumber(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # Compact: with an indent, json falls back from its C encoder to pure Python, which
        # took 14 ms of a 64 ms save of a small model (2 ms compact).
        entries = [("schema.json", json.dumps(schema).encode())]
        entries += [(new, contents[old]) for old, new in files.items()]
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return out.getvalue()


def model_bytes(model: TrainedModel) -> bytes:
    """The model file's content: a skops archive of {"model": estimator, "metadata": JSON}."""
    import skops.io

    # Metadata as one JSON string: skops stores a str as is, with no types to trust.
    payload = {"model": model.estimator, "metadata": json.dumps(model.metadata, sort_keys=True)}
    return _canonical_skops(skops.io.dumps(payload))


def save_model(result: TrainingResult | TrainedModel, path: Path | str) -> Path:
    """Write the model file at `path` atomically (a temporary file beside it, then a rename)."""
    model = result.model if isinstance(result, TrainingResult) else result
    path = Path(path)
    data = model_bytes(model)
    # The shared atomic write: never over a special file, and the mode the umask gives (a
    # team sharing a model directory reads it like the reports and the cache).
    with atomic_file(path, chosen_by="--out") as out:
        out.write(data)
    return path


def _read_payload(path: Path) -> tuple[Any, dict[str, Any]]:
    """The estimator and metadata of a model file, every failure a one-line ModelError."""
    import skops.io

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"model file {path} does not exist: train one with `ticketeval train`."
        ) from None
    except OSError as error:
        raise ModelError(f"model file {path} cannot be read: {error.strerror or error}.") from None
    not_ours = (
        f"{path} is not a ticketeval model file (a skops archive written by `ticketeval train`)."
    )
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ModelError(not_ours)
    try:
        # A model file holds only trusted types: loading with them trusted audits the archive
        # once (get_untrusted_types first audits it a second time, about 20 ms a load).
        payload = skops.io.loads(data, trusted=sorted(TRUSTED_TYPES))
    except Exception:  # any refusal is explained below, as before
        payload = _explain_refusal(path, data, not_ours)
    if not (isinstance(payload, dict) and set(payload) == {"model", "metadata"}):
        raise ModelError(not_ours)
    try:
        metadata = json.loads(payload["metadata"])
    except (TypeError, ValueError):
        raise ModelError(not_ours) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelError(not_ours)
    if metadata.get("format_version") != FORMAT_VERSION:
        versions = metadata.get("versions")
        made_by = versions.get("ticketeval", "?") if isinstance(versions, dict) else "?"
        raise ModelError(
            f"{path} is a model file of format {metadata.get('format_version')!r} (ticketeval "
            f"{made_by}); this ticketeval reads format {FORMAT_VERSION}: train the model again."
        )
    check_metadata(path, metadata)
    return payload["model"], metadata


def _explain_refusal(path: Path, data: bytes, not_ours: str) -> Any:
    """Why skops refused the archive, as one ModelError: not a skops archive, types a model does
    not hold, or damaged (the payload, should the archive load after all)."""
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception:  # a zip that is not a skops archive fails in many ways, all the same to us
        raise ModelError(not_ours) from None
    unexpected = sorted(set(untrusted) - TRUSTED_TYPES)
    if unexpected:
        raise ModelError(
            f"{path} holds types a ticketeval model does not ({', '.join(unexpected[:3])}"
            f"{', …' if len(unexpected) > 3 else ''}): refusing to load it."
        )
    try:
        return skops.io.loads(data, trusted=untrusted)
    except Exception as error:  # skops reports a damaged archive with many exception types
        raise ModelError(f"{path} is a damaged model file ({type(error).__name__}).") from None


class _Period(BaseModel):
    """A training or holdout block: its closures must be dates (or null)."""

    model_config = ConfigDict(extra="allow")
    first_closed_at: datetime | None
    last_closed_at: datetime | None


class _Metadata(BaseModel):
    """The fields of a model file's metadata that ticketeval reads, with their types."""

    model_config = ConfigDict(extra="allow")
    loss: Literal["absolute_error", "log"]
    columns: list[str]
    category_maps: dict[str, list[str]]
    versions: dict[str, str]
    training: _Period
    holdout: _Period


def check_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Refuse (ModelError, one line naming the field) metadata of the wrong shape: every field
    the commands read later, so a damaged or edited file fails on load, never half-way."""
    try:
        _Metadata.model_validate(metadata)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ModelError(
            f"{path} has invalid metadata: {field}: {first['msg']}; train the model again."
        ) from None


def load_model_file(path: Path | str) -> TrainedModel:
    """The model in a file `save_model` wrote, ready to predict; ModelError if it is not one."""
    estimator, metadata = _read_payload(Path(path))
    from sklearn.ensemble import HistGradientBoostingRegressor

    if not isinstance(estimator, HistGradientBoostingRegressor):
        raise ModelError(f"{path} does not hold a ticketeval model.")
    return TrainedModel(estimator, metadata)


def as_shown(path: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A model's metadata as `train` shows it: everything but the category maps (hundreds of
    values each, for the model, not for people)."""
    return {
        "path": path,
        **{key: value for key, value in metadata.items() if key != "category_maps"},
    }


def describe_model(path: Path | str) -> dict[str, Any]:
    """What a model file says about itself (its metadata, plain data), plus its path."""
    _, metadata = _read_payload(Path(path))
    return {"path": str(path), **metadata}


# --- The leakage guard -------------------------------------------------------------------------


def overlaps_training(
    metadata: Mapping[str, Any],
    closed_from: datetime | str | None,
    closed_to: datetime | str | None,
) -> bool:
    """Whether events closed in [closed_from, closed_to) may include ones the model trained on.

    The training period is [first, last] closed_at trained on; None is an open end.
    """
    training = metadata["training"]
    first, last = (
        pd.Timestamp(training["first_closed_at"]),
        pd.Timestamp(training["last_closed_at"]),
    )
    start = None if closed_from is None else pd.Timestamp(closed_from)
    end = None if closed_to is None else pd.Timestamp(closed_to)
    if start is not None and end is not None and end <= start:
        return False  # an empty period holds no events at all
    return (start is None or start <= last) and (end is None or end > first)
