"""`agentloop api-key create|list|revoke` (the gateway's admin routes, an admin's key) and `agentloop token`.

The first key comes from the gateway's own admin entry point, on its database:
`python -m gateway.admin api-key create --role admin --name OWNER`.
"""

from __future__ import annotations

import enum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from ..client import GatewayClient
from ..config import credentials, gateway_url

err = Console(stderr=True)

api_key_app = typer.Typer(
    help="Manage API keys through the gateway (/v1/admin/api-keys; an admin's key). The first key: "
         "python -m gateway.admin api-key create.", no_args_is_help=True,
)

ApiKey = Annotated[str | None, typer.Option(help="an admin's key; default: AGENTLOOP_API_KEY, then .run/api-key")]


class RoleName(str, enum.Enum):
    user = "user"
    operator = "operator"
    admin = "admin"


@api_key_app.command("create")
def create(
    role: Annotated[RoleName, typer.Option(help="what the key's tokens may do")],
    name: Annotated[str, typer.Option(help="owner of the key: the subject of its tokens")],
    api_key: ApiKey = None,
) -> None:
    """Create an API key and print it (it is shown once: only its hash is stored)."""
    client = GatewayClient(gateway_url())
    token = client.token_for(credentials(api_key))
    made = client.call(token, "POST", "/v1/admin/api-keys", json={"role": role.value, "name": name},
                       expect=(201,)).json()
    err.print(f"API key for [bold]{made['name']}[/] (role {made['role']}); shown once, store it now:")
    typer.echo(made["key"])


@api_key_app.command("list")
def list_keys(api_key: ApiKey = None) -> None:
    """List API keys (ids, owners, roles, times; never secrets)."""
    client = GatewayClient(gateway_url())
    rows = client.call(client.token_for(credentials(api_key)), "GET", "/v1/admin/api-keys").json()
    table = Table("name", "role", "created", "last used", "revoked")
    table.columns.insert(0, Column("key id", no_wrap=True, min_width=16))
    for row in rows:
        table.add_row(row["key_id"], row["name"], str(row["role"]),
                      *((row.get(k) or "")[:16].replace("T", " ") for k in ("created_at", "last_used_at", "revoked_at")))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)


@api_key_app.command("revoke")
def revoke(key: Annotated[str, typer.Argument(help="the key id or the whole key")], api_key: ApiKey = None) -> None:
    """Revoke an API key; tokens already issued stay valid until they expire."""
    key_id = key.split("_")[1] if key.startswith("al_") and key.count("_") >= 2 else key
    client = GatewayClient(gateway_url())
    resp = client.call(client.token_for(credentials(api_key)), "DELETE", f"/v1/admin/api-keys/{key_id}",
                       expect=(204, 404))
    if resp.status_code == 404:
        err.print("no active key matched")
        raise typer.Exit(1)
    err.print("revoked")


def token(
    api_key: Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """Exchange an API key for an access token (JWT) and print it."""
    creds = credentials(api_key)
    typer.echo(GatewayClient(gateway_url()).token_for(creds))
