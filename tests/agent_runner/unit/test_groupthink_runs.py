"""GroupThink runs through the agent loop and the run use case, with fakes of our engine port."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agent_runner.model_slot import ModelSlot
from agent_runner.ports import Sample
from agent_runner.service import AgentLoop, RunAgent
from agent_runner.tools.calculator import CalculatorTool
from contracts import AgentRunCompleted, AgentRunFailed, FunctionSpec, InteractionLogged, ToolSpec

CALC = '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>'
CALC_SPACED = '<tool_call>{"arguments": {"expression": " 17*23 "}, "name": "calculator"}</tool_call>'
WEATHER = ToolSpec(function=FunctionSpec(
    name="get_weather", description="Current weather of a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
))


class FakeSamplingEngine:
    """Answers `sample` with scripted rounds of samples (one round per model turn)."""

    name = "fake-sampler"
    model_version = "fake-v1"

    def __init__(self, rounds: Sequence[Sequence[tuple[str, float]]]) -> None:
        self.rounds = [list(r) for r in rounds]
        self.calls: list[dict] = []

    async def sample(self, prompt: str, *, n: int, max_tokens: int, temperature: float, stop: Sequence[str],
                     grammar: str | None = None, constraint=None) -> list[Sample]:
        self.calls.append({"n": n, "temperature": temperature, "max_tokens": max_tokens, "constraint": constraint})
        replies = self.rounds[min(len(self.calls), len(self.rounds)) - 1]
        assert len(replies) == n
        return [Sample(text, 3, logprob, "stop", 10, constrained=constraint is not None) for text, logprob in replies]

    async def generate(self, *args, **kwargs):  # pragma: no cover - GroupThink turns never stream
        raise AssertionError("a GroupThink turn must use sample()")
        yield

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def loop_of(metrics, max_samples: int = 8) -> AgentLoop:
    return AgentLoop(server_tools={"calculator": CalculatorTool()}, metrics=metrics, token_flush_chars=1,
                     token_flush_ms=0, groupthink_max_samples=max_samples)


async def test_each_turn_keeps_the_majority_and_records_its_agreement(metrics, fakes, sink):
    engine = FakeSamplingEngine([
        [(CALC, -0.5), ("I think it is 400.", -0.2), (CALC_SPACED, -0.9)],
        [("17*23 is 391.", -0.1), ("391", -0.3), ("391.", -0.2)],
    ])
    request = fakes.request(groupthink={"samples": 3, "temperature": 0.9})
    result = await loop_of(metrics).run(request, engine, sink)

    assert result.outcome == "answered" and result.answer == "17*23 is 391."
    assert [c["n"] for c in engine.calls] == [3, 3] and engine.calls[0]["temperature"] == 0.9
    model_steps = [s for s in result.steps if s.kind == "model"]
    assert model_steps[0].text == CALC  # the best-scored sample of the winning candidate
    assert [(s.decoding.samples, s.decoding.agreement) for s in model_steps] == [(3, 0.6667), (3, 1.0)]
    assert model_steps[0].completion_tokens == 9  # every sample's tokens: what the turn cost
    assert result.confidence == 0.6667
    assert [s.kind for s in result.steps] == ["model", "tool_call", "tool_result", "model", "final"]
    token_text = "".join(st.text or "" for st in sink.steps if st.kind == "token")
    assert token_text == "17*23 is 391."  # the winner streams after the vote, tool-call blocks withheld
    count = metrics.registry.get_sample_value("agent_runner_groupthink_agreement_ratio_count",
                                              {"engine": "fake-sampler"})
    assert count == 2


async def test_the_samples_decode_under_the_turns_constraint_unless_it_is_off(metrics, fakes, sink):
    engine = FakeSamplingEngine([[("It rains.", -0.1), ("Rain.", -0.2)]])
    request = fakes.request("Weather in Paris?", tools=[WEATHER], server_tools=False, tool_choice="auto",
                            groupthink={"samples": 2})
    result = await loop_of(metrics).run(request, engine, sink)
    constraint = engine.calls[0]["constraint"]
    assert constraint is not None and constraint.mode == "auto"
    assert [t["function"]["name"] for t in constraint.tools] == ["get_weather"]
    assert result.steps[0].decoding.constrained is True

    engine = FakeSamplingEngine([[("It rains.", -0.1), ("Rain.", -0.2)]])
    off = fakes.request("Weather in Paris?", tools=[WEATHER], groupthink={"samples": 2}, constrained="off")
    result = await loop_of(metrics).run(off, engine, sink)
    assert engine.calls[0]["constraint"] is None and result.steps[0].decoding.constrained is False


async def test_no_call_wins_when_most_samples_answer_in_text(metrics, fakes, sink):
    engine = FakeSamplingEngine([[("It is sunny, I guess.", -1.0), (CALC, -0.1), ("No tool fits.", -2.0)]])
    result = await loop_of(metrics).run(fakes.request(groupthink={"samples": 3}), engine, sink)
    assert result.outcome == "answered" and result.answer == "It is sunny, I guess."
    assert result.confidence == pytest.approx(0.6667)


async def test_engines_without_sample_are_sampled_by_generating_n_times(metrics, fakes, sink):
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    engine = fakes.Engine([call, "It rains.", call.replace("Paris", "Paris ")])
    request = fakes.request("Weather in Paris?", tools=[WEATHER], groupthink={"samples": 3, "temperature": 0.5})
    result = await loop_of(metrics).run(request, engine, sink)

    assert len(engine.prompts) == 3 and len(set(engine.prompts)) == 1  # three generations of one prompt
    assert result.outcome == "client_tool_call"
    assert result.client_tool_calls[0].arguments == {"city": "Paris"}
    assert result.steps[0].decoding.samples == 3 and result.steps[0].decoding.agreement == 0.6667
    assert result.confidence == 0.6667


async def test_runs_without_groupthink_have_no_confidence(metrics, fakes, sink):
    result = await loop_of(metrics).run(fakes.request(), fakes.Engine(["391"]), sink)
    decoding = result.steps[0].decoding  # every model step says how it was decoded; one sample, no vote here
    assert result.confidence is None and decoding.samples == 1 and decoding.agreement is None


def run_agent_of(metrics, store, sink, engine, max_samples: int = 8) -> RunAgent:
    return RunAgent(loop=loop_of(metrics, max_samples), slot=ModelSlot(engine), store=store,
                    sinks=lambda reply_to: sink, metrics=metrics, max_attempts=3)


async def test_the_confidence_reaches_the_completed_and_logged_events(metrics, fakes, store, sink):
    engine = FakeSamplingEngine([[("391", -0.1), ("391.", -0.2), ("400", -0.3), (CALC, -0.4)]])
    await run_agent_of(metrics, store, sink, engine)(fakes.request(run_id="gt-1", groupthink={"samples": 4}))
    completed, logged, finished = store.published
    assert isinstance(completed, AgentRunCompleted) and isinstance(logged, InteractionLogged)
    assert completed.confidence == logged.confidence == 0.75
    assert store.rows["gt-1"]["steps"][0]["decoding"]["agreement"] == 0.75


async def test_more_samples_than_the_runner_allows_fail_the_run_with_a_clear_code(metrics, fakes, store, sink):
    engine = FakeSamplingEngine([[("391", -0.1)] * 5])
    await run_agent_of(metrics, store, sink, engine, max_samples=4)(
        fakes.request(run_id="gt-2", groupthink={"samples": 5}))
    failed, logged, finished = store.published
    assert isinstance(failed, AgentRunFailed) and failed.error_code == "groupthink_too_many_samples"
    assert "maximum of 4" in failed.reason and engine.calls == []
    assert logged.confidence is None
