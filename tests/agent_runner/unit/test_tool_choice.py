"""tool_choice and constrained decoding at the use-case level: which constraint each model turn
gets, what is recorded and counted, and what happens to calls a turn decoded freely should not
have made. The fake engine (our own port) reports a constraint the way a constraining engine does."""

from __future__ import annotations

import pytest

from agent_runner.adapters.ollama_engine import ollama_turn
from agent_runner.domain import ToolChoiceError, turn_constraint
from agent_runner.service import AgentLoop, RunAgent
from agent_runner.model_slot import ModelSlot
from agent_runner.settings import EngineSettings
from agent_runner.tools.calculator import CalculatorTool
from contracts import FunctionSpec, NamedFunction, NamedToolChoice, ToolSpec

CALC_CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>'
WEATHER_CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
WEATHER = ToolSpec(function=FunctionSpec(
    name="get_weather", description="Current weather of a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
))
LOOKUP = ToolSpec(function=FunctionSpec(  # `minimum` is a keyword the grammar converter cannot enforce
    name="lookup", parameters={"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}},
))


def named(tool: str) -> NamedToolChoice:
    return NamedToolChoice(function=NamedFunction(name=tool))


def loop_of(metrics, **kwargs) -> AgentLoop:
    return AgentLoop(server_tools={"calculator": CalculatorTool()}, metrics=metrics, **kwargs)


def sample(metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


TOOLS = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]


def test_none_holds_for_every_turn_and_required_until_a_valid_call():
    assert turn_constraint(TOOLS, "none", called=True).mode == "none"
    assert turn_constraint(TOOLS, "required", called=False).mode == "required"
    assert turn_constraint(TOOLS, "required", called=True).mode == "auto"
    assert turn_constraint(TOOLS, named("calculator"), called=False).name == "calculator"
    after = turn_constraint(TOOLS, named("calculator"), called=True)
    assert after.mode == "auto" and after.name is None
    assert turn_constraint([], "auto", called=False) is None and turn_constraint([], "none", called=False) is None
    with pytest.raises(ToolChoiceError):
        turn_constraint(TOOLS, named("other"), called=False)
    with pytest.raises(ToolChoiceError):
        turn_constraint([], "required", called=False)


async def test_each_model_turn_gets_its_tool_choice_and_records_how_it_was_decoded(metrics, fakes, sink):
    engine = fakes.Engine([CALC_CALL, "It is 391."])
    result = await loop_of(metrics).run(fakes.request(tool_choice="required"), engine, sink)

    assert result.outcome == "answered"
    assert [c.choice for c in engine.constraints] == ["required", "auto"]  # required until the call ran
    assert [t["function"]["name"] for t in engine.constraints[0].tools] == ["calculator"]
    models = [s for s in result.steps if s.kind == "model"]
    assert all(s.decoding.constrained and s.decoding.unconstrained_tools == [] for s in models)
    assert sample(metrics, "agent_runner_constrained_turns_total", engine="fake") == 2
    assert sample(metrics, "agent_runner_grammar_fallbacks_total", engine="fake") == 0


async def test_a_tool_the_grammar_cannot_express_is_recorded_and_counted(metrics, fakes, sink):
    engine = fakes.Engine(["No call needed."])
    result = await loop_of(metrics).run(fakes.request(tools=[LOOKUP, WEATHER]), engine, sink)

    assert result.steps[0].decoding.unconstrained_tools == ["lookup"]
    assert sample(metrics, "agent_runner_grammar_fallbacks_total", engine="fake") == 1


@pytest.mark.parametrize(("setting", "option", "constrained"), [
    ("auto", None, True), ("off", None, False), ("off", "auto", True), ("auto", "off", False),
])
async def test_the_run_option_overrides_the_engine_setting(metrics, fakes, sink, setting, option, constrained):
    engine = fakes.Engine(["Hello."])
    result = await loop_of(metrics, constrained=setting).run(fakes.request(constrained=option), engine, sink)

    assert (engine.constraints[0] is not None) is constrained
    assert result.steps[0].decoding.constrained is constrained


async def test_under_none_a_freely_decoded_call_is_refused_not_run(metrics, fakes, sink):
    engine = fakes.Engine([CALC_CALL, "17*23 is 391."])
    result = await loop_of(metrics).run(fakes.request(tool_choice="none", constrained="off"), engine, sink)

    refused = [s for s in result.steps if s.kind == "tool_call"]
    assert len(refused) == 1 and not refused[0].valid
    assert refused[0].error == "not_allowed: tool_choice is 'none': answer in text, without tool calls"
    assert not [s for s in result.steps if s.kind == "tool_result"]  # the calculator never ran
    assert "tool_choice is 'none'" in engine.prompts[1]  # the model is told why
    assert result.outcome == "answered" and result.answer == "17*23 is 391."
    assert sample(metrics, "agent_runner_invalid_tool_calls_total", reason="not_allowed") == 1
    assert [c.mode for c in engine.constraints if c] == []  # off: nothing was asked of the engine


async def test_under_a_named_choice_only_that_tool_runs(metrics, fakes, sink):
    engine = fakes.Engine([CALC_CALL + WEATHER_CALL])
    request = fakes.request(tools=[WEATHER], tool_choice=named("get_weather"), constrained="off")
    result = await loop_of(metrics).run(request, engine, sink)

    calls = [s for s in result.steps if s.kind == "tool_call"]
    assert [(s.tool_call.name, s.valid) for s in calls] == [("calculator", False), ("get_weather", True)]
    assert calls[0].error == "not_allowed: tool_choice requires a call of 'get_weather'"
    assert result.outcome == "client_tool_call" and [c.name for c in result.client_tool_calls] == ["get_weather"]


async def test_a_named_choice_of_an_unknown_tool_fails_the_run_with_its_code(metrics, fakes, store, sink):
    engine = fakes.Engine(["x"])
    run_agent = RunAgent(loop=loop_of(metrics), slot=ModelSlot(engine), store=store, sinks=lambda _: sink,
                         metrics=metrics, max_attempts=3)
    await run_agent(fakes.request(run_id="r-choice", tool_choice=named("nope")))

    failed = store.published[0]
    assert failed.error_code == "invalid_tool_choice" and "'nope'" in failed.reason
    assert engine.prompts == []  # refused before any model turn


def test_the_engine_setting_defaults_to_auto():
    assert EngineSettings().constrained == "auto"
    assert EngineSettings(constrained="off").constrained == "off"


def test_ollama_is_constrained_only_where_the_turn_must_call():
    constraint = turn_constraint(TOOLS, "required", called=False)
    turn = ollama_turn("PROMPT", constraint)
    assert turn.prompt == "PROMPT<tool_call>" and turn.opening == "<tool_call>" and turn.closing == "</tool_call>"
    assert turn.format["properties"]["name"] == {"const": "calculator"}

    for free in (turn_constraint(TOOLS, "auto", called=False), turn_constraint(TOOLS, "none", called=False), None):
        turn = ollama_turn("PROMPT", free)
        assert turn.prompt == "PROMPT" and turn.format is None and turn.opening == ""


def test_a_json_answer_is_a_constraint_even_without_tools_and_rides_along_with_them():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    alone = turn_constraint([], "auto", called=False, answer_schema=schema)
    assert alone is not None and alone.mode == "none" and alone.answer_schema == schema
    assert turn_constraint(TOOLS, "required", called=True, answer_schema=schema).answer_schema == schema
    assert turn_constraint(TOOLS, "auto", called=False).answer_schema is None
