"""The rules a run request must satisfy beyond its shape (RunRules), and that a request which
breaks one is refused before anything is stored, published or counted against the rate."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from gateway.domain import Identity, InvalidRequestError, Role, RunRules, RunSubmission
from gateway.metrics import build as build_metrics
from gateway.service.replies import ReplyRouter
from gateway.service.runs import RunService
from servicekit.toolschema import SchemaValidators

from .fakes import FakeLimiter, FakePublisher, FakeRunStore

ALICE = Identity("alice", Role.USER)


def tool(name: str, parameters: dict | None = None) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": parameters or {"type": "object"}}}


def body(**fields) -> RunSubmission:
    return RunSubmission.model_validate({"instruction": "hi", **fields})


def refusal(rules: RunRules, submission: RunSubmission) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        rules.check(submission)
    return info.value


def test_a_tool_schema_that_is_not_json_schema_is_named_by_its_place_in_the_request():
    exc = refusal(RunRules(), body(tools=[tool("ok"), tool("bad", {"type": "object", "required": "city"})]))
    assert exc.loc == ("tools", 1, "function", "parameters")
    assert exc.field == "tools[1].function.parameters"
    assert "not a valid JSON Schema" in exc.message and "at required: 'city' is not of type 'array'" in exc.message


def test_each_distinct_schema_is_checked_once_across_requests():
    validators = SchemaValidators()
    rules = RunRules(validators=validators)
    for _ in range(3):
        rules.check(body(tools=[tool("a", {"type": "object", "title": "a"}), tool("b")]))
    assert len(validators) == 2


def test_a_named_tool_choice_must_be_one_of_the_requests_tools():
    choice = {"type": "function", "function": {"name": "calculator"}}
    exc = refusal(RunRules(), body(tools=[tool("weather")], options={"tool_choice": choice}))
    assert exc.loc == ("options", "tool_choice")
    assert "'calculator'" in exc.message and "'weather'" in exc.message and "list it in `tools`" in exc.message
    RunRules().check(body(tools=[tool("calculator")], options={"tool_choice": choice}))  # listed: accepted
    RunRules().check(body(options={"tool_choice": "required"}))  # the modes name no tool


def test_groupthink_samples_beyond_the_gateways_cap_are_refused():
    rules = RunRules(groupthink_max_samples=5)
    rules.check(body(options={"groupthink": {"samples": 5}}))
    exc = refusal(rules, body(options={"groupthink": {"samples": 6}}))
    assert exc.loc == ("options", "groupthink", "samples") and "at most 5" in exc.message and "got 6" in exc.message


@pytest.mark.parametrize("mode", ["async", "wait", "stream"])
async def test_a_refused_request_stores_publishes_and_spends_nothing(mode):
    store, publisher, limiter = FakeRunStore(), FakePublisher(), FakeLimiter(allowed=1)
    svc = RunService(store, publisher, limiter, ReplyRouter(), build_metrics(CollectorRegistry()),
                     reply_to="gateway.replies.test", rules=RunRules(groupthink_max_samples=2))
    bad = body(options={"groupthink": {"samples": 3}})
    with pytest.raises(InvalidRequestError):
        if mode == "async":
            await svc.submit(ALICE, bad)
        elif mode == "wait":
            await svc.submit_and_wait(ALICE, bad, 0.1)
        else:
            async with svc.stream(ALICE, bad):
                pass
    assert store.runs == {} and store.outbox == [] and publisher.published == [] and limiter.hits == []
