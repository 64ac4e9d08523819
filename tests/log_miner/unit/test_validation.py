"""Each validation rule drops an example with its own reason."""

from __future__ import annotations

import pytest

from log_miner.domain.examples import Example
from log_miner.domain.validation import Limits, invalid_reason
from tests.log_miner.runs import CALCULATOR

TOOLS = [CALCULATOR.model_dump(mode="json")]
USER = {"role": "user", "content": "What is 17*23?"}


def call(args, name="calculator", cid="c1"):
    return {"role": "assistant", "content": None, "tool_calls": [{"id": cid, "name": name, "arguments": args}]}


def reason(messages, tools=TOOLS, **limits):
    return invalid_reason(Example(messages, tools, "mined", "success"), Limits(**limits))


def test_a_well_formed_call_example_is_valid():
    assert reason([USER, call({"expression": "17*23"})]) is None
    assert reason([USER, call({"expression": "17*23"}),
                   {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "391"},
                   {"role": "assistant", "content": "391"}]) is None


@pytest.mark.parametrize(("messages", "tools", "expected"), [
    ([], TOOLS, "no_messages"),
    ([USER], TOOLS, "no_assistant_turn"),
    ([{"role": "user", "content": "  "}, {"role": "assistant", "content": "hi"}], TOOLS, "empty_turn"),
    ([USER, {"role": "assistant", "content": None}], TOOLS, "empty_turn"),
    ([USER, {"role": "narrator", "content": "x"}], TOOLS, "bad_role"),
    ([USER, {"role": "system", "content": "late"}, {"role": "assistant", "content": "x"}], TOOLS, "bad_role"),
    ([USER, call({"expression": "1"}),
      {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "1"}], TOOLS,
     "last_turn_not_assistant"),
    ([USER, call({"expr": "17*23"})], TOOLS, "schema_violation"),
    ([USER, call({"expression": ""})], TOOLS, "schema_violation"),
    ([USER, call({"city": "Oslo"}, name="get_weather")], TOOLS, "unknown_tool"),
    ([USER, call("17*23")], TOOLS, "invalid_arguments"),
    ([USER, call({"expression": "1"}), {"role": "assistant", "content": "done"}], TOOLS, "missing_tool_result"),
    ([USER, {"role": "tool", "tool_call_id": "zz", "name": "calculator", "content": "1"},
      {"role": "assistant", "content": "x"}], TOOLS, "orphan_tool_result"),
    ([USER, call({"expression": "1"}), {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "1"},
      call({"expression": "2"})], TOOLS, "duplicate_call_id"),
    ([USER, call({"expression": "1"})], [{"type": "function", "function": {"name": "calculator",
                                                                           "parameters": {"type": 12}}}],
     "invalid_tool_spec"),
    ([USER, call({"expression": "1"})], TOOLS + TOOLS, "invalid_tool_spec"),
])
def test_each_rule_has_its_reason(messages, tools, expected):
    assert reason(messages, tools) == expected


def test_length_limits_in_rendered_characters_and_turns():
    long = [USER, {"role": "assistant", "content": "x" * 500}]
    assert reason(long, max_chars=400) == "too_long"
    assert reason(long, max_chars=4000) is None
    assert reason([USER, {"role": "assistant", "content": "a"}] * 3, max_messages=4) == "too_many_messages"
