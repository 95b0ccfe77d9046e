"""Settings: environment variables and an optional `.env`, read when a command runs.

The seed's variable names are kept unchanged so an existing Saturn Cloud project works as is;
the tool's own settings are prefixed `TICKETEVAL_`. Nothing here is read at import time.
"""

from __future__ import annotations

import contextlib
import getpass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlparse, urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ticketeval.defaults import DEFAULT_SCHEDULER_TIMEOUT
from ticketeval.errors import SettingsError, UsageError

ENV_PREFIX = "TICKETEVAL_"
# Seeds are whole numbers from 0 to 2**63 - 1: NumPy takes 0 <= seed < 2**64, but SQLite's
# integers (the history) and many JSON readers stop at signed 64 bits.
MAX_SEED = 2**63 - 1
HISTORY_FILE = "history.sqlite"


def default_history_dir() -> Path:
    """The user's data directory for ticketeval (platformdirs): the history is no cache."""
    import platformdirs

    return Path(platformdirs.user_data_dir("ticketeval", appauthor=False))


def default_data_dir() -> Path:
    """The user's cache directory for ticketeval (platformdirs: XDG on Linux, the platform's
    elsewhere)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("ticketeval", appauthor=False))


def sqlite_url(path: Path) -> str:
    """The history URL of a SQLite file: absolute, links resolved, and percent-quoted, so that
    a directory named `hist#1` (or with `?`, `%`, spaces) stays part of the path instead of
    becoming the URL's fragment or query. The one builder of these URLs: `Settings.history`
    and `ticketeval.history` both use it."""
    return f"sqlite:///{quote(str(Path(path).expanduser().resolve()))}"


class Settings(BaseSettings):
    """Every setting ticketeval reads. Build it with `load_settings()` at command time."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
    )

    # The seed's names, unchanged.
    prefect_cloud_project_name: str | None = Field(
        default=None, validation_alias="PREFECT_CLOUD_PROJECT_NAME"
    )
    saturn_username: str | None = Field(default=None, validation_alias="SATURN_USERNAME")
    prefect_user_token: SecretStr | None = Field(
        default=None, validation_alias="PREFECT_USER_TOKEN"
    )
    # dask-saturn reads SATURN_BASE_URL; accept it when BASE_URL is not set.
    # Checked only by the commands that use it (`saturn_environment`): BASE_URL is a common
    # name, and an unrelated one must not stop fetch, evaluate or history.
    base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("BASE_URL", "SATURN_BASE_URL")
    )
    saturn_token: SecretStr | None = Field(default=None, validation_alias="SATURN_TOKEN")

    # The tool's own.
    data_url: str | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    batch_size: int = Field(default=1000, gt=0)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    history_path: Path | None = None
    # A URL: sqlite:///path or postgresql://user:password@host:5432/db. Secret: the password.
    history_url: SecretStr | None = None
    history_dir: Path = Field(default_factory=default_history_dir)
    results_keep: int = Field(default=100, ge=0)
    # Events closed before their update (a negative time to close): scored as they are, or
    # left unscored like an event without a date. Counted in `num_negative` either way.
    negative_targets: Literal["keep", "drop"] = "keep"
    # Zip bombs: the largest CSV a zip may unpack to, and the highest compression ratio
    # (ticketeval.data.sources.DEFAULT_MAX_CSV_BYTES and DEFAULT_MAX_ZIP_RATIO).
    max_csv_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    max_zip_ratio: float = Field(default=100.0, gt=1, allow_inf_nan=False)
    # The log `--since-last` follows (TICKETEVAL_STREAM); None: where the cache came from.
    stream: str | None = Field(default=None, min_length=1, max_length=200)
    timeout: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    # How long a Dask scheduler given by --address has to answer as one.
    scheduler_timeout: float = Field(
        default=DEFAULT_SCHEDULER_TIMEOUT, gt=0, le=600, allow_inf_nan=False
    )
    # Whether run-local and backtest serve Dask's dashboard from the LocalCluster they start
    # (Bokeh: about 1 s of CPU and a port). A cron run has no one to look at it.
    dashboard: bool = True
    # urllib3's backoff factor between download retries (0.5 s, 1 s, 2 s); tests set 0.
    retry_backoff: float = Field(default=0.5, ge=0, le=60, allow_inf_nan=False)

    @field_validator("data_url")
    @classmethod
    def _must_be_http_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_http_url(value)
        return value

    @field_validator("data_dir", "history_path", "history_dir")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("history_url")
    @classmethod
    def _sqlite_directory_exists(cls, value: SecretStr | None) -> SecretStr | None:
        # sqlite:////abs/dir/h.sqlite (or sqlite:///abs/dir/h.sqlite): the path after
        # "sqlite://" is absolute. A directory that does not exist is refused rather than
        # created (a typo would start a new history far away), and so is the filesystem's root
        # (what "sqlite:///relative.db" names: a relative path cannot be given).
        url = value.get_secret_value().strip() if value is not None else ""
        if not url.lower().startswith("sqlite:"):
            return value
        try:
            path = Path("/" + unquote(urlsplit(url).path).lstrip("/"))
        except ValueError:
            return value  # the history's own parser says what is wrong
        if path.parent == Path("/"):
            raise ValueError(
                f"{url!r} names {path} at the filesystem root: give an absolute path, "
                "e.g. sqlite:////home/me/history.sqlite (four slashes before the path)"
            )
        if not path.parent.is_dir():
            raise ValueError(
                f"{url!r}: the directory {path.parent} does not exist; create it, or give "
                "another path (sqlite:////absolute/path.sqlite)"
            )
        return value

    @field_validator("data_dir")
    @classmethod
    def _usable_directory(cls, value: Path) -> Path:
        # A missing directory is created when something is written; anything else in the way
        # is refused now, before any work is done.
        try:
            if value.exists() and not value.is_dir():
                raise ValueError(
                    f"{str(value)!r} is not a directory: give a directory (--data-dir or "
                    "TICKETEVAL_DATA_DIR)"
                )
        except OSError as error:  # e.g. a name longer than the system allows
            shown = str(value) if len(str(value)) <= 80 else f"{str(value)[:60]}…"
            raise ValueError(
                f"{shown!r} cannot be used ({error.strerror or error}): "
                "give another directory (--data-dir or TICKETEVAL_DATA_DIR)"
            ) from None
        return value

    @property
    def history(self) -> str:
        """The history's URL (it may hold a password: show it only through `redact_url`):
        TICKETEVAL_HISTORY_URL, else the SQLite file TICKETEVAL_HISTORY_PATH, else
        `history.sqlite` in the history directory."""
        if self.history_url is not None:
            return self.history_url.get_secret_value()
        return sqlite_url(self.history_path or self.history_dir / HISTORY_FILE)

    @property
    def spool_dir(self) -> Path:
        """Where trials wait while the history cannot be reached."""
        return self.history_dir / "spool"

    @property
    def results_dir(self) -> Path:
        """Where each trial's per-event results are kept (for `ticketeval report`)."""
        return self.history_dir / "results"

    @property
    def own_paths(self) -> list[Path]:
        """The files and directories ticketeval keeps for itself here (an output must never be
        written over them): the SQLite history and its journals, the legacy history in the
        data directory, the spool and the per-event results (directories: all they hold)."""
        paths = [self.history_dir / HISTORY_FILE, self.data_dir / HISTORY_FILE]
        url = self.history
        if url.lower().startswith("sqlite:"):
            with contextlib.suppress(ValueError):
                paths.append(Path("/" + unquote(urlsplit(url).path).lstrip("/")))
        journals = [
            path.with_name(path.name + suffix)
            for path in paths
            for suffix in ("-wal", "-shm", "-journal")
        ]
        return [*paths, *journals, self.spool_dir, self.results_dir]

    @property
    def username(self) -> str:
        """SATURN_USERNAME, or the login name when it is not set (used in the flow's name)."""
        return self.saturn_username or getpass.getuser()

    def require(self, *field_names: str) -> None:
        """Raise a SettingsError naming the first variable a command needs but lacks."""
        for name in field_names:
            if getattr(self, name) is None:
                raise SettingsError(
                    f"{env_var_name(name)} is not set: export it or add it to a .env file."
                )

    def saturn_environment(self) -> dict[str, str]:
        """The variables the Saturn client libraries read, from the one BASE_URL setting.

        prefect-saturn reads BASE_URL and dask-saturn reads SATURN_BASE_URL (and refuses to start
        when only BASE_URL is set), so both are set from the same value.
        """
        self.require("base_url", "saturn_token")
        assert self.base_url is not None and self.saturn_token is not None
        try:
            check_http_url(self.base_url)
            # prefect-saturn builds its Webhook storage URL as "${BASE_URL}/api/...".
            if self.base_url.endswith("/"):
                raise ValueError(f"must not end with '/': use {self.base_url.rstrip('/')!r}")
        except ValueError as error:
            raise SettingsError(f"{env_var_name('base_url')}: {error}.") from None
        token = self.saturn_token.get_secret_value()
        return {"BASE_URL": self.base_url, "SATURN_BASE_URL": self.base_url, "SATURN_TOKEN": token}


