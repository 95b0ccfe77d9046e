"""`ticketeval train`, and a model file as `--model` wherever a model is taken (in-process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.helpers import runner
from tests.unit.scoring.test_training import _bad_files
from ticketeval import core
from ticketeval.cli.app import app
from ticketeval.data.batches import load_batch
from ticketeval.data.cache import read_cache_info
from ticketeval.errors import ExitCode
from ticketeval.scoring.metrics import score_metric
from ticketeval.scoring.model_file import TrainingResult, load_model_file
from ticketeval.scoring.trial import compute_target
from ticketeval.settings import load_settings


def invoke(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- train ---------------------------------------------------------------------------------------


def test_train_saves_a_model_prints_its_holdout_and_trains_the_same_bytes_twice(
    data_dir: Path, demo_model: Path
) -> None:
    result = runner.invoke(
        app, ["train", "--train-fraction", "0.7", "--seed", "0", "--out", "m.skops"]
    )
    assert result.exit_code == 0, result.output
    for line in ("Saved m.skops", "holdout MAE", "skill vs the training median", "cut"):
        assert line in result.stdout, line
    assert "skill vs the heuristic" in result.stdout and "absolute_error" in result.stdout

    described = invoke("train", "--show", "m.skops")
    assert described["path"] == "m.skops"
    assert "category_maps" not in described  # for the model, not for people
    holdout, training = described["holdout"], described["training"]
    assert training["train_fraction"] == 0.7 and training["events"] > holdout["events"] > 0
    assert holdout["skill"] == pytest.approx(1 - holdout["MAE"] / holdout["MAE_constant"])
    assert holdout["skill_vs_heuristic"] == pytest.approx(
        1 - holdout["MAE"] / holdout["MAE_heuristic"]
    )
    model = load_model_file("m.skops")
    assert described["training"] == model.metadata["training"]
    cache = read_cache_info(data_dir)
    assert cache is not None and described["data_sha256"] == cache.csv_sha256

    # Trained twice, the same bytes and the same predictions: the session's demo model is the
    # same data, options and seed through the API (one training for both checks).
    shutil.copy(demo_model, "b.skops")
    assert Path("m.skops").read_bytes() == Path("b.skops").read_bytes()
    summary = invoke(
        "evaluate", "--model", "m.skops", "--model", "b.skops", "--batch-size", "400", "--seed", "1"
    )
    first, second = (summary["models"][name] for name in ("m.skops", "b.skops"))
    assert first["metrics"] == second["metrics"]
    (comparison,) = summary["comparison"]
    assert comparison["mae_difference"] == 0 and comparison["ci"] == [0.0, 0.0]
    assert not comparison["better_beyond_noise"] and not comparison["worse_beyond_noise"]


def test_train_at_a_date_and_with_the_log_loss(data_dir: Path) -> None:
    described = invoke(
        "train", "--closed-before", "2016-09-01", "--loss", "log", "--out", "sub/log.skops"
    )
    assert described["path"] == "sub/log.skops" and Path("sub/log.skops").is_file()
    assert described["loss"] == "log"
    assert described["training"]["cut"] == "2016-09-01T00:00:00"
    assert described["training"]["last_closed_at"] < "2016-09-01"
    assert described["holdout"]["first_closed_at"] >= "2016-09-01"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--closed-before", "2016-09-01", "--train-fraction", "0.5"], "not both"),
        (["--train-fraction", "1.5"], "between 0 and 1"),
        (["--closed-before", "yesterday-ish"], "is not a date"),
        (["--closed-before", "2030-01-01"], "leaves no events"),
        (["--loss", "squared"], "loss must be one of"),
    ],
)
def test_bad_training_options_are_one_line_exit_2(
    data_dir: Path, args: list[str], expected: str
) -> None:
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not Path("model.skops").exists()


# --- A model file as --model ---------------------------------------------------------------------


def test_a_model_file_round_trips_through_evaluate(data_dir: Path, demo_model: Path) -> None:
    summary = invoke("evaluate", "--model", str(demo_model), "--batch-size", "300", "--seed", "5")
    assert summary["model"] == str(demo_model)
    model = load_model_file(demo_model)
    training = model.metadata["training"]
    assert summary["model_info"] == {
        "path": str(demo_model),
        "trained_from": training["first_closed_at"],
        "trained_until": training["last_closed_at"],
        "cut": training["cut"],
        "data_sha256": model.metadata["data_sha256"],
        "loss": "absolute_error",
    }
    # The same batch, predicted here by the model read back from its file.
    batch = load_batch(data_dir, 300, 5, model.columns)
    expected = score_metric("MAE", compute_target(batch.frame), model(batch.frame))
    assert summary["data"]["metrics"]["MAE"] == pytest.approx(expected, rel=1e-12)
    assert "models" not in summary and "comparison" not in summary


def test_a_relative_path_is_recorded_as_given(data_dir: Path, demo_model: Path) -> None:
    Path("mine.skops").write_bytes(demo_model.read_bytes())
    summary = invoke("evaluate", "--model", "mine.skops", "--batch-size", "50", "--seed", "1")
    assert summary["model"] == "mine.skops" and summary["model_info"]["path"] == "mine.skops"
    rows = core.history(load_settings(), model="mine.skops").rows
    assert [row.model for row in rows] == ["mine.skops"]


def test_every_bad_model_file_is_one_line_exit_5(
    data_dir: Path, demo_training: TrainingResult, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for kind, (path, expected) in _bad_files(bad, demo_training).items():
        if kind == "a CSV":
            # An existing file named by a spec that is not .skops is read as a model file too.
            assert path.suffix == ".csv"
        for command in (["evaluate"], ["run-local"], ["backtest"]):
            result = runner.invoke(app, [*command, "--model", str(path), "--batch-size", "50"])
            assert result.exit_code == ExitCode.MODEL, (kind, command, result.output)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], (kind, lines)
            assert "Traceback" not in result.output
    assert core.history(load_settings()).rows == []


def test_a_bad_model_file_is_named_as_given_in_one_line(data_dir: Path) -> None:
    Path("empty.skops").write_bytes(b"")
    result = runner.invoke(app, ["evaluate", "--model", "empty.skops", "--model", "heuristic"])
    assert result.exit_code == ExitCode.MODEL, result.output
    assert result.stderr.strip() == (
        "Error: empty.skops is not a ticketeval model file (a skops archive written by "
        "`ticketeval train`)."
    )
    assert result.stdout == ""


# --- The real file -------------------------------------------------------------------------------
