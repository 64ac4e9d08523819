"""`agentloop dataset export VERSION`: a dataset version's split as OpenAI chat fine-tuning JSONL
(GET /v1/ops/datasets/{version}/export, operator role), which OpenAI fine-tuning, TRL and
`datasets.load_dataset("json", ...)` load as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..client import GatewayClient
from ..config import credentials, gateway_url

dataset_app = typer.Typer(help="Dataset versions the log-miner built.", no_args_is_help=True)


@dataset_app.command("export")
def export(
    version: Annotated[int, typer.Argument(min=1, help="the dataset version (DatasetBuilt.version)")],
    split: Annotated[str, typer.Option(help="train or val")] = "train",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write here instead of standard output")] = None,
    api_key: Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """Export one split of a dataset version as OpenAI chat fine-tuning JSONL (operator)."""
    if split not in ("train", "val"):
        raise typer.BadParameter("train or val", param_hint="--split")
    client = GatewayClient(gateway_url())
    token = client.token_for(credentials(api_key))
    data = client.call(token, "GET", f"/v1/ops/datasets/{version}/export",
                       params={"split": split, "format": "openai"}).content
    if out is None:
        typer.echo(data.decode(), nl=False)
        return
    out.write_bytes(data)
    examples = len(data.splitlines())
    typer.echo(f"{examples} examples of dataset v{version} ({split}) written to {out}", err=True)