def check_http_url(value: str) -> None:
    """Raise ValueError unless `value` is an http(s) URL with a host."""
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")


def check_seed(seed: int, *, option: str = "--seed") -> None:
    """Raise a UsageError unless `seed` is one ticketeval can draw with and record. Checked
    once, where a seed enters (`ticketeval.core`; TICKETEVAL_SEED by the field's bounds)."""
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(
            f"{option} {seed} is out of range: give a whole number from 0 to {MAX_SEED} "
            "(2**63 - 1)."
        )


def env_var_name(field_name: str) -> str:
    """The environment variable a Settings field is read from."""
    field = Settings.model_fields[field_name]
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{ENV_PREFIX}{field_name.upper()}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings now; an invalid value becomes one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except UnicodeDecodeError as error:  # pydantic-settings reads .env as UTF-8
        raise SettingsError(
            f".env in {Path.cwd()} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
            f"position {error.start}): fix or remove it."
        ) from None
    except OSError as error:  # e.g. a .env nobody may read
        raise SettingsError(
            f"cannot read .env in {Path.cwd()} ({error.strerror or error}): fix or remove it."
        ) from None
    except ValidationError as error:
        first = error.errors()[0]
        field_name = str(first["loc"][0]) if first["loc"] else ""
        variable = env_var_name(field_name) if field_name in Settings.model_fields else field_name
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{variable}: {message}.") from None
