"""`agentloop api-key create|list|revoke` (database) and `agentloop token` (gateway)."""

from __future__ import annotations

import asyncio
import enum
import getpass
import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Column, Table

from ..client import GatewayClient
from ..config import credentials, gateway_url

T = TypeVar("T")
err = Console(stderr=True)

api_key_app = typer.Typer(
    help="Manage API keys, directly in the gateway's database (DATABASE__URL).", no_args_is_help=True
)


class RoleName(str, enum.Enum):
    user = "user"
    operator = "operator"
    admin = "admin"


def _database_url() -> str:
    from servicekit.settings import DatabaseSettings

    return os.environ.get("DATABASE__URL", DatabaseSettings().url)


def _with_engine(work: Callable[[Any], Awaitable[T]]) -> T:
    from servicekit.db import make_engine

    async def go() -> T:
        engine = make_engine(_database_url(), pool_size=1)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@api_key_app.command("create")
def create(
    role: Annotated[RoleName, typer.Option(help="what the key's tokens may do")],
    name: Annotated[str | None, typer.Option(help="owner of the key: the subject of its tokens")] = None,
) -> None:
    """Create an API key and print it (it is shown once: only its hash is stored)."""
    from gateway.service.api_keys import create_api_key

    owner = name or f"{getpass.getuser()}-{role.value}"
    key = _with_engine(lambda engine: create_api_key(engine, role.value, owner, created_by=f"cli:{getpass.getuser()}"))
    err.print(f"API key for [bold]{owner}[/] (role {role.value}); shown once, store it now:")
    typer.echo(key)


@api_key_app.command("list")
def list_keys() -> None:
    """List API keys (ids, owners, roles, times; never secrets)."""
    from gateway.service.api_keys import list_api_keys

    rows = _with_engine(list_api_keys)
    table = Table("name", "role", "created", "last used", "revoked")
    table.columns.insert(0, Column("key id", no_wrap=True, min_width=16))
    for row in rows:
        table.add_row(
            row["key_id"], row["name"], str(row["role"]),
            *(_when(row.get(k)) for k in ("created_at", "last_used_at", "revoked_at")),
        )
    Console().print(table)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else str(value or "")


@api_key_app.command("revoke")
def revoke(key: Annotated[str, typer.Argument(help="the key id or the whole key")]) -> None:
    """Revoke an API key; tokens already issued stay valid until they expire."""
    from gateway.service.api_keys import revoke_api_key

    if not _with_engine(lambda engine: revoke_api_key(engine, key, revoked_by=f"cli:{getpass.getuser()}")):
        err.print("no active key matched")
        raise typer.Exit(1)
    err.print("revoked")


def token(
    api_key: Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """Exchange an API key for an access token (JWT) and print it."""
    creds = credentials(api_key)
    typer.echo(GatewayClient(gateway_url()).token_for(creds))
