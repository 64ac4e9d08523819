"""Each corpus format on small inline samples, format detection, source specs."""

from __future__ import annotations

import json

import pytest

from log_miner.domain.corpus import (
    MalformedRecordError,
    SourceSpecError,
    parse_records,
    parse_source,
)
from log_miner.domain.examples import Example
from log_miner.domain.validation import invalid_reason
from log_miner.importers import IMPORTERS, detect
from log_miner.domain.shapes import shape_of


def valid(item) -> bool:
    return invalid_reason(Example(item.messages, item.tools, "x", "x")) is None


WEATHER_FN = {"name": "get_weather", "description": "Weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_openai_messages_with_string_arguments_and_missing_tool_ids():
    record = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
            {"role": "tool", "content": "4C, rain"},
            {"role": "assistant", "content": "4C and rain."},
        ],
        "tools": [{"type": "function", "function": WEATHER_FN}],
        "hints": ["look up the weather"],
    }
    item = IMPORTERS["openai"].convert(record)
    assert item.messages[1] == {"role": "user", "content": "Weather in Oslo?"}
    assert item.messages[2]["tool_calls"] == [{"id": "abc", "name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert item.messages[3] == {"role": "tool", "tool_call_id": "abc", "name": "get_weather", "content": "4C, rain"}
    assert item.hints == ("look up the weather",)
    assert valid(item)


def test_openai_legacy_function_call_pairs():
    record = {"messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
    ], "functions": [WEATHER_FN]}
    item = IMPORTERS["openai"].convert(record)
    assert item.messages[2]["tool_call_id"] == item.messages[1]["tool_calls"][0]["id"]
    assert valid(item)


def test_sharegpt_with_function_calls_and_observations():
    record = {
        "system": "You are helpful.",
        "tools": json.dumps([WEATHER_FN]),
        "conversations": [
            {"from": "human", "value": "Weather in Oslo?"},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})},
            {"from": "observation", "value": "{\"temp\": 4}"},
            {"from": "gpt", "value": "It is 4 degrees."},
        ],
    }
    item = IMPORTERS["sharegpt"].convert(record)
    assert [m["role"] for m in item.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert item.messages[2]["tool_calls"][0]["name"] == "get_weather"
    assert item.messages[3]["name"] == "get_weather"
    assert item.tools[0]["function"]["name"] == "get_weather"
    assert valid(item)


def test_sharegpt_plain_chat():
    item = IMPORTERS["sharegpt"].convert({"conversations": [{"from": "human", "value": "hi"},
                                                            {"from": "gpt", "value": "hello"}]})
    assert item.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(MalformedRecordError):
        IMPORTERS["sharegpt"].convert({"conversations": [{"from": "martian", "value": "?"}]})


def test_alpaca_instruction_input_output_with_step_hints():
    item = IMPORTERS["alpaca"].convert({"instruction": "Add the numbers.", "input": "2, 3", "output": "5",
                                        "steps": ["2 + 3", "= 5"]})
    assert item.messages == [{"role": "user", "content": "Add the numbers.\n\n2, 3"},
                             {"role": "assistant", "content": "5"}]
    assert item.hints == ("2 + 3", "= 5")
    assert valid(item)


def test_alpaca_without_output_is_dropped_as_empty():
    item = IMPORTERS["alpaca"].convert({"instruction": "Say nothing", "output": ""})
    assert invalid_reason(Example(item.messages, [], "x", "x")) == "empty_turn"


BFCL_SIMPLE = {
    "id": "simple_python_0", "category": "simple",
    "question": [[{"role": "user", "content": "Area of a triangle with base 10 and height 5?"}]],
    "function": [{"name": "geometry.triangle_area", "description": "Area.", "parameters": {
        "type": "dict", "properties": {"base": {"type": "integer"}, "height": {"type": "float"},
                                       "unit": {"type": "string"}, "dims": {"type": "tuple", "items": {"type": "integer"}},
                                       "opts": {"type": "dict", "properties": {"a": {"type": "integer"}}}},
        "required": ["base", "height"]}}],
    "ground_truth": [{"geometry.triangle_area": {"base": [10], "height": [5.0, 5], "unit": ["units", ""],
                                                 "opts": [{"a": [1], "b": ["", 2]}]}}],
    "expect": "ast_match",
}


def test_bfcl_takes_the_first_acceptable_value_and_omits_optional_params():
    item = IMPORTERS["bfcl"].convert(BFCL_SIMPLE)
    (call,) = item.messages[-1]["tool_calls"]
    assert call["name"] == "geometry.triangle_area"
    assert call["arguments"] == {"base": 10, "height": 5.0, "opts": {"a": 1}}
    params = item.tools[0]["function"]["parameters"]
    assert params["type"] == "object"
    assert params["properties"]["height"]["type"] == "number"
    assert params["properties"]["dims"]["type"] == "array"
    assert params["properties"]["opts"]["type"] == "object"
    assert item.origin == "simple_python_0"
    assert valid(item)


def test_bfcl_sends_a_required_param_even_when_the_truth_allows_omitting_it():
    record = json.loads(json.dumps(BFCL_SIMPLE))
    record["ground_truth"] = [{"geometry.triangle_area": {"base": ["", 10], "height": [5.0]}}]
    (call,) = IMPORTERS["bfcl"].convert(record).messages[-1]["tool_calls"]
    assert call["arguments"] == {"base": 10, "height": 5.0}


def test_bfcl_parallel_ground_truth_becomes_several_calls():
    record = json.loads(json.dumps(BFCL_SIMPLE))
    record["ground_truth"] = [{"geometry.triangle_area": {"base": [10], "height": [5.0]}},
                              {"geometry.triangle_area": {"base": [3], "height": [4.0]}}]
    calls = IMPORTERS["bfcl"].convert(record).messages[-1]["tool_calls"]
    assert [c["arguments"]["base"] for c in calls] == [10, 3]
    assert len({c["id"] for c in calls}) == 2


def test_bfcl_irrelevance_becomes_a_plain_answer_naming_the_tools_that_do_not_fit():
    record = {**BFCL_SIMPLE, "ground_truth": None, "expect": "no_call"}
    item = IMPORTERS["bfcl"].convert(record)
    answer = item.messages[-1]
    assert answer["role"] == "assistant" and "tool_calls" not in answer
    assert "geometry.triangle_area" in answer["content"] and "does not fit" in answer["content"]
    assert [t["function"]["name"] for t in item.tools] == ["geometry.triangle_area"]  # still offered
    assert shape_of(item.messages, item.tools) == "no_call"
    assert valid(item)


BFCL_PARALLEL_MULTIPLE = {
    "id": "parallel_multiple_0", "category": "parallel_multiple",
    "question": [[{"role": "user", "content": "Sum the multiples of 3 and 5 up to 1000, and multiply the first "
                                              "five primes."}]],
    "function": [
        {"name": "math_toolkit.sum_of_multiples", "description": "Sum of multiples.", "parameters": {
            "type": "dict", "properties": {"lower_limit": {"type": "integer"}, "upper_limit": {"type": "integer"},
                                           "multiples": {"type": "array", "items": {"type": "integer"}}},
            "required": ["lower_limit", "upper_limit", "multiples"]}},
        {"name": "math_toolkit.product_of_primes", "description": "Product of primes.", "parameters": {
            "type": "dict", "properties": {"count": {"type": "integer"}, "unit": {"type": "string"}},
            "required": ["count"]}},
    ],
    "ground_truth": [{"math_toolkit.sum_of_multiples": {"lower_limit": [1], "upper_limit": [1000, 999],
                                                        "multiples": [[3, 5], [5, 3]]}},
                     {"math_toolkit.product_of_primes": {"count": [5], "unit": ["", "none"]}}],
    "expect": "ast_match",
}


def test_bfcl_parallel_multiple_becomes_one_turn_with_each_call_and_its_first_acceptable_values():
    item = IMPORTERS["bfcl"].convert(BFCL_PARALLEL_MULTIPLE)
    assert [m["role"] for m in item.messages] == ["user", "assistant"]
    calls = item.messages[-1]["tool_calls"]
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("math_toolkit.sum_of_multiples", {"lower_limit": 1, "upper_limit": 1000, "multiples": [3, 5]}),
        ("math_toolkit.product_of_primes", {"count": 5}),
    ]
    assert shape_of(item.messages, item.tools) == "parallel"
    assert valid(item)


