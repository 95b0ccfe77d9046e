"""Bad options and settings: each refused in one line with its documented exit code, nothing
changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.helpers import (
    DEMO_ROWS,
    expect_error,
    invoke,
    snapshot,
)
from ticketeval.errors import ExitCode


@pytest.mark.parametrize(
    ("arguments", "code", "fragments"),
    [
        (["evaluate", "--batch-size", "0"], ExitCode.USAGE, ("at least 1, not 0",)),
        (["evaluate", "--batch-size", "-5"], ExitCode.USAGE, ("at least 1, not -5",)),
        (
            ["evaluate", "--batch-size", "5000"],
            ExitCode.USAGE,
            ("batch size 5,000", f"the {DEMO_ROWS:,} events in the data"),
        ),
        (["run-local", "--batch-size", "5000"], ExitCode.USAGE, ("5,000", f"{DEMO_ROWS:,}")),
        (["evaluate", "--model", "nosuch"], ExitCode.MODEL, ("'nosuch'", "heuristic")),
        (
            ["evaluate", "--model", "no_such_module:predict"],
            ExitCode.MODEL,
            ("'no_such_module:predict' cannot be imported", "No module named"),
        ),
        (["run-local", "--model", "nosuch"], ExitCode.MODEL, ("'nosuch'",)),
        (
            ["run-local", "--address", "nonsense"],
            ExitCode.USAGE,
            ("--address 'nonsense'", "tcp://host:8786"),
        ),
        (
            ["run-local", "--address", "tcp://127.0.0.1:1"],
            ExitCode.NETWORK,
            ("cannot reach the Dask scheduler at tcp://127.0.0.1:1",),
        ),
        (["run-local", "--workers", "0"], ExitCode.USAGE, ("--workers must be at least 1",)),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_options_are_refused_in_one_line(
    data_dir: Path, arguments: list[str], code: ExitCode, fragments: tuple[str, ...]
) -> None:
    before = snapshot(data_dir)
    expect_error(invoke(*arguments), code, *fragments)
    assert snapshot(data_dir) == before  # no trial recorded, no cache touched


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("TICKETEVAL_BATCH_SIZE", "abc", "valid integer"),
        ("TICKETEVAL_BATCH_SIZE", "0", "greater than 0"),
        ("TICKETEVAL_TIMEOUT", "soon", "valid number"),
        ("TICKETEVAL_DATA_URL", "not-a-url", "'not-a-url' is not an http(s) URL"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(
    data_dir: Path, variable: str, value: str, fragment: str
) -> None:
    result = invoke("evaluate", env={variable: value})
    expect_error(result, ExitCode.USAGE, f"{variable}: ", fragment)


def test_a_bad_setting_in_dot_env_is_refused_too(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TICKETEVAL_BATCH_SIZE=abc\n")
    expect_error(invoke("evaluate"), ExitCode.USAGE, "TICKETEVAL_BATCH_SIZE")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("https://x.example/", "must not end with '/': use 'https://x.example'"),
        ("not-a-url", "'not-a-url' is not an http(s) URL"),
    ],
)
def test_describe_sizes_refuses_a_bad_base_url(value: str, fragment: str) -> None:
    result = invoke("describe-sizes", env={"BASE_URL": value, "SATURN_TOKEN": "t"})
    expect_error(result, ExitCode.USAGE, "BASE_URL: ", fragment)


def test_describe_sizes_with_nothing_set_names_the_missing_variable() -> None:
    expect_error(invoke("describe-sizes"), ExitCode.USAGE, "BASE_URL is not set")


def test_describe_sizes_without_a_token_names_it() -> None:
    result = invoke("describe-sizes", env={"BASE_URL": "https://x.example"})
    expect_error(result, ExitCode.USAGE, "SATURN_TOKEN is not set")
