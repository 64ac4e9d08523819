"""The ollama engine against a local stand-in for an Ollama server.

No Ollama server runs here, so this module serves Ollama's `/api/generate` streaming
protocol (newline-delimited JSON, a final object with `done: true` and the counts) and
`/api/tags`, and records what the client sent. It is our test counterpart, not Ollama.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent_runner.adapters.ollama_engine import OllamaEngine
from agent_runner.domain import EngineError
from agent_runner.service import AgentLoop
from agent_runner.metrics import RunnerMetrics
from agent_runner.tools.calculator import CalculatorTool
from contracts import AgentRunRequested, ChatMessage, Principal, RunOptions
from modelkit.chat_format import STOP_STRINGS, render_prompt
from prometheus_client import CollectorRegistry

REPLIES = {
    "first": ['<tool_call>{"name": "calculator", ', '"arguments": {"expression": "17*23"}}</tool_call>'],
    "second": ["17*23 ", "is ", "391."],
    # under `format` a server writes only the JSON: the prompt already ends with <tool_call>
    "constrained": ['{"name": "calculator", ', '"arguments": {"expression": "17*23"}}'],
}


class FakeOllama(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/api/tags":
            self._json({"models": [{"name": "agentloop:test", "model": "agentloop:test"}]})
        else:
            self.send_error(404)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOllama.requests.append(body)
        if body.get("model") == "broken":
            self._json({"error": "model runner has unexpectedly stopped"}, status=500)
            return
        pieces = REPLIES["constrained" if body.get("format") else "second" if "<tool_result" in body["prompt"]
                         else "first"]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for piece in pieces:
            self._line({"model": body["model"], "created_at": "2026-01-01T00:00:00Z", "response": piece, "done": False})
        self._line({"model": body["model"], "created_at": "2026-01-01T00:00:00Z", "response": "", "done": True,
                    "done_reason": "stop", "prompt_eval_count": 42, "eval_count": len(pieces),
                    "total_duration": 1000, "eval_duration": 500})

    def _line(self, doc: dict) -> None:
        self.wfile.write(json.dumps(doc).encode() + b"\n")
        self.wfile.flush()

    def _json(self, doc: dict, status: int = 200) -> None:
        payload = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        return None


@pytest.fixture(scope="module")
def ollama_host() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_streams_a_raw_generation_with_our_prompt_and_options(ollama_host):
    engine = OllamaEngine(ollama_host, "agentloop:test", model_version="v3")
    prompt = render_prompt([{"role": "user", "content": "What is 17*23?"}])
    chunks = [c async for c in engine.generate(prompt, max_tokens=32, temperature=0.0, stop=STOP_STRINGS)]
    await engine.close()

    sent = FakeOllama.requests[-1]
    assert sent["raw"] is True and sent["stream"] is True and sent["prompt"] == prompt
    assert sent["options"]["num_predict"] == 32 and sent["options"]["stop"] == list(STOP_STRINGS)
    assert sent["options"]["temperature"] == 0.0
    assert "".join(c.text for c in chunks).startswith("<tool_call>")
    assert chunks[-1].prompt_tokens == 42 and chunks[-1].completion_tokens == 2 and chunks[-1].finish_reason == "stop"
    assert engine.model_version == "v3" and engine.name == "ollama"


async def test_a_whole_run_through_the_ollama_engine(ollama_host):
    engine = OllamaEngine(ollama_host, "agentloop:test")
    loop = AgentLoop(server_tools={"calculator": CalculatorTool()}, metrics=RunnerMetrics(CollectorRegistry()))
    request = AgentRunRequested.create(
        correlation_id="r", run_id="r", messages=[ChatMessage(role="user", content="What is 17*23?")],
        options=RunOptions(), principal=Principal(subject="t", role="user"),
    )

    class Sink:
        async def step(self, step): ...
        async def final(self, message): ...

    result = await loop.run(request, engine, Sink())
    await engine.close()
    assert result.outcome == "answered" and result.answer == "17*23 is 391."
    assert result.steps[2].tool_result == 391
    assert result.usage.prompt_tokens == 84


async def test_server_errors_and_an_unreachable_server_are_engine_errors(ollama_host):
    broken = OllamaEngine(ollama_host, "broken")
    with pytest.raises(EngineError, match="unexpectedly stopped"):
        [c async for c in broken.generate("p", max_tokens=4, temperature=0, stop=())]
    await broken.ping()
    await broken.close()

    nowhere = OllamaEngine("http://127.0.0.1:1", "agentloop:test")
    with pytest.raises(EngineError, match="ollama at http://127.0.0.1:1"):
        [c async for c in nowhere.generate("p", max_tokens=4, temperature=0, stop=())]
    await nowhere.close()


async def test_a_turn_that_must_call_sends_the_call_schema_as_format_and_gets_a_closed_block(ollama_host):
    from modelkit.chat_format import canonical_schema, parse_output
    from modelkit.tool_grammar import ToolConstraint, loosened

    calculator = CalculatorTool().spec.model_dump()
    engine = OllamaEngine(ollama_host, "agentloop:test")
    prompt = render_prompt([{"role": "user", "content": "What is 17*23?"}], [calculator])
    chunks = [c async for c in engine.generate(prompt, max_tokens=32, temperature=0.0, stop=STOP_STRINGS,
                                               constraint=ToolConstraint((calculator,), "required"))]
    free = [c async for c in engine.generate(prompt, max_tokens=32, temperature=0.0, stop=STOP_STRINGS,
                                             constraint=ToolConstraint((calculator,), "auto"))]
    await engine.close()

    constrained, unconstrained = FakeOllama.requests[-2:]
    assert constrained["prompt"] == prompt + "<tool_call>"
    assert constrained["format"]["properties"]["name"] == {"const": "calculator"}
    # the tool's schema as the grammar sees it: keys by name, bounds above 100 left to the validator
    arguments = loosened(canonical_schema(calculator["function"]["parameters"]))
    assert constrained["format"]["properties"]["arguments"] == arguments
    text = "".join(c.text for c in chunks)
    assert text == '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>'
    assert parse_output(text).calls[0].arguments == {"expression": "17*23"}
    assert chunks[-1].constrained and chunks[-1].unconstrained_tools == ()
    assert "format" not in unconstrained and unconstrained["prompt"] == prompt  # auto: Ollama cannot say "text or calls"
    assert not free[-1].constrained
