"""Champion vs challenger on one batch, the paired bootstrap, and the leakage guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.helpers import runner
from ticketeval.cli.app import app
from ticketeval.cli.render_backtest import render_backtest
from ticketeval.data.periods import Period
from ticketeval.errors import ExitCode, UsageError
from ticketeval.history import store as history
from ticketeval.pipeline.flow import build_flow
from ticketeval.scoring.backtest import judge, score_period
from ticketeval.scoring.champion import model_specs, overlaps_training
from ticketeval.scoring.metrics import paired_mae_difference
from ticketeval.settings import load_settings

# A challenger that knows the answer (within 10%), and two models that are one function.
MODELS = """
import numpy as np


def truthish(batch):
    seconds = (batch["closed_at"] - batch["sys_updated_at"]).dt.total_seconds().to_numpy()
    noise = np.random.default_rng(0).uniform(0.9, 1.1, len(batch))
    return np.nan_to_num(seconds, nan=0.0) * noise


truthish.columns = ("closed_at", "sys_updated_at")


def two_days(batch):
    return np.full(len(batch), 2 * 86_400.0)


also_two_days = two_days
"""


@pytest.fixture
def models(model_dir: Path) -> Path:
    (model_dir / "planted.py").write_text(MODELS)
    return model_dir


def evaluate(*args: str) -> dict:
    result = runner.invoke(app, ["evaluate", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def training_period(path: Path) -> dict:
    from ticketeval.scoring.model_file import describe_model

    return describe_model(path)["training"]


# --- Champion vs challenger ----------------------------------------------------------------------


def test_a_planted_better_challenger_is_better_beyond_noise(data_dir: Path, models: Path) -> None:
    summary = evaluate(
        "--model", "heuristic", "--model", "planted:truthish", "--batch-size", "500", "--seed", "2"
    )
    champion, challenger = summary["models"]["heuristic"], summary["models"]["planted:truthish"]
    # The trial's own data and model stay the champion's, as for one model.
    assert summary["model"] == "heuristic"
    assert summary["data"]["metrics"] == champion["metrics"]
    assert summary["data"]["metrics_ci"] == champion["metrics_ci"]
    assert challenger["metrics"]["MAE"] < champion["metrics"]["MAE"]
    (comparison,) = summary["comparison"]
    assert comparison["champion"] == "heuristic"
    assert comparison["challenger"] == "planted:truthish"
    assert comparison["mae_difference"] == pytest.approx(
        challenger["metrics"]["MAE"] - champion["metrics"]["MAE"]
    )
    low, high = comparison["ci"]
    assert low <= comparison["mae_difference"] <= high < 0
    assert comparison["better_beyond_noise"] and not comparison["worse_beyond_noise"]
    # One history row per model, under the trial's one id.
    rows = history.read_trials(load_settings().history)
    assert {row.id for row in rows} == {summary["id"]}
    assert {row.model: row.MAE for row in rows} == {
        "heuristic": champion["metrics"]["MAE"],
        "planted:truthish": challenger["metrics"]["MAE"],
    }


def test_the_champion_is_the_first_model_named(data_dir: Path, models: Path) -> None:
    summary = evaluate(
        "--model", "planted:truthish", "--model", "heuristic", "--batch-size", "500", "--seed", "2"
    )
    assert summary["model"] == "planted:truthish"
    (comparison,) = summary["comparison"]
    assert comparison["challenger"] == "heuristic" and comparison["ci"][0] > 0
    assert comparison["worse_beyond_noise"] and not comparison["better_beyond_noise"]


def test_two_identical_models_differ_by_nothing(data_dir: Path, models: Path) -> None:
    summary = evaluate(
        "--model", "planted:two_days", "--model", "planted:also_two_days", "--seed", "4"
    )
    (comparison,) = summary["comparison"]
    assert comparison["mae_difference"] == 0
    assert comparison["ci"][0] <= 0 <= comparison["ci"][1]
    assert not comparison["better_beyond_noise"] and not comparison["worse_beyond_noise"]


def test_three_models_make_two_comparisons_with_the_champion(data_dir: Path, models: Path) -> None:
    summary = evaluate(
        *("--model", "heuristic", "--model", "planted:truthish", "--model", "planted:two_days"),
        *("--batch-size", "200", "--seed", "1"),
    )
    assert list(summary["models"]) == ["heuristic", "planted:truthish", "planted:two_days"]
    assert [(row["champion"], row["challenger"]) for row in summary["comparison"]] == [
        ("heuristic", "planted:truthish"),
        ("heuristic", "planted:two_days"),
    ]


def test_the_table_puts_the_models_side_by_side(data_dir: Path, models: Path) -> None:
    result = runner.invoke(
        app,
        ["evaluate", "--model", "heuristic", "--model", "planted:truthish", "--batch-size", "300"],
    )
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "(champion)" in line)
    assert header.index("heuristic (champion)") < header.index("planted:truthish")
    assert "better beyond noise" in result.stdout
    assert "MAE by priority" in result.stdout


def test_the_paired_interval_scores_both_models_on_the_same_resamples() -> None:
    rng = np.random.default_rng(7)
    y = rng.exponential(100_000, 300)
    champion, challenger = y * rng.uniform(0.5, 1.5, 300), y * rng.uniform(0.6, 1.4, 300)
    difference, interval = paired_mae_difference(y, champion, challenger, seed=11, resamples=500)
    # The same draws, one resample at a time, each model's MAE computed on its own.
    draws = np.random.default_rng([11, 0xC0DE]).integers(0, 300, size=(500, 300), dtype=np.uint32)
    naive = [
        np.abs(y[rows] - challenger[rows]).mean() - np.abs(y[rows] - champion[rows]).mean()
        for rows in draws
    ]
    assert difference == pytest.approx(np.abs(y - challenger).mean() - np.abs(y - champion).mean())
    assert interval == pytest.approx(list(np.percentile(naive, [2.5, 97.5])))
    # Events without a target are left out of both models' errors.
    with_missing = np.append(y, np.nan)
    more = (np.append(champion, 1e12), np.append(challenger, 0.0))
    assert paired_mae_difference(with_missing, *more, seed=11, resamples=500) == (
        difference,
        interval,
    )


def test_a_model_named_twice_is_refused(data_dir: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--model", "heuristic", "--model", "heuristic"])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "named twice" in result.stderr
    with pytest.raises(UsageError, match="named twice"):
        model_specs("heuristic, heuristic")
    assert model_specs("heuristic, planted:truthish") == ("heuristic", "planted:truthish")
    assert model_specs(["a.skops"]) == ("a.skops",)


def test_backtest_takes_one_model(data_dir: Path) -> None:
    result = runner.invoke(app, ["backtest", "--model", "heuristic,other:model"])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "backtest scores one model" in result.stderr


def test_the_flows_model_parameter_names_several_models(data_dir: Path, models: Path) -> None:
    # The registered flow's parameter is one string; the predict task maps over its models.
    settings = load_settings()
    flow = build_flow(
        name="test", batch_size=100, seed=3, data_dir=data_dir, history_url=settings.history
    )
    assert flow.get_tasks(name="predict") and flow.get_tasks(name="get_ticket_data_batch")
    state = flow.run(parameters={"model": "heuristic,planted:truthish"})
    assert state.is_successful(), state.result
    written = state.result[flow.get_tasks(name="write_trial_summary")[0]].result
    summary = written["summary"]
    assert list(summary["models"]) == ["heuristic", "planted:truthish"]
    assert summary["comparison"][0]["better_beyond_noise"]
    in_process = evaluate(
        "--model", "heuristic", "--model", "planted:truthish", "--batch-size", "100", "--seed", "3"
    )
    for name in ("heuristic", "planted:truthish"):
        assert summary["models"][name]["metrics"] == in_process["models"][name]["metrics"]
    assert summary["comparison"] == in_process["comparison"]


# --- The leakage guard ---------------------------------------------------------------------------


def test_a_trial_inside_the_training_period_says_so(data_dir: Path, demo_model: Path) -> None:
    training = training_period(demo_model)
    inside = evaluate(
        *("--model", str(demo_model), "--batch-size", "all"),
        *("--closed-from", training["first_closed_at"], "--closed-to", training["cut"]),
    )
    assert inside["overlaps_training"] is True
    assert inside["model_info"]["trained_until"] == training["last_closed_at"]
    after = evaluate(
        "--model", str(demo_model), "--batch-size", "all", "--closed-from", training["cut"]
    )
    assert after["overlaps_training"] is False
    result = runner.invoke(
        app, ["evaluate", "--model", str(demo_model), "--closed-to", training["cut"]]
    )
    assert result.exit_code == 0, result.output
    assert "YES: it trained on some of these tickets" in result.stdout


def test_a_sample_of_the_whole_log_overlaps_when_an_event_closed_in_training(
    data_dir: Path, demo_model: Path
) -> None:
    summary = evaluate("--model", str(demo_model), "--batch-size", "300", "--seed", "1")
    assert summary["overlaps_training"] is True
    heuristic = evaluate("--batch-size", "300", "--seed", "1")
    assert heuristic["overlaps_training"] is False and heuristic["model_info"] is None
    # Checked against the scored events themselves, not the period (there is none).
    info = summary["model_info"]
    before, after = pd.Timestamp(info["trained_from"]), pd.Timestamp(info["trained_until"])
    closed = np.array(
        [(after + pd.Timedelta(minutes=1)).to_datetime64(), np.datetime64("NaT")],
        dtype="datetime64[ns]",
    )
    assert not overlaps_training(info, Period(), closed)
    closed[1] = (before + pd.Timedelta(days=1)).to_datetime64()
    assert overlaps_training(info, Period(), closed)
    assert overlaps_training(info, Period(), np.array([after], dtype="datetime64[s]"))


def test_with_a_challenger_each_model_says_whether_it_overlaps(
    data_dir: Path, demo_model: Path
) -> None:
    training = training_period(demo_model)
    summary = evaluate(
        *("--model", "heuristic", "--model", str(demo_model), "--batch-size", "all"),
        *("--closed-to", training["cut"]),
    )
    assert summary["overlaps_training"] is True
    assert summary["models"]["heuristic"]["overlaps_training"] is False
    assert summary["models"][str(demo_model)]["overlaps_training"] is True
    assert summary["models"][str(demo_model)]["model_info"]["path"] == str(demo_model)


def test_a_backtest_marks_the_periods_the_model_trained_on(
    data_dir: Path, demo_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    training = training_period(demo_model)
    cut = pd.Timestamp(training["cut"])
    periods = [
        Period(cut - pd.Timedelta(days=30), cut, "before the cut"),
        Period(cut, cut + pd.Timedelta(days=30), "after the cut"),
        Period(pd.Timestamp("2030-01-01"), pd.Timestamp("2030-02-01"), "nothing closed"),
    ]
    summaries = [
        score_period(
            data_dir=data_dir,
            period=period,
            batch_size=None,
            seed=1,
            model=str(demo_model),
            run_id="run",
        )
        for period in periods
    ]
    verdict = judge(summaries, reference=1, min_events=0)
    assert [row["overlaps_training"] for row in verdict["periods"]] == [True, False, False]
    render_backtest({"run_id": "run", "model": str(demo_model), "every": "30d", **verdict})
    table = capsys.readouterr().out
    assert "in training" in table
    marked = [line for line in table.splitlines() if "YES" in line]
    assert len(marked) == 1 and "before the cut" in marked[0]
