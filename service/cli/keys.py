"""`notespace keys`: API keys (create: shown once; list; revoke)."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.common import (
    DatabaseOption,
    JsonOption,
    database_url,
    fail,
    open_registry,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from service.registry.keys import KeyStore

app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


def _key_store(url: str | None) -> KeyStore:
    from service.registry.database import make_engine
    from service.registry.keys import KeyStore

    open_registry(url)  # exits clearly on an un-migrated database
    return KeyStore(make_engine(database_url(url)))


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who or what uses the key, e.g. epr-integration")],
    scopes: Annotated[
        str, typer.Option(help="comma-separated: embed, classify, search, index, admin")
    ],
    requests_per_minute: Annotated[int | None, typer.Option(min=1)] = None,
    tokens_per_minute: Annotated[int | None, typer.Option(min=1)] = None,
    created_by: Annotated[str | None, typer.Option("--by", help="[default: OS user]")] = None,
    url: DatabaseOption = None,
) -> None:
    """Create a key. It is printed once and only its hash is stored: keep it safe."""
    from service.registry.keys import parse_scopes

    try:
        scope_list = parse_scopes(scopes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scopes") from None
    created = _key_store(url).create(
        name,
        scope_list,
        created_by or getpass.getuser(),
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
    )
    typer.echo(created.key)
    typer.secho(
        f"key {created.row.key_id} ({name}; scopes {created.row.scopes}) - shown once, "
        "store it now",
        err=True,
        fg="yellow",
    )


@app.command("list")
def keys_list(as_json: JsonOption = False, url: DatabaseOption = None) -> None:
    """List keys (ids, names, scopes, quotas, state); never the keys themselves."""
    keys = _key_store(url).list()
    if as_json:
        print_json(
            [
                {
                    "key_id": k.key_id,
                    "name": k.name,
                    "scopes": k.scopes.split(","),
                    "requests_per_minute": k.requests_per_minute,
                    "tokens_per_minute": k.tokens_per_minute,
                    "created_by": k.created_by,
                    "created_at": k.created_at.isoformat(),
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                }
                for k in keys
            ]
        )
        return
    rows = []
    for k in keys:
        quota = ", ".join(
            q
            for q in (
                f"{k.requests_per_minute} req/min" if k.requests_per_minute else "",
                f"{k.tokens_per_minute} tok/min" if k.tokens_per_minute else "",
            )
            if q
        )
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        rows.append(
            (k.key_id, k.name, k.scopes, quota, f"{k.created_at:%Y-%m-%d} by {k.created_by}", state)
        )
    print_table(("key id", "name", "scopes", "quota", "created", "state"), rows)


@app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key id shown by `keys list`")],
    url: DatabaseOption = None,
) -> None:
    """Revoke a key; running services refuse it from the next request."""
    row = _key_store(url).revoke(key_id)
    if row is None:
        raise fail(f"no key with id {key_id}")
    typer.echo(f"key {row.key_id} ({row.name}) revoked")
