"""Today's training against censoring-aware training (IPCW), on the holdout's open-state
events: the tickets a team is waiting on, where censoring bites. Incident-level paired
intervals: each resample draws incidents (Poisson weights), every model scored on the same
draw."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ticketeval.data.batches import CLOSED_STATE
from ticketeval.scoring.metrics import BOOTSTRAP_RESAMPLES, CONFIDENCE, plain
from ticketeval.scoring.trial import compute_target


def compare_censoring(
    frame: pd.DataFrame, cut: str, *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, Any]:
    """Train both ways at `cut`; score both, and the training median (the constant), on the
    holdout's open-state events; skill against the constant and IPCW against today's, each
    with its paired incident-bootstrap interval."""
    from ticketeval.scoring.training import train

    today = train(frame, closed_before=cut, seed=seed, censoring="none")
    ipcw = train(frame, closed_before=cut, seed=seed, censoring="ipcw")
    at = pd.Timestamp(today.metadata["training"]["cut"])
    target = compute_target(frame).to_numpy()
    holdout = (frame["closed_at"] >= at).to_numpy() & ~np.isnan(target)
    # The population of --open-only and of `train`'s open-state figures: not the closing event.
    states = frame["incident_state"].astype("string").fillna("")
    open_state = holdout & (states != CLOSED_STATE).to_numpy()
    rows = frame.loc[open_state]
    y = target[open_state]
    errors = {
        "constant": np.abs(y - today.metadata["training"]["median_target"]),
        "today": np.abs(y - today.model(rows)),
        "ipcw": np.abs(y - ipcw.model(rows)),
    }
    incident = pd.factorize(rows["number"])[0]
    sums = {name: np.bincount(incident, weights=error) for name, error in errors.items()}
    rng = np.random.default_rng([seed, 0x1BCF])
    draws = rng.poisson(1.0, size=(resamples, incident.max() + 1)).astype(float)
    resampled = {name: draws @ total for name, total in sums.items()}

    def skill(model: str, reference: str) -> dict[str, Any]:
        value = 1 - sums[model].sum() / sums[reference].sum()
        spread = 1 - resampled[model] / resampled[reference]
        tail = (1 - CONFIDENCE) / 2 * 100
        low, high = np.percentile(spread, [tail, 100 - tail])
        return {"skill": plain(value), "ci": [float(low), float(high)]}

    censoring = ipcw.metadata["training"]["censoring"]
    return {
        "cut": at.isoformat(),
        "open_state_events": int(open_state.sum()),
        "open_state_incidents": int(incident.max() + 1) if len(incident) else 0,
        "MAE": {name: plain(error.mean()) for name, error in errors.items()},
        "today_vs_constant": skill("today", "constant"),
        "ipcw_vs_constant": skill("ipcw", "constant"),
        "ipcw_vs_today": skill("ipcw", "today"),
        "today_all_events_skill": today.holdout["skill"],
        "ipcw_all_events_skill": ipcw.holdout["skill"],
        "effective_sample_size": censoring["effective_sample_size"],
        "training_events": censoring["events"],
        "censored_events": censoring["censored_events"],
    }
