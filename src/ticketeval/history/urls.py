"""History URLs: their two forms, and passwords kept out of every message (a SQLite file's URL
is built by `ticketeval.settings.sqlite_url`, beneath both the settings and the history).

A history URL is `sqlite:///absolute/path.sqlite` or `postgresql://user:password@host/db`. URLs
appear in messages only through `redact_url`, and a driver's error text only through `scrub`.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ticketeval.errors import UsageError

SQLITE_SCHEME = "sqlite"
POSTGRES_SCHEMES = ("postgresql", "postgres")
DEFAULT_BUSY_TIMEOUT = 60.0  # seconds a write waits for another process's lock
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to reach a PostgreSQL server


def _raw_userinfo(url: str) -> tuple[str, str, str] | None:
    """(`scheme://`, the user part, the rest after its `@`), read from the raw string: the user
    part is everything between the scheme's `//` and the LAST `@`, so a password holding an
    unencoded `@`, `/`, `?` or `#` (which urlsplit would cut elsewhere) is still all of it."""
    scheme, separator, rest = url.partition("//")
    if not separator or "@" not in rest:
        return None
    userinfo, _, after = rest.rpartition("@")
    return scheme + separator, userinfo, after


def redact_url(url: str) -> str:
    """The URL with its password (in the user part or a `password=` parameter) as `***`."""
    raw = _raw_userinfo(url)
    if raw is not None and ":" in raw[1]:
        start, userinfo, after = raw
        url = f"{start}{userinfo.partition(':')[0]}:***@{after}"
        if "password" not in after.lower():
            return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:***@{host}"
        query = parts.query
        if netloc == parts.netloc and "password" not in query.lower():
            return url  # nothing secret: as written (urlunsplit would drop sqlite's "//")
        if "password" in query.lower():
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*"
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # unparseable (a bad port, say): show nothing that could be a secret
        scheme = url.partition(":")[0]
        return f"{scheme}://***" if "@" in url or "password" in url.lower() else url


def without_password(url: str) -> str:
    """The URL with no password at all, for a place that is not secret (a registered flow's
    parameter): the machine that uses it supplies the password (PGPASSWORD, ~/.pgpass)."""
    redacted = redact_url(url)
    if redacted == url:
        return url
    parts = urlsplit(redacted)
    userinfo, _, host = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}@{host}" if userinfo else parts.netloc
    pairs = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(pairs), parts.fragment))


def secrets_of(url: str) -> list[str]:
    """The password of `url` in every spelling a message could contain."""
    found: list[str] = []
    raw = _raw_userinfo(url)
    if raw is not None and ":" in raw[1]:
        password = raw[1].partition(":")[2]
        found += [password, unquote(password)]
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """The first line of `text`, with the URL's password removed (a driver could echo it)."""
    line = " ".join(text.strip().partition("\n")[0].split()).rstrip(".")
    for secret in secrets_of(url):
        line = line.replace(secret, "***")
    return line


@dataclass(frozen=True)
class HistoryURL:
    """A parsed history URL: `backend` is "sqlite" or "postgresql"."""

    url: str
    backend: str
    path: Path | None = None  # the SQLite file

    @property
    def redacted(self) -> str:
        return redact_url(self.url)


def parse_history_url(url: str) -> HistoryURL:
    """Check a history URL; a wrong one is a UsageError naming the forms that work."""
    forms = "sqlite:///absolute/path.sqlite or postgresql://user:password@host:5432/database"
    try:
        parts = urlsplit(url.strip())
    except ValueError as error:
        reason = scrub(str(error), url)
        raise UsageError(
            f"the history URL {redact_url(url)} is invalid ({reason}): use {forms}."
        ) from None
    scheme = parts.scheme.lower()
    if scheme == SQLITE_SCHEME:
        if parts.netloc or not parts.path.startswith("/") or parts.path.rstrip("/") == "":
            raise UsageError(
                f"the history URL {redact_url(url)} needs an absolute file path after "
                f"'sqlite://': use {forms}."
            )
        # sqlite:////abs (SQLAlchemy's spelling of an absolute path) means the same file.
        path = Path("/" + unquote(parts.path).lstrip("/"))
        return HistoryURL(url=url.strip(), backend="sqlite", path=path)
    if scheme in POSTGRES_SCHEMES:
        _check_userinfo(url.strip())
        if not parts.hostname and "host=" not in parts.query:
            raise UsageError(f"the history URL {redact_url(url)} names no host: use {forms}.")
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise UsageError(f"the history URL {redact_url(url)} has an invalid port.") from None
        return HistoryURL(url=url.strip(), backend="postgresql")
    raise UsageError(f"the history URL {redact_url(url)} is not supported: use {forms}.")


# What a user part may hold as it is: RFC 3986's unreserved and sub-delims, ':' between the
# user and the password, and %XX escapes; anything else must be percent-encoded.
_USERINFO = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*")


def _check_userinfo(url: str) -> None:
    """Refuse a user part a URL parser would cut elsewhere (an `@`, `/`, `?` or `#` in the
    password, a `%` not starting an escape): the password could then reach the host name, and
    messages. The message never shows it."""
    raw = _raw_userinfo(url)
    if raw is not None and not _USERINFO.fullmatch(raw[1]):
        raise UsageError(
            f"the history URL {redact_url(url)} has special characters in its user name or "
            "password: percent-encode them (@ as %40, / as %2F, : in the user name as %3A, "
            "% as %25, ? as %3F, # as %23), e.g. with Python's urllib.parse.quote(password, "
            "safe='')."
        )


def is_server_url(url: str) -> bool:
    """Whether `url` names a PostgreSQL server (that other machines can reach), not a file."""
    return url.strip().lower().startswith(tuple(f"{scheme}:" for scheme in POSTGRES_SCHEMES))
