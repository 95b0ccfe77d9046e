"""`run-local --as-of`: the flow gives the same open tickets as `evaluate`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import assert_no_process_left, invoke
from ticketeval.data.periods import Period
from ticketeval.pipeline import flow
from ticketeval.scoring import trial

pytestmark = pytest.mark.usefixtures("without_dashboard")  # the cluster is not the point here


def test_only_a_replay_flow_has_the_as_of_parameter_and_task() -> None:
    plain = flow.build_flow(name="f", batch_size=10)
    assert "as-of" not in {p.name for p in plain.parameters()}
    assert not plain.get_tasks(name="add_open_tickets")
    replay = flow.build_flow(name="f", batch_size=10, period=Period(as_of=datetime(2016, 10, 1)))
    assert {p.name: p.default for p in replay.parameters()}["as-of"] == "2016-10-01T00:00:00"
    assert len(replay.get_tasks(name="add_open_tickets")) == 1


@pytest.mark.e2e
def test_run_local_as_of_matches_evaluate(data_dir: Path, process_marker: str) -> None:
    result = invoke(
        "run-local", "--as-of", "2016-10-01", "--no-estimate", "--batch-size", "all",
        "--workers", "1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["period"]["as_of"] == "2016-10-01T00:00:00"
    evaluated = trial.score_trial(
        data_dir=data_dir, batch_size=None, period=Period(as_of=datetime(2016, 10, 1))
    )
    assert summary["data"]["num_obs"] == evaluated["data"]["num_obs"]
    assert summary["data"]["open"] == evaluated["data"]["open"]
    assert summary["data"]["metrics"]["concordance"] == evaluated["data"]["metrics"]["concordance"]
    assert_no_process_left(process_marker)
