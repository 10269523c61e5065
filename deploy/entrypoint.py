#!/usr/bin/env python3
"""Container entrypoint: build NOTESPACE_DATABASE_URL from a password file, exec the command.

    python deploy/entrypoint.py notespace db upgrade
    python deploy/entrypoint.py notespace serve

It uses the variables the postgres image itself reads, so one env file configures both:
POSTGRES_PASSWORD_FILE (a docker secret, preferred) or POSTGRES_PASSWORD, POSTGRES_USER
(default notespace), POSTGRES_DB (default notespace), plus POSTGRES_HOST (default db) and
POSTGRES_PORT (default 5432). An explicit NOTESPACE_DATABASE_URL wins and is left alone; with
neither, the service's own default (a SQLite file) applies. Standard library only, so it runs
the same inside the image and on a host; it never prints the password.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

DEFAULT_COMMAND = ("notespace", "serve")
MIN_PASSWORD_CHARS = 12


class EntrypointError(RuntimeError):
    """The environment does not describe a usable database; the message names the variable."""


def _password(env: Mapping[str, str]) -> str | None:
    path = env.get("POSTGRES_PASSWORD_FILE")
    if path and env.get("POSTGRES_PASSWORD"):
        raise EntrypointError("set POSTGRES_PASSWORD_FILE or POSTGRES_PASSWORD, not both")
    if path:
        try:
            password = Path(path).read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            # The usual cause: the secret file is not readable by the container's user.
            raise EntrypointError(
                f"cannot read POSTGRES_PASSWORD_FILE {path}: {exc.strerror}"
            ) from None
    else:
        password = env.get("POSTGRES_PASSWORD", "")
        if not password:
            return None
    if len(password) < MIN_PASSWORD_CHARS:
        raise EntrypointError(
            f"the database password is shorter than {MIN_PASSWORD_CHARS} characters; "
            "generate one, e.g. `openssl rand -base64 32`"
        )
    return password


def database_url(env: Mapping[str, str]) -> str | None:
    """The PostgreSQL URL the environment describes, or None to leave the setting alone."""
    if env.get("NOTESPACE_DATABASE_URL"):
        return None
    password = _password(env)
    if password is None:
        return None
    user = env.get("POSTGRES_USER") or "notespace"
    host = env.get("POSTGRES_HOST") or "db"
    port = env.get("POSTGRES_PORT") or "5432"
    name = env.get("POSTGRES_DB") or user  # the postgres image's own default
    if not port.isdigit():
        raise EntrypointError(f"POSTGRES_PORT must be a number, not {port!r}")
    return (
        f"postgresql+psycopg://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{host}:{port}/{quote(name, safe='')}"
    )


def prepare_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment the command runs with: the password never stays in it in plain form."""
    out = dict(env)
    url = database_url(env)
    if url is not None:
        out["NOTESPACE_DATABASE_URL"] = url
    out.pop("POSTGRES_PASSWORD", None)
    return out


def main(argv: Sequence[str]) -> None:
    command = list(argv) or list(DEFAULT_COMMAND)
    try:
        env = prepare_environment(os.environ)
    except EntrypointError as exc:
        print(f"notespace entrypoint: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.stdout.flush()
    # exec: the command becomes this process, so signals (docker stop) reach it directly.
    os.execvpe(command[0], command, env)  # noqa: S606 (the operator's own command)


if __name__ == "__main__":
    main(sys.argv[1:])
