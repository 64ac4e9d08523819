"""A JSON answer (OpenAI's response_format) in the turn grammar: its rules replace free text, beside
the call blocks when tools are offered, and llama.cpp loads the result."""

from __future__ import annotations

import pytest

from modelkit.tool_grammar import ToolConstraint, build_grammar

CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
CALC = {"type": "function", "function": {"name": "calculator", "parameters": {
    "type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}


def test_the_answer_is_json_of_the_schema_instead_of_free_text():
    text = build_grammar(ToolConstraint((), "none", answer_schema=CITY)).text
    assert text.startswith("root ::= a-root\n") and "a-city-kv" in text and "text-1" not in text


def test_with_tools_the_turn_is_a_json_answer_or_calls():
    text = build_grammar(ToolConstraint((CALC,), "auto", answer_schema={"type": "object"})).text
    assert text.startswith("root ::= a-root | call+\n") and "t0-root" in text


def test_a_schema_the_converter_cannot_express_leaves_the_answer_free():
    text = build_grammar(ToolConstraint((), "none", answer_schema={"type": "integer", "minimum": 3})).text
    assert text.startswith("root ::= text\n")


@pytest.mark.parametrize("schema", [CITY, {"type": "object"}])
def test_the_grammar_loads_in_llama_cpp(schema):
    from llama_cpp import LlamaGrammar

    LlamaGrammar.from_string(build_grammar(ToolConstraint((), "none", answer_schema=schema)).text, verbose=False)
