"""Several models on one batch: which models a trial scores, what each says about its own
training, the leakage guard, and the champion-versus-challenger comparison.

The first model named is the champion; every other one is a challenger, compared with it on
the same events by a paired bootstrap of the MAE difference (`metrics.paired_mae_difference`).
A model trained by `ticketeval train` carries its training period; a trial whose events closed
inside it is marked `overlaps_training`: the model may have seen those tickets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ticketeval.data.periods import Period
from ticketeval.errors import UsageError
from ticketeval.scoring import HEURISTIC
from ticketeval.scoring.metrics import paired_mae_difference
from ticketeval.scoring.models import Model, model_columns
from ticketeval.scoring.summary import Comparison, ModelInfo


def model_specs(model: str | Sequence[str] | None) -> tuple[str, ...]:
    """The models a trial scores, champion first.

    A string may name several, separated by commas (the flow's `model` parameter is one
    string); a sequence (repeated `--model`) names one per item. The same model twice is
    refused: each model is one column of the comparison and one row of the history.
    """
    if model is None:
        return (HEURISTIC,)
    items = model.split(",") if isinstance(model, str) else list(model)
    specs = tuple(item.strip() for item in items)
    if not specs:
        return (HEURISTIC,)
    if any(not spec for spec in specs):
        raise UsageError(f"an empty model name in {model!r}.")
    repeated = sorted({spec for spec in specs if specs.count(spec) > 1})
    if repeated:
        raise UsageError(f"model {repeated[0]!r} is named twice: name each model once.")
    return specs


def columns_of(models: Iterable[Model]) -> tuple[str, ...] | None:
    """The columns every model together reads; None (all of them) if any model reads all."""
    wanted: list[str] = []
    for model in models:
        columns = model_columns(model)
        if columns is None:
            return None
        wanted.extend(columns)
    return tuple(dict.fromkeys(wanted))


def model_info(spec: str, model: Model) -> ModelInfo | None:
    """What the summary says about a trained model: where it came from and what it trained on;
    None for a model without training metadata (the heuristic, most user functions)."""
    metadata = getattr(model, "metadata", None)
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("training"), Mapping):
        return None
    training = metadata["training"]
    return {
        "path": spec,
        "trained_from": training.get("first_closed_at"),
        "trained_until": training.get("last_closed_at"),
        "cut": training.get("cut"),
        "data_sha256": metadata.get("data_sha256"),
        "loss": metadata.get("loss"),
    }


def overlaps_training(
    info: Mapping[str, Any] | None, period: Period, closed_at: np.ndarray | None = None
) -> bool:
    """Whether a trial may score tickets the model trained on.

    A trial with a period overlaps when its period meets the training period (the first to the
    last closure trained on); a trial of the whole log, when any of its scored events closed
    inside the training period (`closed_at`, NaT for events without a target). Dates only: a
    model trained on other data with the same dates is marked too. False without training
    metadata.
    """
    if not info or not info.get("trained_from") or not info.get("trained_until"):
        return False
    if period.bounded:
        from ticketeval.scoring.model_file import overlaps_training as periods_overlap

        training = {
            "first_closed_at": info["trained_from"],
            "last_closed_at": info["trained_until"],
        }
        return bool(
            periods_overlap({"training": training}, period.closed_from, period.last_closure)
        )
    if closed_at is None:
        return True  # the whole log, unseen: it includes the training period
    closed = np.asarray(closed_at, dtype="datetime64[ns]")
    first = np.datetime64(pd.Timestamp(info["trained_from"]).to_datetime64(), "ns")
    last = np.datetime64(pd.Timestamp(info["trained_until"]).to_datetime64(), "ns")
    # NaT compares False both ways: an event without a closure is never inside.
    return bool(((closed >= first) & (closed <= last)).any())


def comparisons(
    target: pd.Series | np.ndarray,
    predictions: Mapping[str, np.ndarray],
    *,
    seed: int,
    incidents: np.ndarray | None = None,
) -> list[Comparison]:
    """Each challenger against the champion (the first model), on the same events, resampling
    whole incidents (`incidents`: each event's cluster)."""
    names = list(predictions)
    champion = names[0]
    rows: list[Comparison] = []
    for challenger in names[1:]:
        difference, interval = paired_mae_difference(
            target, predictions[champion], predictions[challenger], seed=seed, incidents=incidents
        )
        rows.append(
            {
                "champion": champion,
                "challenger": challenger,
                "mae_difference": difference,
                "ci": interval,
                "better_beyond_noise": interval is not None and interval[1] < 0,
                "worse_beyond_noise": interval is not None and interval[0] > 0,
            }
        )
    return rows
