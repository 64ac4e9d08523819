"""`agentloop eval`'s replay and report over a fake gateway (our own port): what each run asks
for, how runs are judged and aggregated, and the guard on the model that served them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loopdemo.evaluation import (
    EvalError,
    EvalOptions,
    EvalReport,
    ModelMismatchError,
    eval_request,
    replay,
    resolve_model,
    run_agreement,
    select,
)
from loopdemo.gateway import GatewayCallError
from loopdemo.tasks import parse_lines

WEATHER = {"name": "weather.get", "description": "Weather of a city.",
           "parameters": {"type": "dict", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                          "required": ["city"]}}
ITEMS = [
    {"id": "simple_0", "category": "simple", "question": [[{"role": "user", "content": "Weather in Paris?"}]],
     "function": [WEATHER], "ground_truth": [{"weather.get": {"city": ["Paris"], "days": ["", 1]}}],
     "expect": "ast_match"},
    {"id": "simple_1", "category": "simple", "question": [[{"role": "user", "content": "Weather in Rome?"}]],
     "function": [WEATHER], "ground_truth": [{"weather.get": {"city": ["Rome"], "days": [""]}}],
     "expect": "ast_match"},
    {"id": "parallel_0", "category": "parallel",
     "question": [[{"role": "user", "content": "Weather in Oslo and Bern?"}]], "function": [WEATHER],
     "ground_truth": [{"weather.get": {"city": ["Oslo"]}}, {"weather.get": {"city": ["Bern"]}}],
     "expect": "ast_match"},
    {"id": "irrelevance_0", "category": "irrelevance", "question": [[{"role": "user", "content": "Tell a joke."}]],
     "function": [WEATHER], "ground_truth": None, "expect": "no_call"},
]
TASKS = parse_lines([json.dumps(i) for i in ITEMS], "test.jsonl")


def call_step(name: str, arguments: Any, *, valid: bool = True, agreement: float | None = None) -> list[dict]:
    decoding = {"constrained": True, "samples": 3, "agreement": agreement} if agreement is not None else None
    model = {"index": 0, "kind": "model", "text": "", "decoding": decoding}
    call = {"index": 1, "kind": "tool_call", "valid": valid,
            "tool_call": {"id": "c0", "name": name, "arguments": arguments}}
    return [model, call]


class FakeGateway:
    """Answers each item as scripted by its question; records what was asked."""

    def __init__(self, script: dict[str, dict[str, Any]], *, served: str = "v1", aliases: dict | None = None,
                 models_refused: bool = False) -> None:
        self.script = script
        self.served = served
        self.aliases = aliases or {}
        self.models_refused = models_refused
        self.requests: list[dict[str, Any]] = []

    async def run(self, request: dict[str, Any], wait_s: float) -> dict[str, Any]:
        self.requests.append(request)
        question = request["messages"][0]["content"]
        run = {"run_id": f"run-{len(self.requests)}", "status": "completed", "outcome": "answered", "steps": [],
               "model_version": self.served, **self.script.get(question, {})}
        if callable(run["model_version"]):
            run["model_version"] = run["model_version"](len(self.requests))
        return run

    async def models(self) -> dict[str, Any]:
        if self.models_refused:
            raise GatewayCallError("list models refused (403)")
        return {"aliases": self.aliases, "versions": []}


SCRIPT = {
    "Weather in Paris?": {"outcome": "client_tool_call", "steps": call_step("weather.get", {"city": "Paris"},
                                                                            agreement=1.0)},
    "Weather in Rome?": {"outcome": "client_tool_call",  # a call the runner refused: judged, but not valid
                         "steps": call_step("weather.get", {"city": 5}, valid=False, agreement=0.5)},
    "Weather in Oslo and Bern?": {"outcome": "client_tool_call",
                                  "steps": [*call_step("weather.get", {"city": "Oslo"}),
                                            {"index": 2, "kind": "tool_call", "valid": True,
                                             "tool_call": {"id": "c1", "name": "weather.get",
                                                           "arguments": {"city": "Bern"}}}]},
    "Tell a joke.": {"answer": "Why did the chicken...", "steps": [{"index": 0, "kind": "final", "text": "Why"}]},
}


async def test_each_item_is_one_client_side_run_with_the_options_asked_for():
    gateway = FakeGateway(SCRIPT)
    options = EvalOptions(model="v1", groupthink=3, constrained="off", max_tokens=99, run_timeout_s=30)
    await replay(gateway, TASKS[:1], options, expected_version="v1")
    (request,) = gateway.requests
    assert request["messages"] == [{"role": "user", "content": "Weather in Paris?"}]
    assert request["tools"][0]["function"]["name"] == "weather.get"
    assert request["tools"][0]["function"]["parameters"]["type"] == "object"  # BFCL's dict as JSON Schema
    assert request["options"] == {"server_tools": False, "max_steps": 1, "max_tokens": 99, "temperature": 0.0,
                                  "timeout_s": 30, "constrained": "off", "groupthink": {"samples": 3},
                                  "model": "v1"}
    assert eval_request(TASKS[0], EvalOptions(constrained="on"))["options"]["constrained"] == "auto"
    assert set(eval_request(TASKS[0], EvalOptions())["options"]) == {"server_tools", "max_steps", "max_tokens", "temperature",
                                                "timeout_s"}  # nothing asked: the engine's defaults


async def test_the_report_aggregates_categories_validity_latency_and_agreement():
    judged = await replay(FakeGateway(SCRIPT), TASKS, EvalOptions(), concurrency=3)
    assert [j.outcome.task.id for j in judged] == [t.id for t in TASKS]  # file order, whatever the dispatch
    report = EvalReport("test.jsonl", EvalOptions(), judged, wall_s=1.5)
    doc = report.as_dict()
    assert doc["per_category"] == {
        "irrelevance": {"correct": 1, "total": 1, "accuracy": 1.0},
        "parallel": {"correct": 1, "total": 1, "accuracy": 1.0},
        "simple": {"correct": 1, "total": 2, "accuracy": 0.5},
    }
    assert (doc["items"], doc["correct"], doc["accuracy"]) == (4, 3, 0.75)
    assert doc["category_mean"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert doc["valid_calls"] == {"valid": 2, "attempted": 3, "rate": pytest.approx(2 / 3)}
    assert doc["agreement"] == {"mean": 0.75, "runs": 2}
    assert doc["latency_s"]["p50"] is not None and doc["model_versions"] == ["v1"]
    assert [r["reason"] for r in doc["runs"]][1] == "type_mismatch"  # the checker's reason for Rome
    json.dumps(doc)  # one machine-readable document
    rendered = report.table()
    assert rendered.row_count >= 6


def test_agreement_is_the_lowest_of_a_runs_model_turns_and_absent_without_voting():
    steps = [{"kind": "model", "decoding": {"agreement": 0.8}}, {"kind": "model", "decoding": {"agreement": 0.6}}]
    assert run_agreement({"steps": steps}) == 0.6
    assert run_agreement({"steps": [{"kind": "model", "decoding": {"agreement": None}}]}) is None
    assert run_agreement({"steps": [{"kind": "model"}]}) is None


async def test_a_run_served_by_another_version_than_asked_stops_the_measurement():
    with pytest.raises(ModelMismatchError, match="served by v1, not by v2.*options.model"):
        await replay(FakeGateway(SCRIPT, served="v1"), TASKS, EvalOptions(model="v2"), expected_version="v2")


async def test_an_alias_is_resolved_through_the_registry_and_held_to_it():
    gateway = FakeGateway(SCRIPT, served="v1", aliases={"production": "v1", "candidate": "v2"})
    assert await resolve_model(gateway, "candidate") == "v2"
    assert await resolve_model(gateway, "gemma3-abc") == "gemma3-abc"  # a version stands for itself
    with pytest.raises(ModelMismatchError, match="not by v2 \\('candidate'\\)"):
        await replay(gateway, TASKS, EvalOptions(model="candidate"), expected_version="v2")


async def test_an_unresolvable_alias_holds_every_run_to_the_first_runs_version():
    gateway = FakeGateway(SCRIPT, served=lambda n: "v1" if n == 1 else "v2", models_refused=True)
    assert await resolve_model(gateway, "production") is None
    with pytest.raises(ModelMismatchError, match="earlier runs by v1"):
        await replay(gateway, TASKS, EvalOptions(model="production"), expected_version=None)
    # without --model nothing is asked, so nothing is held: the report lists both versions
    judged = await replay(FakeGateway(SCRIPT, served=lambda n: f"v{n % 2}"), TASKS, EvalOptions())
    assert EvalReport("f", EvalOptions(), judged, 0.0).summary.model_versions == ("v0", "v1")


async def test_a_refused_run_stops_the_measurement_with_the_gateways_reason():
    class Refusing(FakeGateway):
        async def run(self, request, wait_s):
            raise GatewayCallError("run refused (422): options.groupthink.samples at most 8")

    with pytest.raises(EvalError, match="simple_0: run refused \\(422\\)"):
        await replay(Refusing(SCRIPT), TASKS[:1], EvalOptions(groupthink=9))


def test_items_are_selected_by_category_and_limited_per_category():
    assert [t.id for t in select(TASKS, limit=1)] == ["simple_0", "parallel_0", "irrelevance_0"]
    assert [t.id for t in select(TASKS, ["simple"])] == ["simple_0", "simple_1"]
    with pytest.raises(EvalError, match="no items of categories multiple"):
        select(TASKS, ["multiple"])
