"""The synthetic event log for working offline: the real schema, formats and statistics."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ticketeval.data.parsing import PRIORITIES
from ticketeval.errors import UsageError
from ticketeval.formatting import HOUR

DEMO_SOURCE = "demo"
DEFAULT_DEMO_EVENTS = 20_000


def demo_event_log(n_events: int = DEFAULT_DEMO_EVENTS, seed: int = 0) -> bytes:
    """A synthetic event log with the real schema, formats and statistics, as CSV bytes.

    All 36 columns, `?` for missing, unpadded day-first dates, `true`/`false`, the four real
    priority labels in the real mix, several events per incident (2 or more, ~5.7 on average)
    and a heavy-tailed time to close. The same `seed` gives the same bytes.
    """
    if n_events < 2:
        raise UsageError("the demo event log needs at least 2 events.")
    rng = np.random.default_rng(seed)
    # Events per incident: at least 2, mean ~5.7, as in the real log.
    per_incident = 2 + rng.poisson(3.69, size=n_events // 2 + 1)
    ends = np.cumsum(per_incident)
    n_incidents = int(np.searchsorted(ends, n_events) + 1)
    per_incident = per_incident[:n_incidents]
    per_incident[-1] -= int(ends[n_incidents - 1] - n_events)
    if per_incident[-1] < 2 and n_incidents > 1:
        # The cut left the last incident one event: it joins the one before.
        per_incident[-2] += per_incident[-1]
        per_incident, n_incidents = per_incident[:-1], n_incidents - 1
    incident = np.repeat(np.arange(n_incidents), per_incident)
    step = np.arange(n_events) - np.repeat(np.cumsum(per_incident) - per_incident, per_incident)
    last = step == np.repeat(per_incident - 1, per_incident)

    priority = rng.choice(len(PRIORITIES), size=n_incidents, p=[0.016, 0.021, 0.935, 0.028])
    start = np.datetime64("2016-02-29T00:00", "s").astype(np.int64)
    opened = start + rng.integers(0, 352 * 86_400, size=n_incidents)
    to_resolve = rng.lognormal(mean=np.log(20 * HOUR), sigma=1.6, size=n_incidents)
    resolved = opened + np.minimum(to_resolve, 300 * 86_400).astype(np.int64)
    # Tickets close in batches about five days after they are resolved.
    closed = (resolved + 5 * 86_400) // 3600 * 3600 + 3600
    # Updates move through the ticket's life in order; the last one is at resolution.
    fraction = np.where(last, 1.0, (step + rng.random(n_events)) / per_incident[incident])
    updated = opened[incident] + (fraction * (resolved - opened)[incident]).astype(np.int64)

    def label(prefix: str, high: int, size: int = n_events) -> pa.Array:
        return pc.binary_join_element_wise(
            prefix, pc.cast(pa.array(rng.integers(1, high, size)), pa.string()), ""
        )

    def per_event(values: pa.Array) -> pa.Array:
        return values.take(pa.array(incident))

    def maybe_missing(values: pa.Array, fraction_missing: float) -> pa.Array:
        missing = rng.random(len(values)) < fraction_missing
        return pc.if_else(pa.array(missing), "?", values)

    def dates(seconds: np.ndarray) -> pa.Array:
        text = pc.strftime(pa.array(seconds.astype("datetime64[s]")), format="%d/%m/%Y %H:%M")
        text = pc.replace_substring_regex(text, r"^0", "")
        return pc.replace_substring_regex(text, r"/0(\d)/", r"/\1/")

    def booleans(values: np.ndarray) -> pa.Array:
        return pa.array(np.where(values, "true", "false"))

    states = np.array(["New", "Active", "Awaiting User Info", "Resolved"])
    state = np.where(last, "Closed", states[np.minimum(step, 3)])
    numbers = pc.binary_join_element_wise(
        "INC", pc.utf8_lpad(pc.cast(pa.array(np.arange(n_incidents) + 1), pa.string()), 7, "0"), ""
    )
    codes = ("1 - High", "2 - Medium", "3 - Low")
    impact = rng.choice(3, size=n_incidents, p=[0.03, 0.94, 0.03])
    columns: dict[str, pa.Array] = {
        "number": per_event(numbers),
        "incident_state": pa.array(state),
        "active": booleans(~last),
        "reassignment_count": pa.array(
            per_event(pa.array(rng.poisson(1.0, n_incidents))).to_numpy().astype(str)
        ),
        "reopen_count": pa.array(np.where(rng.random(n_events) < 0.01, "1", "0")),
        "sys_mod_count": pa.array(step.astype(str)),
        "made_sla": booleans(
            per_event(pa.array(rng.random(n_incidents) < 0.93)).to_numpy(zero_copy_only=False)
        ),
        "caller_id": per_event(label("Caller ", 5245, n_incidents)),
        "opened_by": maybe_missing(per_event(label("Opened by  ", 208, n_incidents)), 0.034),
        "opened_at": per_event(dates(opened)),
        "sys_created_by": maybe_missing(per_event(label("Created by ", 186, n_incidents)), 0.375),
        "sys_created_at": maybe_missing(per_event(dates(opened + 420)), 0.375),
        "sys_updated_by": label("Updated by ", 846),
        "sys_updated_at": dates(updated),
        "contact_type": per_event(
            pa.array(
                rng.choice(
                    ["Phone", "Email", "Self service", "IVR"],
                    n_incidents,
                    p=[0.98, 0.01, 0.008, 0.002],
                )
            )
        ),
        "location": per_event(label("Location ", 225, n_incidents)),
        "category": per_event(label("Category ", 59, n_incidents)),
        "subcategory": per_event(label("Subcategory ", 255, n_incidents)),
        "u_symptom": maybe_missing(per_event(label("Symptom ", 526, n_incidents)), 0.233),
        "cmdb_ci": maybe_missing(label("cmdb_ci ", 51), 0.997),
        "impact": per_event(pa.array(np.array(codes)[impact])),
        "urgency": per_event(pa.array(np.array(codes)[impact])),
        "priority": per_event(pa.array(np.array(PRIORITIES)[priority])),
        "assignment_group": maybe_missing(per_event(label("Group ", 79, n_incidents)), 0.10),
        "assigned_to": maybe_missing(per_event(label("Resolver ", 235, n_incidents)), 0.194),
        "knowledge": booleans(rng.random(n_events) < 0.16),
        "u_priority_confirmation": booleans(rng.random(n_events) < 0.3),
        "notify": pa.array(np.where(rng.random(n_events) < 0.999, "Do Not Notify", "Send Email")),
        "problem_id": maybe_missing(label("Problem ID  ", 253), 0.984),
        "rfc": maybe_missing(label("CHG000", 9999), 0.993),
        "vendor": maybe_missing(label("Vendor ", 4), 0.998),
        "caused_by": maybe_missing(label("CHG000", 9999), 0.9995),
        "closed_code": maybe_missing(per_event(label("code ", 17, n_incidents)), 0.005),
        "resolved_by": maybe_missing(per_event(label("Resolved by ", 217, n_incidents)), 0.002),
        "resolved_at": maybe_missing(per_event(dates(resolved)), 0.022),
        "closed_at": per_event(dates(closed)),
    }
    out = io.BytesIO()
    pacsv.write_csv(
        pa.table(columns), out, write_options=pacsv.WriteOptions(quoting_style="needed")
    )
    return out.getvalue()
