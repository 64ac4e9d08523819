"""`agentloop eval FILE`: replay a BFCL-format file through the gateway, as a client would, and
print accuracy per category, valid calls, latency and GroupThink agreement (`--json`: one
document). The stack must be running; any key may run it (resolving an alias needs an operator's)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..config import ConfigError, credentials, gateway_url


def categories_of(values: list[str] | None) -> list[str] | None:
    """`--categories simple,multiple` and `--categories simple --categories multiple` alike."""
    names = [name.strip() for value in values or [] for name in value.split(",") if name.strip()]
    return names or None


def eval_command(
    file: Annotated[Path, typer.Argument(help="BFCL-format JSONL file, or a directory of them", exists=True)],
    model: Annotated[str | None, typer.Option(help="model version or alias to ask for (options.model); "
                                                   "eval fails if a run is served by another")] = None,
    groupthink: Annotated[int | None, typer.Option(min=2, max=64, help="GroupThink samples per turn")] = None,
    constrained: Annotated[Literal["on", "off"] | None, typer.Option(
        help="grammar-constrained tool calls (options.constrained auto|off); default: the engine's setting")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most N items per category")] = None,
    categories: Annotated[list[str] | None, typer.Option(help="only these categories (comma-separated or "
                                                              "repeated)")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="runs in flight at once (1: latencies are the "
                                                                 "model's, not queueing)")] = 1,
    max_tokens: Annotated[int, typer.Option(min=8, max=8192, help="tokens per model turn")] = 256,
    timeout: Annotated[float, typer.Option(min=1, help="seconds one run may take")] = 180.0,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout instead of the table")] = False,
    api_key: Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """Measure the served model on a BFCL-format file: accuracy per category, valid calls, latency."""
    from loopdemo.evaluation import EvalError, EvalOptions, EvalReport, ModelMismatchError, replay, resolve_model, \
        select
    from loopdemo.gateway import DemoGateway
    from loopdemo.tasks import TaskFileError, load_tasks

    try:
        tasks = select(load_tasks(file), categories_of(categories), limit)
    except (TaskFileError, EvalError) as exc:
        raise ConfigError(str(exc)) from None
    options = EvalOptions(model=model, groupthink=groupthink, constrained=constrained, max_tokens=max_tokens,
                          run_timeout_s=timeout)
    creds = credentials(api_key)
    err = Console(stderr=True)

    async def go() -> EvalReport:
        gateway = DemoGateway(gateway_url(), api_key=creds.api_key, token=creds.token)
        try:
            expected = await resolve_model(gateway, model)
            if model is not None and expected is None:
                err.print(f"[yellow]{model!r} could not be resolved (GET /v1/registry/models needs an operator key): "
                          "every run must be served by the first run's version[/]")
            progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True)
            bar = progress.add_task(f"eval {file.name}", total=len(tasks))

            def judged(item, done: int, correct: int) -> None:
                progress.update(bar, advance=1, description=f"eval {file.name}: {correct}/{done} correct")

            t0 = time.monotonic()
            with progress:
                results = await replay(gateway, tasks, options, concurrency=concurrency, expected_version=expected,
                                       on_judged=judged)
            return EvalReport(str(file), options, results, time.monotonic() - t0, expected)
        finally:
            await gateway.close()

    try:
        report = asyncio.run(go())
    except ModelMismatchError as exc:
        err.print(f"[red]agentloop eval: {exc}[/]")
        raise typer.Exit(1) from None
    except EvalError as exc:
        raise ConfigError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(report.table())
