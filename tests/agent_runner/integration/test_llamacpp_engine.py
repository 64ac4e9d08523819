"""The embedded llama.cpp engine on the real bundled Gemma 3 270M (Q4_K_M). Short generations:
the model is loaded once for the module and every turn is capped at a few tokens."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from agent_runner.adapters.llamacpp_engine import LlamaCppEngine
from agent_runner.domain import PromptTooLongError
from agent_runner.metrics import RunnerMetrics
from agent_runner.service import AgentLoop
from agent_runner.tools.calculator import CalculatorTool
from contracts import AgentRunRequested, ChatMessage, Principal, RunOptions
from modelkit.base_model import BUNDLED_MODEL_VERSION, bundled_gguf_path
from modelkit.chat_format import END_OF_TURN_ID, STOP_STRINGS, render_prompt

pytestmark = pytest.mark.slow

N_CTX = 1024


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    path = await asyncio.to_thread(bundled_gguf_path)
    engine = await asyncio.to_thread(
        LlamaCppEngine.load, str(path), model_version=BUNDLED_MODEL_VERSION, n_ctx=N_CTX, n_threads=2,
        use_extra_bufts=False,
    )
    try:
        yield engine
    finally:
        await engine.close()


def prompt(text: str) -> str:
    return render_prompt([{"role": "user", "content": text}])


async def generate(engine, text: str, max_tokens: int = 12):
    return [c async for c in engine.generate(prompt(text), max_tokens=max_tokens, temperature=0.0, stop=STOP_STRINGS)]


def test_use_extra_bufts_reaches_the_loaded_model_params(engine):
    import llama_cpp

    assert engine.use_extra_bufts is False
    assert engine.llm._model.params.use_extra_bufts is False  # the params llama.cpp loaded with
    # the patched default was only in force during the load
    assert llama_cpp.llama_model_default_params().use_extra_bufts is True


def test_the_prompt_is_tokenized_with_special_tokens_and_one_bos(engine):
    tokens = engine.tokenize(prompt("Hi"))
    bos = engine.llm.token_bos()
    assert tokens[0] == bos and tokens.count(bos) == 1
    start_of_turn = engine.llm.tokenize(b"<start_of_turn>", add_bos=False, special=True)
    assert len(start_of_turn) == 1 and tokens[1] == start_of_turn[0]
    assert engine.llm.tokenize(b"<end_of_turn>", add_bos=False, special=True) == [END_OF_TURN_ID]


async def test_a_short_generation_streams_text_and_counts_tokens(engine):
    chunks = await generate(engine, "What is the capital of France?", max_tokens=12)
    text = "".join(c.text for c in chunks)
    last = chunks[-1]
    assert text.strip(), "the model produced no text"
    assert "<end_of_turn>" not in text and "<eos>" not in text
    assert last.prompt_tokens == len(engine.tokenize(prompt("What is the capital of France?")))
    assert 1 <= last.completion_tokens <= 12
    assert last.finish_reason in ("stop", "length")


async def test_greedy_generation_is_deterministic_and_reuses_the_cached_prefix(engine):
    first = "".join(c.text for c in await generate(engine, "Name a colour.", max_tokens=6))
    second = "".join(c.text for c in await generate(engine, "Name a colour.", max_tokens=6))
    assert first == second


async def test_closing_a_generation_early_stops_it_and_frees_the_engine(engine):
    generation = engine.generate(prompt("Count from one to fifty."), max_tokens=200, temperature=0.0,
                                 stop=STOP_STRINGS)
    async with contextlib.aclosing(generation):
        async for _ in generation:
            break
    chunks = await asyncio.wait_for(generate(engine, "Say yes.", max_tokens=4), timeout=60)
    assert chunks[-1].completion_tokens <= 4


async def test_a_prompt_longer_than_the_context_is_refused(engine):
    with pytest.raises(PromptTooLongError, match=f"context holds {N_CTX}"):
        await generate(engine, "word " * (N_CTX + 100))


async def test_a_run_on_the_real_model_is_bounded_and_recorded(engine):
    loop = AgentLoop(server_tools={"calculator": CalculatorTool()}, metrics=RunnerMetrics(CollectorRegistry()))
    request = AgentRunRequested.create(
        correlation_id="real", run_id="real",
        messages=[ChatMessage(role="user", content="What is 17*23?")],
        options=RunOptions(max_steps=2, max_tokens=24, timeout_s=120),
        principal=Principal(subject="t", role="user"),
    )

    class Sink:
        steps: list = []

        async def step(self, step): self.steps.append(step)
        async def final(self, message): ...

    result = await loop.run(request, engine, Sink())
    model_turns = [s for s in result.steps if s.kind == "model"]
    assert result.outcome in ("answered", "max_steps", "client_tool_call")
    assert 1 <= len(model_turns) <= 2
    assert all(0 < s.completion_tokens <= 24 and s.prompt_tokens > 0 for s in model_turns)
    assert result.usage.engine_ms > 0
    print("\n17*23 on the bundled model:", [s.text for s in model_turns], "->", result.outcome)
