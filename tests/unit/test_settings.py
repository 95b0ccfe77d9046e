"""Settings: the seed's variable names, the tool's own, validation and secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketeval.errors import ExitCode, SettingsError
from ticketeval.settings import Settings, env_var_name, load_settings


def test_defaults_need_no_saturn_or_prefect_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETEVAL_DATA_DIR")
    monkeypatch.delenv("TICKETEVAL_HISTORY_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    monkeypatch.setenv("XDG_DATA_HOME", "/somewhere/data")
    settings = load_settings()
    assert settings.batch_size == 1000
    assert settings.seed is None
    assert settings.data_dir == Path("/somewhere/cache/ticketeval")
    # The history is no cache: it lives in the user's data directory.
    assert settings.history == "sqlite:////somewhere/data/ticketeval/history.sqlite"
    assert settings.spool_dir == Path("/somewhere/data/ticketeval/spool")
    assert settings.base_url is None and settings.saturn_token is None


def test_the_seeds_names_are_read_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_CLOUD_PROJECT_NAME", "tickets")
    monkeypatch.setenv("SATURN_USERNAME", "ada")
    monkeypatch.setenv("PREFECT_USER_TOKEN", "pcu_secret")
    monkeypatch.setenv("BASE_URL", "https://app.example.test")
    monkeypatch.setenv("SATURN_TOKEN", "saturn_secret")
    monkeypatch.setenv("TICKETEVAL_BATCH_SIZE", "250")
    monkeypatch.setenv("TICKETEVAL_SEED", "9")
    settings = load_settings()
    assert settings.prefect_cloud_project_name == "tickets"
    assert settings.username == "ada"
    assert (settings.batch_size, settings.seed) == (250, 9)
    # Tokens are secrets: not in the repr, only through get_secret_value().
    assert "pcu_secret" not in repr(settings) and "saturn_secret" not in str(settings)
    assert settings.prefect_user_token is not None
    assert settings.prefect_user_token.get_secret_value() == "pcu_secret"


def test_one_base_url_sets_both_saturn_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASE_URL", "https://app.example.test")
    monkeypatch.setenv("SATURN_TOKEN", "t")
    assert load_settings().saturn_environment() == {
        "BASE_URL": "https://app.example.test",
        "SATURN_BASE_URL": "https://app.example.test",
        "SATURN_TOKEN": "t",
    }


def test_saturn_base_url_alone_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATURN_BASE_URL", "https://app.example.test")
    assert load_settings().base_url == "https://app.example.test"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TICKETEVAL_BATCH_SIZE", "abc", "TICKETEVAL_BATCH_SIZE: Input should be a valid integer"),
        ("TICKETEVAL_BATCH_SIZE", "0", "TICKETEVAL_BATCH_SIZE: Input should be greater than 0"),
        ("TICKETEVAL_DATA_URL", "ftp://x", "TICKETEVAL_DATA_URL: 'ftp://x' is not an http(s) URL"),
    ],
)
def test_an_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    assert raised.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://app.example.test/", "BASE_URL: must not end with '/'"),
        ("app.example.test", "BASE_URL: 'app.example.test' is not an http(s) URL"),
    ],
)
def test_base_url_is_checked_where_saturn_uses_it(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    # A common variable name: commands that need no Saturn Cloud must not trip on it.
    monkeypatch.setenv("BASE_URL", value)
    monkeypatch.setenv("SATURN_TOKEN", "token")
    settings = load_settings()
    with pytest.raises(SettingsError) as raised:
        settings.saturn_environment()
    assert str(raised.value).startswith(message)
    assert raised.value.exit_code == ExitCode.USAGE


def test_require_names_the_missing_variable() -> None:
    with pytest.raises(SettingsError, match="PREFECT_USER_TOKEN is not set"):
        load_settings().require("prefect_user_token")
    with pytest.raises(SettingsError, match="SATURN_TOKEN is not set"):
        load_settings(base_url="https://x.test").saturn_environment()


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    # The autouse fixture made tmp_path the working directory.
    (tmp_path / ".env").write_text("TICKETEVAL_BATCH_SIZE=77\nSATURN_USERNAME=grace\n")
    settings = load_settings()
    assert (settings.batch_size, settings.username) == (77, "grace")


def test_env_var_names() -> None:
    assert env_var_name("batch_size") == "TICKETEVAL_BATCH_SIZE"
    assert env_var_name("base_url") == "BASE_URL"
    assert env_var_name("saturn_token") == "SATURN_TOKEN"
    assert set(Settings.model_fields) >= {"data_dir", "history_path", "data_url", "seed"}
