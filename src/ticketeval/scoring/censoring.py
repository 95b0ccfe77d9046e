"""Right-censored times to close, in NumPy: the tickets still open are known only to take longer
than they have been open.

Owns the censored lower bound of the absolute error, Harrell's concordance index and the
Kaplan-Meier estimate of a survival function (used for inverse-probability-of-censoring
weights). Pure NumPy; never imports typer, rich or scikit-learn.
"""

from __future__ import annotations

import numpy as np

# Items per block of the concordance's sweep: the within-block pairs cost about n * BLOCK and
# the merges about n * n / BLOCK element copies; near sqrt(n) for the real log, cheap either way.
CONCORDANCE_BLOCK = 512
# Rows of a block's pair matrix built at a time, so a block swollen by tied times stays small.
PAIR_ROWS = 256


def lower_bound_errors(age: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Per open ticket, the least its absolute error can turn out to be: its time to close
    exceeds its age `c`, so |Y - p| >= max(0, c - p) whatever happens later."""
    return np.maximum(0.0, np.asarray(age, dtype=float) - np.asarray(predictions, dtype=float))


def concordance_index(
    times: np.ndarray, predictions: np.ndarray, observed: np.ndarray
) -> float | None:
    """Harrell's concordance index of predicted times to close, with right censoring.

    Comparable pairs (i, j): i's time is observed (closed) and strictly shorter than j's
    (observed or censored). A pair is concordant when the model predicts a shorter time for
    i (p_i < p_j); a tie in prediction counts 1/2. Returns concordant / comparable, None when
    no pair is comparable. Rows with a missing time or prediction are left out.

    O(n sqrt n) element operations, vectorised: rows sorted by time, longest first, in blocks
    of whole tied-time groups; each block's observed rows are compared with the sorted
    predictions of every longer row by `searchsorted`, pairs inside a block directly.
    """
    concordant, tied, comparable = concordance_counts(times, predictions, observed)
    return None if comparable == 0 else (concordant + 0.5 * tied) / comparable


def concordance_counts(
    times: np.ndarray,
    predictions: np.ndarray,
    observed: np.ndarray,
    *,
    block: int = CONCORDANCE_BLOCK,
) -> tuple[int, int, int]:
    """Concordant pairs, pairs tied in prediction, comparable pairs (see `concordance_index`);
    `block` only changes how the work is cut."""
    t = np.asarray(times, dtype=float)
    p = np.asarray(predictions, dtype=float)
    e = np.asarray(observed, dtype=bool)
    if not (len(t) == len(p) == len(e)):
        raise ValueError("times, predictions and observed must have the same length")
    keep = ~(np.isnan(t) | np.isnan(p))
    t, p, e = t[keep], p[keep], e[keep]
    order = np.argsort(-t, kind="stable")
    t, p, e = t[order], p[order], e[order]
    n = len(t)
    if n < 2:
        return 0, 0, 0
    # Blocks hold whole groups of equal times, so every row of an earlier block is strictly
    # longer than every row of a later one.
    group_start = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    block_of_group = group_start // max(1, block)
    block_start = group_start[np.r_[True, block_of_group[1:] != block_of_group[:-1]]]
    bounds = [*block_start.tolist(), n]
    longer = np.empty(0, dtype=float)  # predictions of the rows already swept, sorted
    concordant = tied = comparable = 0
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        block_t, block_p, block_e = t[start:stop], p[start:stop], e[start:stop]
        queries = block_p[block_e]
        if len(queries) and len(longer):
            below = np.searchsorted(longer, queries, side="left")
            up_to = np.searchsorted(longer, queries, side="right")
            concordant += int((len(longer) - up_to).sum())
            tied += int((up_to - below).sum())
            comparable += len(queries) * len(longer)
        inner = _pairs_within(block_t, block_p, block_e)
        concordant, tied, comparable = (
            concordant + inner[0],
            tied + inner[1],
            comparable + inner[2],
        )
        sorted_block = np.sort(block_p)
        longer = np.insert(longer, np.searchsorted(longer, sorted_block), sorted_block)
    return concordant, tied, comparable


def _pairs_within(t: np.ndarray, p: np.ndarray, e: np.ndarray) -> tuple[int, int, int]:
    """The counts over pairs inside one block, directly (a few hundred rows)."""
    concordant = tied = comparable = 0
    rows = np.flatnonzero(e)
    for first in range(0, len(rows), PAIR_ROWS):
        chosen = rows[first : first + PAIR_ROWS]
        pairs = t[chosen, None] < t[None, :]
        comparable += int(pairs.sum())
        concordant += int((pairs & (p[chosen, None] < p[None, :])).sum())
        tied += int((pairs & (p[chosen, None] == p[None, :])).sum())
    return concordant, tied, comparable


def kaplan_meier(
    times: np.ndarray, events: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The Kaplan-Meier estimate of S(t) = P(T > t): the distinct event times and S just after
    each. `events` marks the rows whose time is the event's (the others are censored then);
    an event and a censoring at the same time: the censored row counts as still at risk."""
    t = np.asarray(times, dtype=float)
    d = np.asarray(events, dtype=bool)
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(t, kind="stable")
    t, d, w = t[order], d[order], w[order]
    distinct, first = np.unique(t, return_index=True)
    at_risk = np.cumsum(w[::-1])[::-1][first]  # weight with a time >= each distinct time
    happened = np.add.reduceat(np.where(d, w, 0.0), first)
    with_events = happened > 0
    survival = np.cumprod(1.0 - happened[with_events] / at_risk[with_events])
    return distinct[with_events], survival


def survival_at(
    curve: tuple[np.ndarray, np.ndarray], at: np.ndarray, *, just_before: bool = False
) -> np.ndarray:
    """A Kaplan-Meier step function evaluated at `at`: S(t), or S(t-) with `just_before`."""
    times, survival = curve
    at = np.asarray(at, dtype=float)
    steps = np.searchsorted(times, at, side="left" if just_before else "right")
    return np.r_[1.0, survival][steps]
