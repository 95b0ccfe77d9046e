"""The command line through Typer's CliRunner: help, evaluate, history, the log file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import invoke, runner, table_value
from ticketeval.cli.app import app
from ticketeval.errors import ExitCode

COMMANDS = ("fetch", "evaluate", "run-local", "history")


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: ticketeval" in result.output


def test_help_imports_no_heavy_library() -> None:
    # A fresh interpreter, as a user's shell would start one.
    code = (
        "import sys\n"
        "from ticketeval.cli.app import app\n"
        "try:\n    app(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "heavy = ('prefect', 'dask', 'distributed', 'pandas', 'pyarrow', 'sklearn', 'numpy',\n"
        "         'skops', 'matplotlib', 'psycopg')\n"
        "print('HEAVY', [name for name in heavy if name in sys.modules])\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in output


def test_evaluate_json_is_only_json_on_stdout(data_dir: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--batch-size", "300", "--seed", "42", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["data"]["num_obs"] == 300
    assert summary["seed"] == 42 and summary["batch_size"] == 300
    assert set(summary["data"]["metrics"]) == {"MAE", "MedAE", "MSE", "R2", "RMSE"}
    assert summary["source"]["name"] == "demo"


def test_evaluate_renders_a_table(data_dir: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--batch-size", "300", "--seed", "42"])
    assert result.exit_code == 0, result.output
    for label in ("num_obs", "MAE", "MedAE", "R2", "skill vs the median", "By priority"):
        assert label in result.stdout
    assert table_value(result.stdout, "num_obs") == "300"
    assert table_value(result.stdout, "seed") == "42"


def test_evaluate_with_the_demo_source_works_from_nothing(isolated_environment: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--batch-size", "1000", "--source", "demo", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["num_obs"] == 1000
    assert (isolated_environment / "demo-events.parquet").exists()
    assert not (isolated_environment / "events.parquet").exists()  # demo data kept apart


def test_evaluate_without_data_or_network_says_what_to_do(isolated_environment: Path) -> None:
    # Nothing is cached and the download URL refuses connections at once.
    result = runner.invoke(
        app, ["evaluate"], env={"TICKETEVAL_DATA_URL": "http://127.0.0.1:9/none.zip"}
    )
    assert result.exit_code == ExitCode.NETWORK
    assert "--source demo" in result.stderr
    assert "Traceback" not in result.output


def test_fail_if_mae_above_exits_with_its_own_code_after_recording(data_dir: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--batch-size", "100", "--fail-if-mae-above", "1"])
    assert result.exit_code == ExitCode.MAE_ABOVE_LIMIT
    assert "is above the limit of 1 s" in result.stderr
    history = json.loads(runner.invoke(app, ["history", "--json"]).stdout)
    assert len(history) == 1  # the trial is still recorded
    fine = runner.invoke(app, ["evaluate", "--batch-size", "100", "--fail-if-mae-above", "1e12"])
    assert fine.exit_code == 0, fine.output


def test_history_shows_trials_a_trend_and_flags_regressions(
    data_dir: Path, model_dir: Path
) -> None:
    # A model that gets worse when DRIFT is set; another model, far worse, on the side.
    (model_dir / "drifting.py").write_text(
        "import os\n"
        "def model(batch):\n"
        "    return [86_400.0 * (1 + 50 * ('DRIFT' in os.environ))] * len(batch)\n"
        "def worse(batch):\n    return [1e8] * len(batch)\n"
    )
    models = ["drifting:model", "drifting:worse", "drifting:model", "drifting:model"]
    for number, model in enumerate(models):
        env = {"DRIFT": "1"} if number == 3 else {}
        arguments = ["--batch-size", "200", "--seed", str(number), "--model", model]
        result = runner.invoke(app, ["evaluate", *arguments], env=env)
        assert result.exit_code == 0, result.output
    rows = json.loads(runner.invoke(app, ["history", "--json"]).stdout)
    assert [row["model"] for row in rows] == models
    # The far worse model is not compared with the other; the drifted trial is flagged.
    assert [row["flagged"] for row in rows] == [False, False, False, True]
    assert len(json.loads(runner.invoke(app, ["history", "--json", "--last", "2"]).stdout)) == 2
    table = runner.invoke(app, ["history"])
    assert table.exit_code == 0, table.output
    assert "worse" in table.stdout and "MAE trend" in table.stdout


def test_history_when_empty(isolated_environment: Path) -> None:
    result = runner.invoke(app, ["history"])
    assert result.exit_code == 0
    assert "No trials recorded yet" in result.stderr


def test_log_file_gets_messages_and_the_summary(data_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "ticketeval.log"
    result = runner.invoke(
        app, ["evaluate", "--batch-size", "50", "--quiet", "--log-file", str(log)]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = log.read_text().splitlines()
    summary = json.loads(lines[-1].split(" ", 1)[1])
    assert summary["data"]["num_obs"] == 50


def test_an_invalid_setting_is_one_line_and_exit_2(data_dir: Path) -> None:
    result = runner.invoke(app, ["evaluate"], env={"TICKETEVAL_BATCH_SIZE": "abc"})
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.strip().startswith("Error: TICKETEVAL_BATCH_SIZE: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_fetch_reports_what_it_cached(isolated_environment: Path) -> None:
    result = invoke("fetch", "--source", "demo", "--demo-events", "400")
    assert result.exit_code == 0, result.output
    assert "Fetched 400 events of" in result.stderr
    again = invoke("fetch", "--source", "demo", "--demo-events", "400")
    assert "Reusing the cache of 400 events" in again.stderr
    info = json.loads(invoke("fetch", "--source", "demo", "--demo-events", "400", "--json").stdout)
    assert info["rows"] == 400 and info["reused"] is True


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("0", "at least 1, not 0"),
        ("-5", "at least 1, not -5"),
        ("2001", "2,001 is larger than the 2,000 events in the data"),
    ],
)
def test_a_batch_size_that_cannot_work_is_refused(data_dir: Path, size: str, message: str) -> None:
    for command in ("evaluate", "run-local"):
        result = runner.invoke(app, [command, "--batch-size", size])
        assert result.exit_code == ExitCode.USAGE, result.output
        assert message in result.stderr


def test_run_local_refuses_an_unknown_model_before_starting_a_cluster(data_dir: Path) -> None:
    result = runner.invoke(app, ["run-local", "--model", "no_such_module:model"])
    assert result.exit_code == ExitCode.MODEL
    assert "model 'no_such_module:model' cannot be imported" in result.stderr
    assert "Dask scheduler" not in result.stderr
