"""`agentloop label-queue`: the runs that most need a human label (GET /v1/ops/label-queue,
operator role), most needed first: the lowest GroupThink confidence, then failed runs by class.
Label one with feedback on the run (`POST /v1/runs/{run_id}/feedback`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contracts.learning import LabelQueue

from ..client import GatewayClient
from ..config import credentials, gateway_url

ApiKey = Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")]


def _made(candidate: dict[str, Any]) -> str:
    calls = candidate.get("calls") or []
    if calls:
        return "; ".join(f"{c.get('name')}({json.dumps(c.get('arguments'), sort_keys=True)})" for c in calls)
    answer = candidate.get("answer")
    return f"answer: {answer}" if answer else "-"


def queue_table(body: dict[str, Any]) -> Table:
    table = Table("run", "confidence", "label", "model", "instruction", "made", title=(
        f"{len(body.get('runs') or [])} of {body.get('waiting', 0)} runs waiting for a label"))
    for c in body.get("runs") or []:
        confidence = c.get("confidence")
        table.add_row(
            c["run_id"], f"{confidence:.2f}" if isinstance(confidence, int | float) else "-", c.get("label") or "",
            c.get("model_version") or "", (c.get("instruction") or "")[:80], _made(c)[:80],
        )
    return table


def label_queue(
    limit: Annotated[int, typer.Option(min=1, max=LabelQueue.MAX_LIMIT, help="how many runs to list")] = 20,
    model_version: Annotated[str | None, typer.Option("--model", help="only runs served by this version")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the gateway's answer as JSON")] = False,
    api_key: ApiKey = None,
) -> None:
    """List the runs that most need a human label (operator)."""
    client = GatewayClient(gateway_url())
    token = client.token_for(credentials(api_key))
    params: dict[str, Any] = {"limit": limit}
    if model_version:
        params["model_version"] = model_version
    body = client.call(token, "GET", "/v1/ops/label-queue", params=params).json()
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # rich assumes 80 columns when stdout is not a terminal
    console.print(queue_table(body))
