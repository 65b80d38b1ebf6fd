"""Reading a PostgreSQL DSN for messages: where it points, never who logs in.

``describe`` is what every message of the store says about the database
(``host:port/database``). It also refuses, as a problem of the config, a DSN that
cannot be split into user, password, host and port: a password with an unencoded
``/``, ``?``, ``#``, ``[`` or ``]`` (generated passwords often hold them) ends the
host part early, so the driver would read a piece of the password as the port or
the host, and its error would quote that piece. The refusal quotes nothing of the
DSN, since that part may be the password.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from engine.errors import ConfigError

SCHEMES = ("postgresql://", "postgres://")

UNREADABLE = (
    "storage: the PostgreSQL DSN cannot be read as postgresql://user:password@host:port/database "
    "(a port that is not a number from 1 to 65535, or a `/`, `?`, `#`, `[`, `]` or `@` in the "
    "user or password, which ends the host part early); percent-encode those characters in the "
    "user and password (`/` is %2F, `?` %3F, `#` %23, `[` %5B, `]` %5D, `@` %40, `%` %25; "
    "Python: urllib.parse.quote(password, safe=''))"
)


def describe(dsn: str) -> str:
    """``host:port/database`` of a DSN, for messages: never the user or the password;
    with the ``search_path`` the DSN selects (``host:5432/db (schema tenant_a)``), since
    deployments that share a database differ by that alone.

    Raises ``ConfigError`` (quoting nothing of the DSN) when it is not a PostgreSQL
    DSN or cannot be split into its parts."""
    if not dsn.startswith(SCHEMES):
        raise ConfigError(
            f"storage {dsn.split('://')[0]}://... is not a PostgreSQL DSN; "
            "write postgresql://user@host:5432/database"
        )
    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(UNREADABLE) from None
    # A `#`, or an `@` past the host, is a password character left unencoded.
    if "#" in dsn or "@" in parts.path + parts.query or parts.netloc.count("@") > 1:
        raise ConfigError(UNREADABLE)
    host = parts.netloc.rpartition("@")[2] or "localhost"
    where = f"{host}{parts.path or '/'}"
    search_path = dict(parse_qsl(parts.query)).get("search_path")
    if search_path:
        where += f" (schema {search_path})"
    return where
