"""GroupThink on the real bundled Gemma 3 270M: N samples decoded together as llama.cpp sequences
sharing the prompt's KV cache, and a GroupThink run through the agent loop. Few tokens per sample."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from agent_runner.adapters.llamacpp_batch import sample_batch, sequences_of
from agent_runner.adapters.llamacpp_engine import LlamaCppEngine
from agent_runner.groupthink import candidate_of
from agent_runner.metrics import RunnerMetrics
from agent_runner.service import AgentLoop
from contracts import AgentRunRequested, ChatMessage, Principal, RunOptions
from modelkit.base_model import BUNDLED_MODEL_VERSION, bundled_gguf_path
from modelkit.chat_format import STOP_STRINGS, render_prompt
from modelkit.llama import greedy_tokens, load_llama

pytestmark = pytest.mark.slow

N_CTX = 1024
SEQUENCES = 4
QUESTION = "Name one primary colour and say why it is called primary, in a short sentence."


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    path = await asyncio.to_thread(bundled_gguf_path)
    # One thread: the cores are shared with the rest of the suite, and llama.cpp's threads spin.
    engine = await asyncio.to_thread(
        LlamaCppEngine.load, str(path), model_version=BUNDLED_MODEL_VERSION, n_ctx=N_CTX, n_threads=1,
        use_extra_bufts=False, n_seq_max=SEQUENCES,
    )
    try:
        yield engine
    finally:
        await engine.close()


def prompt(text: str = QUESTION) -> str:
    return render_prompt([{"role": "user", "content": text}])


def perf(llm) -> tuple[int, int]:
    import llama_cpp

    data = llama_cpp.llama_perf_context(llm.ctx)
    return data.n_p_eval, data.n_eval


def test_the_context_is_loaded_with_the_asked_sequences(engine):
    assert sequences_of(engine.llm) == SEQUENCES


def test_the_samples_decode_together_and_the_prompt_is_evaluated_once(engine):
    import llama_cpp

    llm = engine.llm
    tokens = engine.tokenize(prompt())
    llm.reset()  # nothing cached: the whole prompt is decoded
    llama_cpp.llama_perf_context_reset(llm.ctx)
    samples, stats = sample_batch(llm, tokens, n=SEQUENCES, max_tokens=6, temperature=1.0, stop=STOP_STRINGS)
    p_eval, eval_ = perf(llm)

    assert len(samples) == SEQUENCES
    assert all(1 <= s.completion_tokens <= 6 and s.prompt_tokens == len(tokens) for s in samples)
    assert all(s.mean_logprob is not None and s.mean_logprob <= 0 and math.isfinite(s.mean_logprob) for s in samples)
    assert stats.reused_tokens == 0 and stats.prompt_tokens == len(tokens)
    # llama.cpp's own count of evaluated tokens (it reports each count as at least 1): the prompt
    # once, then one token per live sample per step. N generations in a row would evaluate the
    # prompt N times.
    assert stats.decoded_tokens <= p_eval + eval_ <= stats.decoded_tokens + 1
    assert stats.decoded_tokens <= len(tokens) + SEQUENCES * 5 < SEQUENCES * len(tokens)
    # one decode for the prompt, then one batch per position (not one per sample per position)
    assert stats.decode_calls <= 1 + 5


def test_a_second_sampling_of_the_same_prompt_reuses_its_cached_cells(engine):
    tokens = engine.tokenize(prompt())
    first, _ = sample_batch(engine.llm, tokens, n=2, max_tokens=4, temperature=0.8, stop=STOP_STRINGS)
    again, stats = sample_batch(engine.llm, tokens, n=2, max_tokens=4, temperature=0.8, stop=STOP_STRINGS)
    assert stats.reused_tokens == len(tokens) - 1  # only the last prompt token is decoded again
    assert [s.text for s in again] == [s.text for s in first]  # same seeds, same samples


def test_greedy_decoding_is_unchanged_by_the_extra_sequences_and_by_sampling(engine):
    tokens = engine.tokenize(prompt("What is the capital of France?"))
    before = greedy_tokens(engine.llm, tokens, 8)
    sample_batch(engine.llm, tokens, n=SEQUENCES, max_tokens=4, temperature=1.0, stop=STOP_STRINGS)
    assert greedy_tokens(engine.llm, tokens, 8) == before
    single = load_llama(bundled_gguf_path(), n_ctx=N_CTX, n_threads=1)  # the default: one sequence
    try:
        assert sequences_of(single) == 1
        assert greedy_tokens(single, tokens, 8) == before
    finally:
        single.close()


async def test_every_sample_follows_the_grammar(engine):
    grammar = 'root ::= ("yes" | "no") "."'
    samples = await engine.sample(prompt("Is the sky blue?"), n=3, max_tokens=8, temperature=1.5,
                                  stop=STOP_STRINGS, grammar=grammar)
    assert [s.text for s in samples] and all(s.text in ("yes.", "no.") for s in samples)


async def test_more_samples_than_sequences_are_drawn_in_rounds(engine):
    samples = await engine.sample(prompt(), n=SEQUENCES + 2, max_tokens=3, temperature=1.0, stop=STOP_STRINGS)
    assert len(samples) == SEQUENCES + 2


async def test_a_groupthink_run_returns_the_majority_and_its_agreement(engine):
    drawn: list = []

    class Recording:
        """The real engine, keeping what it sampled (to recount the vote)."""

        name, model_version = engine.name, engine.model_version

        def generate(self, *args, **kwargs):
            return engine.generate(*args, **kwargs)

        async def sample(self, *args, **kwargs):
            samples = await engine.sample(*args, **kwargs)
            drawn.append(samples)
            return samples

    metrics = RunnerMetrics(CollectorRegistry())
    loop = AgentLoop(server_tools={}, metrics=metrics, groupthink_max_samples=SEQUENCES)
    request = AgentRunRequested.create(
        correlation_id="gt-real", run_id="gt-real",
        messages=[ChatMessage(role="user", content="Is 7 a prime number? Answer yes or no.")],
        options=RunOptions(max_steps=1, max_tokens=6, timeout_s=120, server_tools=False,
                           groupthink={"samples": 3, "temperature": 1.0}),
        principal=Principal(subject="t", role="user"),
    )

    class Sink:
        async def step(self, step): ...
        async def final(self, message): ...

    result = await loop.run(request, Recording(), Sink())
    (samples,) = drawn
    counts = Counter(candidate_of(s.text) for s in samples)
    model = result.steps[0]
    assert model.kind == "model" and model.decoding.samples == 3
    assert model.text in [s.text for s in samples]
    assert counts[candidate_of(model.text)] == max(counts.values())
    assert model.decoding.agreement == round(max(counts.values()) / 3, 4) == result.confidence
    assert metrics.registry.get_sample_value("agent_runner_groupthink_agreement_ratio_count",
                                             {"engine": "llamacpp"}) == 1


async def test_under_a_tool_constraint_every_sample_is_a_valid_call(engine):
    from modelkit.chat_format import parse_output
    from modelkit.tool_grammar import ToolConstraint

    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                       "required": ["city"]}}}]
    text = render_prompt([{"role": "user", "content": "What is the weather in Paris?"}], tools)
    samples = await engine.sample(text, n=3, max_tokens=40, temperature=1.0, stop=STOP_STRINGS,
                                  constraint=ToolConstraint(tuple(tools), mode="required"))
    assert all(s.constrained and s.unconstrained_tools == () for s in samples)
    for s in samples:
        calls = parse_output(s.text).calls
        assert calls and all(c.error is None and c.name == "get_weather" for c in calls), s.text
        assert all(c.arguments["city"] in ("Paris", "Rome") and set(c.arguments) == {"city"} for c in calls)
