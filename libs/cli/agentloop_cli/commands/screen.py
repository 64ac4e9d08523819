"""`agentloop screen FILE.jsonl`: screen each line's `text` for prompt injection through the
gateway's operator route (POST /v1/ops/screen, the screener the gateway and runner serve with)
and print one JSON verdict per line: flagged, category, score, the rules and part that fired."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..client import GatewayClient
from ..config import credentials, gateway_url

SOURCES = ("user", "system", "tool")


def read_items(path: Path) -> list[dict[str, Any]]:
    """Lines with a string `text` and optionally `source` (user|system|tool) and `note`; a clear
    error naming the line otherwise."""
    items = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"line {n} is not JSON: {exc.msg}", param_hint="FILE") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise typer.BadParameter(f"line {n} has no string `text`", param_hint="FILE")
        source = row.get("source", "user")
        if source not in SOURCES:
            raise typer.BadParameter(f"line {n}: source {source!r} is not one of {', '.join(SOURCES)}",
                                     param_hint="FILE")
        items.append({"text": row["text"], "source": source,
                      **({"note": str(row["note"])[:2000]} if row.get("note") else {})})
    return items


def screen(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL lines {text, source?}")],
    batch: Annotated[int, typer.Option(min=1, max=256, help="texts per request")] = 64,
    api_key: Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """Screen a file's texts for prompt injection (operator); one JSON verdict per line on stdout."""
    items = [{k: v for k, v in item.items() if k != "note"} for item in read_items(file)]
    client = GatewayClient(gateway_url(), timeout=120)
    token = client.token_for(credentials(api_key))
    flagged = 0
    progress = Progress(TextColumn("screening"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty())
    with progress:
        task = progress.add_task("screen", total=len(items))
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            verdicts = client.call(token, "POST", "/v1/ops/screen", json={"items": chunk}).json()["verdicts"]
            for verdict in verdicts:
                flagged += verdict["flagged"]
                typer.echo(json.dumps(verdict, separators=(",", ":")))
            progress.advance(task, len(chunk))
    typer.echo(f"{flagged} of {len(items)} texts flagged", err=True)


marks_app = typer.Typer(help="Operators' marks on screened texts: training data for the screening classifier.",
                        no_args_is_help=True)


@marks_app.command("add")
def add_marks(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL lines {text, source?, note?}")],
    label: Annotated[str, typer.Option(help="benign (false positives) or malicious (misses)")],
    api_key: Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """Mark every text of a file with one label (operator)."""
    if label not in ("benign", "malicious"):
        raise typer.BadParameter("benign or malicious", param_hint="--label")
    marks = [{**item, "label": label} for item in read_items(file)]
    client = GatewayClient(gateway_url())
    token = client.token_for(credentials(api_key))
    marked = 0
    for start in range(0, len(marks), 500):
        marked += client.call(token, "POST", "/v1/ops/screen/marks", json={"marks": marks[start:start + 500]},
                              expect=(201,)).json()["marked"]
    typer.echo(f"{marked} texts marked {label}", err=True)


@marks_app.command("export")
def export_marks(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write here instead of standard output")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="newest first")] = 10_000,
    api_key: Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """The marks as corpus lines for `python -m screening.train CORPUS --extra FILE` (operator)."""
    client = GatewayClient(gateway_url())
    token = client.token_for(credentials(api_key))
    data = client.call(token, "GET", "/v1/ops/screen/marks", params={"limit": limit}).content
    if out is None:
        typer.echo(data.decode(), nl=False)
        return
    out.write_bytes(data)
    typer.echo(f"{len(data.splitlines())} marks written to {out}", err=True)


def flagged(
    since: Annotated[str | None, typer.Option(help="ISO date or time; default: the last 7 days")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="newest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON run per line")] = False,
    texts: Annotated[Path | None, typer.Option(help="also write each flag's text as a line for "
                                                    "`agentloop screen-marks add FILE --label benign`")] = None,
    api_key: Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """Runs the prompt-injection screen fired on (operator): what fired, where, and the verdict."""
    client = GatewayClient(gateway_url())
    token = client.token_for(credentials(api_key))
    params: dict[str, Any] = {"limit": limit, **({"since": since} if since else {})}
    runs = client.call(token, "GET", "/v1/ops/screen/flagged", params=params).json()["runs"]
    if texts is not None:
        lines = [json.dumps({"text": f["excerpt"], "source": f["source"],
                             "note": f"run {r['run_id']} {f.get('loc') or 'step ' + str(f.get('step'))}"})
                 for r in runs for f in r["flags"]]
        texts.write_text("".join(line + "\n" for line in lines))
        typer.echo(f"{len(lines)} flagged texts written to {texts}", err=True)
    if as_json:
        for run in runs:
            typer.echo(json.dumps(run, separators=(",", ":")))
        return
    table = Table("created", "run", "status", "source", "where", "action", "category", "score", "fired", "excerpt")
    for run in runs:
        for f in run["flags"]:
            where = f.get("loc") or f"step {f.get('step')} {f.get('tool') or ''}".strip()
            table.add_row(run["created_at"][:19], run["run_id"][:12], run["status"], f["source"], where, f["action"],
                          f.get("category") or "", f"{f['score']:.2f}", ", ".join(f["rules"]) or "classifier",
                          f["excerpt"][:60].replace("\n", " "))
    Console(width=None if sys.stdout.isatty() else 220).print(table)  # piped: wide enough not to elide
    typer.echo(f"{len(runs)} runs flagged", err=True)
