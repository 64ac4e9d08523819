"""Scoring with a scripted model (a fake of evalkit's own TextModel port): prompts in the
runner's format, one generation per item, suites scored from the same generations."""

from __future__ import annotations

import json

import pytest

from evalkit.scoring import GENERATION_ERROR, Progress, evaluate, percentile, prompt_of
from evalkit.suites import Suite
from modelkit.chat_format import TOOL_INSTRUCTIONS, format_tool_calls

WEATHER = {"name": "weather.get", "description": "Weather.", "parameters": {
    "type": "dict", "properties": {"city": {"type": "string"}, "days": {"type": "float"}}, "required": ["city"]}}


def item(n: int, city: str, category: str = "simple") -> dict:
    return {"id": f"i{n}", "category": category, "question": [[{"role": "user", "content": f"Weather in {city}?"}]],
            "function": [WEATHER], "ground_truth": [{"weather.get": {"city": [city], "days": ["", 1.0]}}],
            "expect": "ast_match"}


NO_CALL = {"id": "n1", "category": "irrelevance", "question": [[{"role": "user", "content": "Tell a joke"}]],
           "function": [WEATHER], "ground_truth": None, "expect": "no_call"}


class ScriptedModel:
    """Answers by the city in the prompt; records prompts and token budgets."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.prompts: list[str] = []
        self.budgets: list[int] = []

    def generate(self, prompt: str, max_tokens: int, tools=()) -> str:
        self.prompts.append(prompt)
        self.budgets.append(max_tokens)
        for key, answer in self.answers.items():
            if key in prompt:
                if answer == "TOO_LONG":
                    raise ValueError("prompt exceeds the context")
                return answer
        return "I do not know."


def call(city: str, **extra) -> str:
    return format_tool_calls([{"name": "weather.get", "arguments": {"city": city, **extra}}])


SUITES = [
    Suite("tools", "ast", items=(item(1, "Paris"), item(2, "Rome"), item(3, "Oslo"), item(4, "Kyiv"), NO_CALL),
          primary=True),
    Suite("more", "ast", items=(item(5, "Lima", "multiple"),)),
    Suite("json", "json_validity"),
    Suite("json-tools", "json_validity", of=("tools",)),
    Suite("speed", "latency"),
]
MODEL_ANSWERS = {
    "Paris": call("paris"),  # ok (standardized)
    "Rome": call("Rome", days="2"),  # checker: type mismatch; schema: invalid
    "Oslo": '<tool_call>{"name": "weather.get", "arguments": {"city": "Oslo"</tool_call>',  # invalid JSON
    "Kyiv": "TOO_LONG",
    "Lima": call("Lima", days=1),  # ok (int for float)
}


def test_every_item_is_answered_once_and_every_suite_scored_from_those_answers():
    model = ScriptedModel(MODEL_ANSWERS)
    seen: list[Progress] = []
    result = evaluate(model, SUITES, max_tokens=64, progress=seen.append, log_every=2)
    assert len(model.prompts) == 6 and set(model.budgets) == {64}
    assert [p.done for p in seen] == [1, 2, 3, 4, 5, 6] and seen[-1].total == 6
    codes = {r.id: r.code for r in result.items}
    assert codes == {"i1": "ok", "i2": "type_mismatch", "i3": "invalid_json", "i4": GENERATION_ERROR, "n1": "ok",
                     "i5": "ok"}
    tools = result.scores["tools"]
    assert tools.score == pytest.approx(2 / 5)
    assert tools.per_category == {"irrelevance": 1.0, "simple": 0.25}
    assert tools.details["codes"]["ok"] == 2
    assert tools.details["category_items"] == {"irrelevance": 1, "simple": 4}  # what the gate weighs categories by
    assert result.scores["more"].score == 1.0
    # with a call: i1 (valid), i2 (schema: days is a string), i3 (broken JSON), i5 (valid)
    assert result.scores["json"].score == pytest.approx(2 / 4)
    assert result.scores["json"].details == {"outputs": 6, "with_calls": 4, "valid": 2}
    assert result.scores["json-tools"].score == pytest.approx(1 / 3)
    speed = result.scores["speed"]
    assert speed.details["requests"] == 6 and speed.score == speed.details["p95_s"] >= speed.details["p50_s"]


def test_prompts_are_the_runners_format_with_json_schema_tools():
    prompt = prompt_of(item(1, "Paris"))
    assert prompt.startswith("<start_of_turn>user\n" + TOOL_INSTRUCTIONS)
    assert prompt.endswith("Weather in Paris?<end_of_turn>\n<start_of_turn>model\n")
    tool_line = prompt.split("Tools:\n", 1)[1].split("\n\n", 1)[0]
    schema = json.loads(tool_line)
    assert schema["name"] == "weather.get"
    assert schema["parameters"]["type"] == "object"
    assert schema["parameters"]["properties"]["days"]["type"] == "number"


def test_a_stop_request_abandons_the_evaluation():
    from evalkit.scoring import EvaluationCancelledError

    model = ScriptedModel(MODEL_ANSWERS)
    with pytest.raises(EvaluationCancelledError):
        evaluate(model, SUITES, should_stop=lambda: len(model.prompts) >= 2)
    assert len(model.prompts) == 2


def test_suites_without_generations_get_no_score():
    result = evaluate(ScriptedModel({}), [Suite("empty-regression", "regression"), Suite("speed", "latency")])
    assert result.scores == {} and result.items == []


def test_percentiles_interpolate():
    assert percentile([1.0], 0.95) == 1.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([float(n) for n in range(1, 101)], 0.95) == pytest.approx(95.05)
