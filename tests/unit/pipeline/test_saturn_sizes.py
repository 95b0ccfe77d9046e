"""`describe-sizes` through the one Saturn REST client (`pipeline/saturn_api.py`), against the
current Saturn API's shape (the Jobs emulator: each size an object with its `display`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import invoke
from tests.support.jobs_emulator import SIZES, JobsEmulator, running_jobs_emulator

SATURN_TOKEN = "saturn-token-sizes-91c4"


@pytest.fixture
def saturn(tmp_path: Path) -> Iterator[JobsEmulator]:
    with running_jobs_emulator(saturn_token=SATURN_TOKEN, pods_dir=tmp_path / "pods") as emulator:
        yield emulator


def test_describe_sizes_shows_the_current_apis_size_descriptions(saturn: JobsEmulator) -> None:
    """Saturn's current API gives each size as an object: describe-sizes shows its display
    text, in Saturn's order, not the object; the job commands check sizes against the same."""
    env = {"SATURN_BASE_URL": saturn.base_url, "SATURN_TOKEN": SATURN_TOKEN}

    table = invoke("describe-sizes", env=env)
    as_json = invoke("describe-sizes", "--json", env=env)

    assert as_json.exit_code == 0, as_json.output
    assert list(json.loads(as_json.stdout).items()) == list(SIZES.items())
    assert table.exit_code == 0, table.output
    for name, display in SIZES.items():
        assert f"{name} " in table.stdout and display in table.stdout
    assert "hardware_type" not in table.stdout + as_json.stdout
    assert SATURN_TOKEN not in table.output + as_json.output
