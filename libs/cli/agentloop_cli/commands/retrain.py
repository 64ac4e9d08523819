"""`agentloop retrain`: ask the log-miner (through the gateway's POST /v1/ops/retrain, operator
role) for a new dataset version and a training run on it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from contracts import DatasetOptions, LoraOptions

from ..client import GatewayClient, GatewayError
from ..config import ConfigError, credentials, gateway_url

FORMATS = ("openai", "sharegpt", "alpaca", "bfcl")


def absolute_source(source: str, cwd: Path | None = None) -> str:
    """`bfcl:./x.jsonl` → `bfcl:/abs/x.jsonl`: the log-miner reads local paths on its own host,
    so a relative path is resolved here, against the working directory."""
    if source == "mined":
        return source
    head, sep, rest = source.partition(":")
    fmt, location = (head, rest) if sep and head in FORMATS else ("", source)
    if not location.startswith(("s3://", "/")):
        location = str(((cwd or Path.cwd()) / location).resolve())
    return f"{fmt}:{location}" if fmt else location


def name_numbers(items: list[str], flag: str, what: str) -> dict[str, float]:
    """`["a=2", "b=0.5"]` → `{"a": 2.0, "b": 0.5}`; ConfigError naming `flag` for a malformed item."""
    parsed: dict[str, float] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name or number is None:
            raise ConfigError(f"{flag} takes {what}=NUMBER, got {item!r}")
        parsed[name] = number
    return parsed


def retrain_body(*, reason: str = "", sources: list[str] | None = None, weights: list[str] | None = None,
                 max_steps: int | None = None, base_model: str | None = None, val_fraction: float | None = None,
                 max_examples: int | None = None, shape_weights: list[str] | None = None,
                 cwd: Path | None = None) -> dict[str, Any]:
    """The JSON body of POST /v1/ops/retrain; checked against the contracts before sending."""
    dataset: dict[str, Any] = {}
    if sources:
        dataset["sources"] = [absolute_source(s, cwd) for s in sources]
    if weights:
        dataset["weights"] = {name if name in ("mined", *FORMATS) else absolute_source(name, cwd): number
                              for name, number in name_numbers(weights, "--weight", "SOURCE").items()}
    if shape_weights:
        dataset["shape_weights"] = name_numbers(shape_weights, "--shape-weight", "SHAPE")
    if val_fraction is not None:
        dataset["val_fraction"] = val_fraction
    if max_examples is not None:
        dataset["max_examples"] = max_examples
    training = {"max_steps": max_steps} if max_steps is not None else {}
    try:
        DatasetOptions.model_validate(dataset)
        LoraOptions.model_validate(training)
    except ValidationError as exc:
        raise ConfigError(f"invalid retrain options:\n{exc}") from None
    body: dict[str, Any] = {"reason": reason}
    if dataset:
        body["dataset"] = dataset
    if training:
        body["training"] = training
    if base_model:
        body["base_model"] = base_model
    return body


def retrain(
    reason: Annotated[str, typer.Option(help="why (kept in the audit log and the dataset manifest)")] = "",
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="mined (default), or a corpus FORMAT:PATH with FORMAT openai|sharegpt|alpaca|bfcl, "
                         "or s3://bucket/key; repeat to mix. Giving any replaces the default 'mined'.")] = None,
    weight: Annotated[list[str] | None, typer.Option(
        "--weight", help="SOURCE=NUMBER: repeat or subsample a source (2 = twice, 0.5 = half); repeatable")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="training steps at most")] = None,
    base_model: Annotated[str | None, typer.Option(help="base model to train (default: the log-miner's)")] = None,
    val_fraction: Annotated[float | None, typer.Option(min=0.0, max=0.99, help="share kept for validation")] = None,
    max_examples: Annotated[int | None, typer.Option(min=1, help="cap on the dataset's size")] = None,
    shape_weight: Annotated[list[str] | None, typer.Option(
        "--shape-weight", help="SHAPE=NUMBER: copies per train example of that shape (no_call, parallel, multi_turn, "
                               "single_call, text, corrected), over the log-miner's defaults; repeatable")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", help="show the retrain's progress from its events (dataset, a bar of training steps with loss "
                         "and ETA, export, gate, deployment) until it is deployed or fails; needs BROKER__URL")] = False,
    follow_timeout_s: Annotated[float, typer.Option(min=10, help="--follow: give up after this many seconds")] = 7200,
    api_key: Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """Ask for a new dataset (mined runs and feedback, plus any corpora) and a training run on it."""
    body = retrain_body(reason=reason, sources=source, weights=weight, max_steps=max_steps, base_model=base_model,
                        val_fraction=val_fraction, max_examples=max_examples, shape_weights=shape_weight)
    if follow:
        raise typer.Exit(asyncio.run(_follow(lambda: _request(body, api_key), follow_timeout_s)))
    _request(body, api_key)


def _request(body: dict[str, Any], api_key: str | None) -> str:
    client = GatewayClient(gateway_url())
    token = client.token_for(credentials(api_key))
    try:
        resp = httpx.post(f"{client.base_url}/v1/ops/retrain", json=body,
                          headers={"Authorization": f"Bearer {token}"}, timeout=client.timeout)
    except httpx.HTTPError as exc:
        raise GatewayError(f"cannot reach the gateway at {client.base_url}: {exc}") from None
    if resp.status_code != 202:
        detail = resp.text[:300]
        if resp.status_code == 403:
            detail = "this needs an operator (or admin) key"
        raise GatewayError(f"retrain refused ({resp.status_code}): {detail}")
    request_id = resp.json()["request_id"]
    Console(stderr=True).print(f"retrain requested: [bold]{request_id}[/] (dataset and training follow on the "
                               "log-miner and trainer; see their logs or `agentloop status`)")
    typer.echo(request_id)
    return request_id


async def _follow(request: Callable[[], str], timeout_s: float) -> int:
    """Follow one retrain by its events (loopdemo's tracker): a line per stage, a bar of training
    steps with loss, learning rate and ETA. 0 once deployed, 1 when a stage failed or time ran out."""
    from loopdemo.events import EventFeed, LoopFailedError, LoopTracker

    console = Console(stderr=True)
    try:
        async with EventFeed(os.environ.get("BROKER__URL", "amqp://guest:guest@127.0.0.1:5672/")) as feed:
            tracker = LoopTracker(await asyncio.to_thread(request))  # the feed listens before the request goes
            deadline = time.monotonic() + timeout_s
            with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console) as bars:
                task = bars.add_task("training", total=None, note="waiting for the dataset", visible=True)
                while not tracker.finished:
                    if time.monotonic() > deadline:
                        console.print(f"[red]retrain not deployed within {timeout_s:.0f} s[/]")
                        return 1
                    msg = await feed.next(timeout=1.0)
                    step = tracker.accept(msg) if msg is not None else None
                    if step is None:
                        continue
                    p = tracker.progress
                    if step.stage == "training" and p is not None and not step.done:
                        bars.update(task, total=p.total_steps, completed=p.step, note=_progress_note(p))
                    else:
                        bars.console.print(("[red]" if step.failed else "") + f"{step.stage}: {step.text}"
                                           + ("[/]" if step.failed else ""))
    except LoopFailedError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    if tracker.failure:
        console.print(f"[red]retrain failed: {tracker.failure}[/]")
        return 1
    return 0


def _progress_note(p: Any) -> str:
    parts = [f"loss {p.loss:.3f}" if p.loss is not None else "",
             f"lr {p.learning_rate:.1e}" if p.learning_rate is not None else "",
             f"ETA {p.eta_s:.0f}s" if p.eta_s is not None else ""]
    return "  ".join(x for x in parts if x)
