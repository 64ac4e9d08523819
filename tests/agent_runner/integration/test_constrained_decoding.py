"""Constrained decoding on the real bundled Gemma 3 270M (llamacpp engine): for a generated set of
tool schemas — nested objects, arrays, enums, optional fields, numbers vs integers, and one the
grammar converter rejects — every constrained output parses (chat_format.parse_output) and
validates against its tool's schema (jsonschema), the rejected one decodes with free arguments
and says so, and each tool_choice is honoured. Greedy, a few short turns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry

from agent_runner.adapters.llamacpp_engine import LlamaCppEngine
from agent_runner.metrics import RunnerMetrics
from agent_runner.service import AgentLoop
from contracts import AgentRunRequested, ChatMessage, Principal, RunOptions, ToolSpec
from modelkit.base_model import BUNDLED_MODEL_VERSION, bundled_gguf_path
from modelkit.chat_format import STOP_STRINGS, parse_output, render_prompt
from modelkit.tool_grammar import ToolConstraint

pytestmark = pytest.mark.slow

MAX_TOKENS = 112  # these calls take 30-50 tokens, up to ~90 where the base model writes a 32-digit number;
# a cut-off call would show up as a parse failure


def tool(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


# (tool, a question that wants it)
SCHEMAS = [
    (tool("book_flight", "Book a flight for a passenger", {
        "passenger": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                      "required": ["name"]},
        "destination": {"type": "string"}}, ["passenger", "destination"]),
     "Book a flight to Rome for Anna, who is 31."),
    (tool("sum_numbers", "Add up a list of numbers", {
        # maxItems: the base model repeats list items until it runs out of tokens; the grammar closes the list
        "numbers": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 4}}, ["numbers"]),
     "What is 2.5 plus 4 plus 10?"),
    (tool("set_light", "Switch the light of a room", {
        "room": {"type": "string"}, "state": {"type": "string", "enum": ["on", "off"]}}, ["room", "state"]),
     "Turn off the kitchen light."),
    (tool("search_books", "Search the library", {
        "query": {"type": "string"}, "limit": {"type": "integer"}, "author": {"type": "string"}}, ["query"]),
     "Find three books about whales."),
    (tool("convert_temperature", "Convert a temperature", {
        "value": {"type": "number"}, "decimals": {"type": "integer"},
        "to": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, ["value", "decimals", "to"]),
     "Convert 98.6 F to celsius with 1 decimal."),
]
# an unanchored pattern: llama-cpp-python's converter refuses it, so the tool falls back
UNSUPPORTED = (tool("lookup_airport", "Look up an airport by its IATA code", {
    "code": {"type": "string", "pattern": "[A-Z]{3}"}}, ["code"]), "Which airport has the code OSL?")
TOOLS = tuple(t for t, _ in [*SCHEMAS, UNSUPPORTED])


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    path = await asyncio.to_thread(bundled_gguf_path)
    engine = await asyncio.to_thread(
        LlamaCppEngine.load, str(path), model_version=BUNDLED_MODEL_VERSION, n_ctx=2048, n_threads=1,
        use_extra_bufts=False,
    )
    try:
        yield engine
    finally:
        await engine.close()


async def turn(engine, question: str, constraint: ToolConstraint | None):
    prompt = render_prompt([{"role": "user", "content": question}], list(TOOLS))
    chunks = [c async for c in engine.generate(prompt, max_tokens=MAX_TOKENS, temperature=0.0, stop=STOP_STRINGS,
                                               constraint=constraint)]
    return "".join(c.text for c in chunks), chunks[-1]


def schema_of(name: str) -> dict:
    return next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)


@pytest.mark.parametrize(("spec", "question"), SCHEMAS, ids=[t["function"]["name"] for t, _ in SCHEMAS])
async def test_every_constrained_call_parses_and_validates_against_its_schema(engine, spec, question):
    name = spec["function"]["name"]
    output, last = await turn(engine, question, ToolConstraint(TOOLS, name=name))

    calls = parse_output(output).calls
    assert last.constrained and last.unconstrained_tools == ()  # only the named tool is in the grammar
    assert last.finish_reason == "stop", f"cut off: {output!r}"
    assert calls and all(c.error is None for c in calls), output
    assert {c.name for c in calls} == {name}
    for call in calls:
        errors = [e.message for e in Draft202012Validator(schema_of(name)).iter_errors(call.arguments)]
        assert errors == [], f"{output!r}: {errors}"
    print(f"\n{name}: {output}")


async def test_a_schema_the_converter_rejects_decodes_as_free_json_for_that_tool(engine):
    spec, question = UNSUPPORTED
    output, last = await turn(engine, question, ToolConstraint(TOOLS, name="lookup_airport"))

    calls = parse_output(output).calls
    assert last.constrained and last.unconstrained_tools == ("lookup_airport",)
    assert calls and all(c.error is None and c.name == "lookup_airport" for c in calls), output
    assert all(isinstance(c.arguments, dict) for c in calls)  # any object: the pattern is not enforced
    print(f"\nlookup_airport (free arguments): {output}")


async def test_required_calls_none_answers_and_auto_does_either(engine):
    question = "Turn off the kitchen light."
    required, _ = await turn(engine, question, ToolConstraint(TOOLS, "required"))
    none, _ = await turn(engine, question, ToolConstraint(TOOLS, "none"))
    auto, last = await turn(engine, question, ToolConstraint(TOOLS, "auto"))

    calls = parse_output(required).calls
    assert len(calls) >= 1 and all(c.error is None for c in calls), required
    assert all(Draft202012Validator(schema_of(c.name)).is_valid(c.arguments) for c in calls
               if c.name != "lookup_airport")
    assert parse_output(none).calls == [] and "<tool_call>" not in none
    auto_calls = parse_output(auto).calls
    assert last.constrained
    assert all(c.error is None and (c.name == "lookup_airport" or Draft202012Validator(schema_of(c.name))
                                    .is_valid(c.arguments)) for c in auto_calls), auto
    print(f"\nrequired: {required}\nnone: {none[:80]!r}\nauto: {auto[:120]!r}")


async def test_a_run_with_a_required_choice_ends_in_a_valid_call_and_records_its_decoding(engine):
    metrics = RunnerMetrics(CollectorRegistry())
    loop = AgentLoop(server_tools={}, metrics=metrics)
    spec = ToolSpec.model_validate(SCHEMAS[2][0])
    request = AgentRunRequested.create(
        correlation_id="constrained", run_id="constrained",
        messages=[ChatMessage(role="user", content="Turn off the kitchen light.")], tools=[spec],
        options=RunOptions(max_steps=1, max_tokens=MAX_TOKENS, tool_choice="required", timeout_s=120),
        principal=Principal(subject="t", role="user"),
    )

    class Sink:
        async def step(self, step): ...
        async def final(self, message): ...

    result = await loop.run(request, engine, Sink())

    model = [s for s in result.steps if s.kind == "model"][0]
    assert model.decoding.constrained and model.decoding.unconstrained_tools == []
    assert result.outcome == "client_tool_call" and [c.name for c in result.client_tool_calls] == ["set_light"]
    assert all(s.valid for s in result.steps if s.kind == "tool_call")
    assert metrics.registry.get_sample_value("agent_runner_constrained_turns_total", {"engine": "llamacpp"}) == 1
