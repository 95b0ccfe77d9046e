"""Training in another process writes the same bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import ROOT
from tests.unit.scoring.test_training import demo, trained
from ticketeval.scoring.model_file import TrainingResult, model_bytes

__all__ = ["demo", "trained"]  # fixtures of the unit tests, imported so pytest finds them


def test_another_process_writes_the_same_bytes(tmp_path: Path, trained: TrainingResult) -> None:
    # Another process: other object ids, another hash seed, a later clock.
    script = (
        "import sys\n"
        "from tests.unit.scoring.test_training import demo_events\n"
        "from ticketeval.scoring.model_file import save_model\n"
        "from ticketeval.scoring.training import train\n"
        "save_model(train(demo_events(), seed=3, data_sha256='f' * 64), sys.argv[1])\n"
    )
    path = tmp_path / "child.skops"
    subprocess.run(
        [sys.executable, "-c", script, str(path)],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        timeout=120,
    )
    assert path.read_bytes() == model_bytes(trained.model)
