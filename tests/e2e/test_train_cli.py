"""`ticketeval train` on the real file (the README's session), and what evaluate imports in a
fresh interpreter."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.unit.test_docs import README, readme_examples
from ticketeval.data.cache import FetchResult
from ticketeval.scoring.model_file import describe_model


def test_the_heuristic_never_imports_scikit_learn_skops_or_matplotlib(data_dir: Path) -> None:
    # evaluate without --report draws nothing: matplotlib stays out too.
    code = (
        "import sys\n"
        "heavy = {'sklearn', 'skops', 'matplotlib'}\n"
        "import ticketeval.scoring.models, ticketeval.scoring.trial, ticketeval.scoring.champion\n"
        "assert not heavy & set(sys.modules), 'imported by the modules'\n"
        "from typer.testing import CliRunner\n"
        "from ticketeval.cli.app import app\n"
        "result = CliRunner().invoke(app, ['evaluate', '--batch-size', '100', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.realdata
def test_on_the_real_file_the_trained_model_beats_the_heuristic_beyond_noise(
    real_zip: Path, real_fetch: FetchResult, tmp_path: Path
) -> None:
    # The README's session (fetch, train at the 70% point, compare on every later ticket), as
    # scripts/readme_examples.py runs it: what it prints is the README's, its figures hold.
    # Its fetch finds the session's parse of the file there (as a second fetch would: reused).
    shutil.copy2(real_fetch.cache.path, tmp_path)
    examples = readme_examples()
    for name, text in examples.real_session(real_zip, keep_in=tmp_path).items():
        assert examples.section(README, name) == text, f"{name}: run scripts/readme_examples.py"
    described = describe_model(tmp_path / "m.skops")
    cut = described["training"]["cut"]
    assert cut == "2016-05-11T15:07:00"
    with sqlite3.connect(tmp_path / "history.sqlite") as connection:
        summaries = [json.loads(row[0]) for row in connection.execute("SELECT summary FROM trials")]
    [summary] = {s["id"]: s for s in summaries if "comparison" in s}.values()
    assert summary["period"]["closed_from"].startswith(cut[:16])
    heuristic, trained = summary["models"]["heuristic"], summary["models"]["m.skops"]
    assert trained["num_obs"] == described["holdout"]["events"]
    assert trained["baseline"]["skill"] >= 0.10, trained["baseline"]
    assert trained["metrics"]["MAE"] < heuristic["metrics"]["MAE"]
    (comparison,) = summary["comparison"]
    assert comparison["better_beyond_noise"] and comparison["ci"][1] < 0, comparison
    assert not summary["overlaps_training"]
    assert np.isclose(trained["metrics"]["MAE"], described["holdout"]["MAE"])
