"""What a client sees of streamed model output, and how a run's tools are validated."""

from __future__ import annotations

import pytest

from agent_runner.domain import InvalidToolSchemaError, SchemaValidators, Toolset, VisibleText
from contracts import FunctionSpec, ToolSpec
from modelkit.chat_format import parse_output


def stream(chunks: list[str]) -> str:
    visible = VisibleText()
    return "".join(visible.feed(c) for c in chunks) + visible.flush()


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["Hello ", "world"], "Hello world"),
        (["a <tool", "_call>{\"x\": 1}</tool", "_call> b"], "a  b"),
        (["<tool_call>{}</tool_call>"], ""),
        (["1 < 2 and <to", "p>"], "1 < 2 and <top>"),
        (["ends with <tool_c"], "ends with <tool_c"),
        (["<tool_call>{\"never\": \"closed\""], ""),
    ],
)
def test_tool_call_blocks_are_withheld_from_streamed_text(chunks, expected):
    assert stream(chunks) == expected


def test_text_that_may_open_a_tool_call_is_held_until_decided():
    visible = VisibleText()
    assert visible.feed("x <tool_") == "x "
    assert visible.feed("x") == "<tool_x"


def spec(name: str, parameters: dict) -> ToolSpec:
    return ToolSpec(function=FunctionSpec(name=name, parameters=parameters))


def test_request_tools_override_server_tools_of_the_same_name():
    server = {"calculator": spec("calculator", {"type": "object"})}
    mine = spec("calculator", {"type": "object", "properties": {"x": {"type": "integer"}}})
    tools = Toolset([mine], server, offer_server_tools=True)
    assert tools.tools["calculator"].spec is mine and tools.is_server_side("calculator")


def test_an_invalid_schema_is_refused():
    with pytest.raises(InvalidToolSchemaError, match="broken"):
        Toolset([spec("broken", {"type": 5})], {}, offer_server_tools=False)


def test_validation_names_the_failing_field():
    tools = Toolset([spec("f", {"type": "object", "properties": {"n": {"type": "integer"}}})], {},
                    offer_server_tools=False)
    call = parse_output('<tool_call>{"name": "f", "arguments": {"n": "two"}}</tool_call>').calls[0]
    reason, message = tools.validate(call)
    assert reason == "schema_violation" and "n: 'two' is not of type 'integer'" in message


def test_a_schema_is_checked_once_and_its_validator_shared_by_later_runs():
    validators = SchemaValidators()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    first = Toolset([spec("f", schema)], {}, offer_server_tools=False, validators=validators)
    same_content = {"properties": {"n": {"type": "integer"}}, "type": "object"}  # another object, keys reordered
    second = Toolset([spec("g", same_content)], {}, offer_server_tools=False, validators=validators)
    assert second.tools["g"].validator is first.tools["f"].validator
    assert len(validators) == 1


def test_request_schemas_are_kept_in_a_bounded_cache_and_pinned_ones_stay():
    validators = SchemaValidators(size=2)
    pinned = validators.pin("calculator", {"type": "object"})
    built = [validators.get(f"t{i}", {"type": "object", "title": f"t{i}"}) for i in range(3)]
    assert len(validators) == 3  # the pinned one and the two most recent
    assert validators.get("calculator", {"type": "object"}) is pinned
    assert validators.get("t2", {"type": "object", "title": "t2"}) is built[2]
    assert validators.get("t0", {"type": "object", "title": "t0"}) is not built[0], "the oldest was evicted"


def test_an_invalid_schema_is_refused_every_time_and_not_cached():
    validators = SchemaValidators()
    for _ in range(2):
        with pytest.raises(InvalidToolSchemaError, match="broken"):
            Toolset([spec("broken", {"type": 5})], {}, offer_server_tools=False, validators=validators)
    assert len(validators) == 0
