"""The openai engine against a real OpenAI-compatible server: llama-cpp-python's server on the
bundled model, started as a subprocess.

It is started through `python -m agent_runner.llamacpp_server` (the stock
`python -m llama_cpp.server` with llama.cpp's extra buffer types off): the stock server has
no option for that and dies with SIGILL on its first completion on CPUs whose AMX repacking
path faults, as the embedded engine does without the setting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent_runner.adapters.openai_engine import OpenAIEngine
from agent_runner.domain import EngineError
from modelkit.base_model import bundled_gguf_path
from modelkit.chat_format import STOP_STRINGS, render_prompt
from tests.harness import free_port, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(__import__("importlib").util.find_spec(m) is None for m in ("sse_starlette", "starlette_context")),
        reason="llama_cpp.server needs sse-starlette and starlette-context (pip install -e .[test])",
    ),
]


@pytest.fixture(scope="module")
def server(session_tmp: Path) -> Iterator[str]:
    port = free_port()
    log = open(session_tmp / "llama_server.log", "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [sys.executable, "-m", "agent_runner.llamacpp_server", "--model", str(bundled_gguf_path()),
         "--model_alias", "gemma3-270m", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
         "--n_threads", "2", "--n_threads_batch", "2"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ENGINE__USE_EXTRA_BUFTS": "false"},
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until(lambda: process.poll() is None and httpx.get(f"{base_url}/models", timeout=2).status_code == 200,
                   120, what="llama_cpp server")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        if process.returncode not in (0, -15):
            print((session_tmp / "llama_server.log").read_text(errors="replace")[-3000:])


async def test_streams_a_completion_of_our_own_prompt(server):
    engine = OpenAIEngine(server, "gemma3-270m", model_version="served-v1")
    prompt = render_prompt([{"role": "user", "content": "What is the capital of France?"}])
    chunks = [c async for c in engine.generate(prompt, max_tokens=10, temperature=0.0, stop=STOP_STRINGS)]
    await engine.ping()
    await engine.close()

    text = "".join(c.text for c in chunks)
    assert text.strip() and "<end_of_turn>" not in text
    assert chunks[-1].finish_reason in ("stop", "length")
    assert 1 <= chunks[-1].completion_tokens <= 10
    assert engine.model_version == "served-v1" and engine.name == "openai"


async def test_the_server_survives_several_generations(server):
    engine = OpenAIEngine(server, "gemma3-270m")
    for question in ("Say hello.", "Name a colour."):
        prompt = render_prompt([{"role": "user", "content": question}])
        chunks = [c async for c in engine.generate(prompt, max_tokens=6, temperature=0.0, stop=STOP_STRINGS)]
        assert chunks
    await engine.close()


async def test_an_unreachable_server_is_an_engine_error():
    engine = OpenAIEngine(f"http://127.0.0.1:{free_port()}/v1", "m")
    with pytest.raises(EngineError):
        [c async for c in engine.generate("p", max_tokens=4, temperature=0, stop=())]
    await engine.close()


async def test_a_constraint_reaches_the_server_as_its_grammar(server):
    """llama_cpp.server takes the GBNF in `grammar`: the bundled base model, which on its own
    answers this prompt by repeating the tool instructions, writes a valid call under it."""
    from modelkit.chat_format import parse_output
    from modelkit.tool_grammar import ToolConstraint

    calculator = {"type": "function", "function": {"name": "calculator", "description": "Evaluate arithmetic",
                  "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                                 "required": ["expression"]}}}
    engine = OpenAIEngine(server, "gemma3-270m")
    prompt = render_prompt([{"role": "user", "content": "What is 17*23?"}], [calculator])
    free = [c async for c in engine.generate(prompt, max_tokens=8, temperature=0.0, stop=STOP_STRINGS)]
    chunks = [c async for c in engine.generate(prompt, max_tokens=40, temperature=0.0, stop=STOP_STRINGS,
                                               constraint=ToolConstraint((calculator,), "required"))]
    await engine.close()

    assert not "".join(c.text for c in free).startswith("<tool_call>")
    calls = parse_output("".join(c.text for c in chunks)).calls
    assert len(calls) >= 1 and calls[0].error is None and calls[0].name == "calculator"
    assert isinstance(calls[0].arguments.get("expression"), str)
    assert chunks[-1].constrained and not free[-1].constrained
