"""Champion vs challenger as a flow, on a LocalCluster (the command run in this process: the
executable's own start is tests/e2e/test_flow.py's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.helpers import invoke
from tests.unit.scoring.test_champion import MODELS
from ticketeval.history import store as history
from ticketeval.settings import load_settings

pytestmark = pytest.mark.usefixtures("without_dashboard")  # the cluster is not the point here


def test_run_local_compares_models_on_a_local_cluster(data_dir: Path, model_dir: Path) -> None:
    (model_dir / "planted.py").write_text(MODELS)
    result = invoke(
        *("run-local", "--model", "heuristic", "--model", "planted:truthish"),
        *("--batch-size", "200", "--seed", "5", "--workers", "1", "--json"),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["runner"] == "run-local"
    assert summary["comparison"][0]["better_beyond_noise"]
    rows = history.read_trials(load_settings().history)
    assert sorted(row.model for row in rows) == ["heuristic", "planted:truthish"]
