"""`agentloop models`, `agentloop promote VERSION`, `agentloop rollback`: the model registry
through the gateway (operator role). The exporter carries out promotions and rollbacks; `--wait`
waits until the registry shows the new production version."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from ..client import GatewayClient
from ..config import credentials, gateway_url

ApiKey = Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")]
Reason = Annotated[str, typer.Option(help="why (kept in the audit log and the alias history)")]
Wait = Annotated[bool, typer.Option("--wait", help="return once production has moved (exit 1 if not in time)")]
WaitSeconds = Annotated[float, typer.Option(min=0.1, max=300, help="how long --wait waits at most")]


def _client(api_key: str | None) -> tuple[GatewayClient, str]:
    client = GatewayClient(gateway_url())
    return client, client.token_for(credentials(api_key))


def models_table(body: dict[str, Any]) -> Table:
    """One row per version: the columns an operator decides a promotion on."""
    table = Table("version", "aliases", "status", "quant", "created", "score")
    for v in body.get("versions", []):
        score = v.get("primary_score")
        table.add_row(
            v["version"], ", ".join(v.get("aliases") or []) or "-", v.get("status") or "",
            v.get("quantization") or "-", (v.get("created_at") or "")[:16].replace("T", " "),
            f"{score:.3f}" if isinstance(score, int | float) else "-",
        )
    return table


def models(
    alias: Annotated[str | None, typer.Option(help="only the version this alias names (production, candidate, "
                                                   "previous)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the gateway's answer as JSON")] = False,
    api_key: ApiKey = None,
) -> None:
    """List model versions: aliases, status, served quant, creation time, gate score."""
    client, token = _client(api_key)
    params = {"alias": alias} if alias else None
    body = client.call(token, "GET", "/v1/registry/models", params=params).json()
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # rich assumes 80 columns when stdout is not a terminal
    console.print(models_table(body))


def _report(answer: dict[str, Any], wait: bool) -> None:
    err = Console(stderr=True)
    action, version, status = answer["action"], answer["model_version"], answer["status"]
    if status == "done":
        err.print(f"{action}: production is now [bold]{answer.get('production')}[/]")
    elif status == "pending":
        err.print(f"[yellow]{action} requested ({answer['request_id']}), but production is still "
                  f"{answer.get('production')}, not {version}: see the exporter's log[/]")
    else:
        err.print(f"{action} requested: [bold]{answer['request_id']}[/] ({version} becomes production once the "
                  "exporter has moved the alias; `agentloop models` shows it)")
    typer.echo(answer["request_id"])
    if wait and status != "done":
        raise typer.Exit(1)


def _command(path: str, body: dict[str, Any], wait: bool, wait_s: float, api_key: str | None) -> None:
    client, token = _client(api_key)
    params = {"wait": "true", "wait_s": str(wait_s)} if wait else None
    resp = client.call(token, "POST", path, json=body, params=params, expect=(200, 202),
                       timeout=client.timeout + (wait_s if wait else 0))
    _report(resp.json(), wait)


def promote(
    version: Annotated[str, typer.Argument(help="a registered, evaluated model version")],
    reason: Reason = "",
    quantization: Annotated[str | None, typer.Option(help="which exported GGUF to serve (default: the "
                                                          "evaluated one)")] = None,
    wait: Wait = False,
    wait_s: WaitSeconds = 60.0,
    api_key: ApiKey = None,
) -> None:
    """Make VERSION the production model (the runners reload it)."""
    body: dict[str, Any] = {"reason": reason}
    if quantization:
        body["quantization"] = quantization
    _command(f"/v1/registry/models/{quote(version, safe='@')}/promote", body, wait, wait_s, api_key)


def rollback(reason: Reason = "", wait: Wait = False, wait_s: WaitSeconds = 60.0, api_key: ApiKey = None) -> None:
    """Move production back to the previous version (the runners reload it)."""
    _command("/v1/registry/models/rollback", {"reason": reason}, wait, wait_s, api_key)