@pytest.mark.parametrize(("record", "fmt"), [
    (BFCL_SIMPLE, "bfcl"),
    ({"messages": []}, "openai"),
    ({"conversations": []}, "sharegpt"),
    ({"instruction": "x", "output": "y"}, "alpaca"),
])
def test_the_format_is_detected_from_a_record(record, fmt):
    assert detect(record).format == fmt


def test_an_unknown_record_matches_no_format():
    with pytest.raises(MalformedRecordError):
        detect({"text": "hello"})


def test_records_come_from_json_lines_or_a_json_array():
    assert list(parse_records(b'{"a": 1}\n\nnot json\n{"b": 2}\n')) == [(1, {"a": 1}), (3, None), (4, {"b": 2})]
    assert list(parse_records(b'[{"a": 1}, {"b": 2}]')) == [(1, {"a": 1}), (2, {"b": 2})]


def test_source_specs():
    assert parse_source("mined").format == "mined"
    spec = parse_source("bfcl:/data/simple.jsonl")
    assert (spec.format, spec.location) == ("bfcl", "/data/simple.jsonl")
    assert parse_source("openai:s3://bucket/x.jsonl").location == "s3://bucket/x.jsonl"
    assert parse_source("s3://bucket/x.jsonl").format == "auto"
    assert parse_source("/abs/x.jsonl").format == "auto"
    with pytest.raises(SourceSpecError):
        parse_source("parquet:/x")
    with pytest.raises(SourceSpecError):
        parse_source("bfcl:relative/x.jsonl")
