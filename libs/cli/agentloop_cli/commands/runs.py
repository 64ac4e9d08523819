"""`agentloop run`: submit a run over the gateway's WebSocket and print it as it happens."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from contracts import ToolSpec

from ..client import TERMINAL, GatewayClient
from ..config import ConfigError, credentials, gateway_url

# Outcomes of a completed run that count as success for the exit status.
SUCCESS = {"answered", "client_tool_call"}


def load_tools(path: Path) -> list[dict[str, Any]]:
    """A JSON file with a list of tools (OpenAI function format) or {"tools": [...]}."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read tools from {path}: {exc}") from None
    if isinstance(doc, dict) and "tools" in doc:
        doc = doc["tools"]
    try:
        tools = TypeAdapter(list[ToolSpec]).validate_python(doc)
    except ValidationError as exc:
        raise ConfigError(f"{path} is not a list of tools in OpenAI function format:\n{exc}") from None
    return [t.model_dump(mode="json") for t in tools]


class StepPrinter:
    """Tokens inline as they arrive; tool calls, results and the outcome on their own lines."""

    def __init__(self, out: Console, err: Console) -> None:
        self.out = out
        self.err = err
        self.mid_line = False  # tokens printed since the last newline

    def _newline(self) -> None:
        if self.mid_line:
            self.out.print()
            self.mid_line = False

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "accepted":
            self.err.print(f"[dim]run {event.get('run_id')} accepted[/]")
        elif kind == "step":
            self.step(event)

    def step(self, step: dict[str, Any]) -> None:
        kind = step.get("kind")
        if kind == "token":
            self.out.print(step.get("text") or "", end="", markup=False, highlight=False)
            self.mid_line = True
        elif kind == "tool_call":
            self._newline()
            call = step.get("tool_call") or {}
            if call.get("name"):
                args = json.dumps(call.get("arguments") or {}, ensure_ascii=False)
                self.out.print(f"-> {call['name']}({args})", style="cyan", markup=False, highlight=False)
            else:
                self.out.print("[yellow]-> (malformed tool call)[/]", highlight=False)
        elif kind == "tool_result":
            self._newline()
            result = step.get("tool_result")
            text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
            style = "red" if step.get("is_error") else "green"
            self.out.print(f"<- {text}", style=style, markup=False, highlight=False)
        elif kind == "error":
            self._newline()
            self.err.print(f"[red]error: {step.get('text')}[/]")
        # "started" and "final" add nothing the tokens and the completion do not show

    def finish(self, event: dict[str, Any]) -> int:
        self._newline()
        kind = event.get("type")
        if kind == "failed":
            error = event.get("error") or {}
            reason = error.get("reason") if isinstance(error, dict) else error
            code = error.get("code") if isinstance(error, dict) else None
            self.err.print(f"[red]run failed{f' ({code})' if code else ''}: {reason or event.get('reason')}[/]")
            return 1
        if kind == "error":  # refused before it ran: auth, validation, rate limit
            self.err.print(f"[red]refused ({event.get('status')}): {event.get('detail')}[/]")
            return 1
        if kind == "timeout":
            self.err.print(f"[yellow]no outcome before the deadline; the run may still finish: "
                           f"GET /v1/runs/{event.get('run_id')}[/]")
            return 1
        outcome = event.get("outcome")
        answer = event.get("answer")
        for call in event.get("client_tool_calls") or []:  # model text: never read as rich markup
            self.out.print(f"client tool call: {call.get('name')}({json.dumps(call.get('arguments', {}))})",
                           markup=False, highlight=False)
        self.out.print("[bold]answer:[/] ", end="")
        self.out.print(answer if answer is not None else "(none)", markup=False, highlight=False)
        facts = [f"outcome {outcome}"]
        if event.get("model_version"):
            facts.append(f"model {event['model_version']}")
        self.err.print(f"[dim]{', '.join(facts)}[/]")
        return 0 if outcome in SUCCESS else 1


def run(
    instruction: Annotated[str, typer.Argument(help="what the agent should do")],
    tools: Annotated[Path | None, typer.Option(help="JSON file of extra (client-side) tools")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, max=32, help="model turns at most")] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="tokens per model turn at most")] = None,
    no_server_tools: Annotated[bool, typer.Option("--no-server-tools", help="do not offer the runner's tools")] = False,
    api_key: Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """Run the agent on an instruction, streaming its tokens and tool calls; exit 1 unless it answers."""
    request: dict[str, Any] = {"instruction": instruction}
    if tools is not None:
        request["tools"] = load_tools(tools)
    options: dict[str, Any] = {}
    if max_steps is not None:
        options["max_steps"] = max_steps
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    if no_server_tools:
        options["server_tools"] = False
    if options:
        request["options"] = options
    client = GatewayClient(gateway_url())
    token = client.token_for(credentials(api_key))
    printer = StepPrinter(Console(highlight=False), Console(stderr=True, highlight=False))

    async def go() -> int:
        async for event in client.stream_run(token, request):
            if event.get("type") in TERMINAL:
                return printer.finish(event)
            printer.event(event)
        return 1  # unreachable: stream_run raises when the stream ends early

    raise typer.Exit(asyncio.run(go()))
