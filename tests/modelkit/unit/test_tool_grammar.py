"""modelkit.tool_grammar as pure text: the grammar of each tool_choice, the fallback of schemas the
converter cannot express, the cache. (That llama.cpp loads these grammars and accepts the trained
text is tests/modelkit/integration/test_tool_grammar.py.)"""

from __future__ import annotations

import re

import pytest

from modelkit.tool_grammar import (
    GrammarCache,
    ToolChoiceError,
    ToolConstraint,
    build_grammar,
    call_json_grammar,
    call_schema,
    unsupported_reason,
)


def tool(name: str, parameters: dict) -> dict:
    return {"type": "function", "function": {"name": name, "description": f"{name} tool", "parameters": parameters}}


CALC = tool("calculator", {"type": "object", "properties": {"expression": {"type": "string"}},
                           "required": ["expression"]})
WEATHER = tool("get_weather", {"type": "object", "properties": {
    "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]})
TOOLS = (CALC, WEATHER)


def rules(grammar_text: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar_text.splitlines() if line)


def test_auto_is_text_or_call_blocks_of_any_offered_tool():
    grammar = build_grammar(ToolConstraint(TOOLS, "auto"), cache=GrammarCache())
    r = rules(grammar.text)

    assert r["root"] == "text | call+"
    assert r["call"] == '"<tool_call>" (t0-root | t1-root) "</tool_call>"'
    assert r["t0-name"] == r'"\"calculator\""' and r["t1-name"] == r'"\"get_weather\""'
    assert r["t1-arguments-unit"] == r'"\"celsius\"" | "\"fahrenheit\""'
    assert grammar.unconstrained_tools == ()


def test_required_is_call_blocks_only():
    r = rules(build_grammar(ToolConstraint(TOOLS, "required"), cache=GrammarCache()).text)

    assert r["root"] == "call+"
    assert "text" not in r


def test_a_named_tool_choice_allows_calls_of_that_tool_only():
    constraint = ToolConstraint(TOOLS, name="get_weather")
    r = rules(build_grammar(constraint, cache=GrammarCache()).text)

    assert constraint.mode == "required" and constraint.choice == "get_weather"
    assert r["root"] == "call+" and r["call"] == '"<tool_call>" (t1-root) "</tool_call>"'
    assert not any(name.startswith("t0-") for name in r)
    assert "calculator" not in "".join(r.values())


def test_none_is_text_without_a_tool_call_tag():
    r = rules(build_grammar(ToolConstraint(TOOLS, "none"), cache=GrammarCache()).text)

    assert r["root"] == "text" and "call" not in r
    # the text rules track how much of "<tool_call>" the text ends with; the full tag has no way in
    assert r["text-10"] == '"" | [^<>] text | "<" text-1'
    assert len([name for name in r if name.startswith("text")]) == len("<tool_call>")


def test_the_call_json_is_name_then_arguments_with_at_most_one_space():
    r = rules(build_grammar(ToolConstraint((CALC,), "required"), cache=GrammarCache()).text)

    assert r["t0-root"] == '"{" t0-space t0-name-kv "," t0-space t0-arguments-kv "}" t0-space'
    assert r["t0-space"] == '" "?'
    # an object that does not say additionalProperties is closed: only its own keys
    assert r["t0-arguments"] == '"{" t0-space t0-arguments-expression-kv "}" t0-space'


def test_json_strings_exclude_raw_control_characters():
    r = rules(build_grammar(ToolConstraint((CALC,), "required"), cache=GrammarCache()).text)

    assert r["t0-char"].startswith(r'[^"\\\x7F\x00-\x1F]')


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"code": {"type": "string", "pattern": "[A-Z]{3}"}}},  # not anchored
    {"type": "object", "properties": {"place": {"$ref": "places.json#/city"}}},  # not a local ref
], ids=["unanchored-pattern", "remote-ref"])
def test_a_schema_the_converter_rejects_falls_back_to_free_arguments_for_that_tool_only(schema):
    with pytest.raises((AssertionError, ValueError)):
        call_json_grammar("lookup", schema)  # the converter itself refuses it

    grammar = build_grammar(ToolConstraint((CALC, tool("lookup", schema)), "auto"), cache=GrammarCache())
    r = rules(grammar.text)

    assert grammar.unconstrained_tools == ("lookup",)
    assert r["t1-arguments"] == "t1-object"  # any JSON object, under the tool's own name
    assert r["t1-name"] == r'"\"lookup\""'
    assert r["t0-arguments"].startswith('"{" t0-space t0-arguments-expression-kv')  # the other stays exact


@pytest.mark.parametrize(("schema", "reason"), [
    ({"type": "integer", "minimum": 1}, "'minimum' is not enforced"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "'uniqueItems' is not enforced"),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}], "enum": ["a", 1]}, "beside ['anyOf']"),
    ({"type": ["object", "null"], "properties": {"a": {"type": "string"}}}, "beside ['type']"),
    ({"type": "object", "required": ["a"]}, "required ['a'] not among the properties"),
    ({"type": "string", "pattern": r"^\d+$"}, "outside the supported subset"),
    ({"$ref": "#/$defs/missing"}, "does not resolve"),
], ids=["minimum", "uniqueItems", "anyOf-sibling", "type-list-sibling", "required-without-property",
        "escaped-pattern", "dangling-ref"])
def test_keywords_the_converter_would_drop_make_a_schema_unsupported(schema, reason):
    assert reason in (unsupported_reason({"type": "object", "properties": {"x": schema}}) or "")


def test_what_the_converter_expresses_is_supported():
    schema = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "description": "annotations are fine", "default": "x"},
            "limit": {"type": "integer"},
            "ratio": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 3},
            "when": {"type": "string", "format": "date"},
            "owner": {"$ref": "#/$defs/person"},
            "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "code": {"type": "string", "pattern": "^[A-Z][A-Z][A-Z]$"},
            "extra": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "required": ["query"],
        "$defs": {"person": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
                             "optional": True}},  # BFCL's non-standard `optional` is an annotation
    }
    assert unsupported_reason(schema) is None
    grammar = build_grammar(ToolConstraint((tool("search", schema),), "required"), cache=GrammarCache())
    assert grammar.unconstrained_tools == ()
    assert "t0-person" in rules(grammar.text)  # the $ref target, in the tool's own namespace


def test_two_tools_with_the_same_def_names_keep_their_own_rules():
    def with_item(name: str, value_type: str) -> dict:
        return tool(name, {"type": "object", "properties": {"x": {"$ref": "#/$defs/item"}}, "$defs": {
            "item": {"type": "object", "properties": {"v": {"type": value_type}}, "required": ["v"]}}})

    r = rules(build_grammar(ToolConstraint((with_item("a", "integer"), with_item("b", "string")), "required"),
                            cache=GrammarCache()).text)

    assert r["t0-item-v-kv"].endswith("t0-integer") and r["t1-item-v-kv"].endswith("t1-string")


def test_a_tool_whose_grammar_llama_cpp_would_not_load_falls_back():
    checked: list[str] = []

    def compiles(text: str) -> bool:
        checked.append(text)
        return not text.startswith("root ::= t1-root")  # get_weather's part alone fails

    grammar = build_grammar(ToolConstraint(TOOLS, "auto"), compiles=compiles, cache=GrammarCache())

    assert grammar.unconstrained_tools == ("get_weather",)
    assert len(checked) == 3  # each tool's part, then the whole
    assert [t.split("\n")[0] for t in checked[:2]] == ["root ::= t0-root", "root ::= t1-root"]
    assert checked[2] == grammar.text


def test_grammars_are_cached_by_content():
    cache = GrammarCache()
    first = build_grammar(ToolConstraint(TOOLS, "auto"), cache=cache)
    again = build_grammar(ToolConstraint(tuple(dict(t) for t in TOOLS), "auto"), cache=cache)  # equal, not same
    other = build_grammar(ToolConstraint(TOOLS, "required"), cache=cache)

    assert again is first and other is not first
    assert len(cache) == 2
    assert first.key == re.sub(r"\s", "", first.key) and len(first.key) == 32


def test_the_cache_is_bounded():
    cache = GrammarCache(size=2)
    for mode in ("auto", "required", "none"):
        build_grammar(ToolConstraint(TOOLS, mode), cache=cache)
    assert len(cache) == 2


def test_a_tool_choice_that_cannot_hold_is_a_named_error():
    with pytest.raises(ToolChoiceError, match="'nope', which is not an offered tool"):
        ToolConstraint(TOOLS, name="nope")
    with pytest.raises(ToolChoiceError, match="no tool is offered"):
        ToolConstraint((), "required")
    with pytest.raises(ValueError, match="mode must be one of"):
        ToolConstraint(TOOLS, "sometimes")  # type: ignore[arg-type]


def test_no_tools_is_text_only():
    assert rules(build_grammar(ToolConstraint((), "auto"), cache=GrammarCache()).text)["root"] == "text"


def test_refusal_states_what_the_choice_forbids():
    assert ToolConstraint(TOOLS, "none").refusal("calculator") == "tool_choice is 'none': answer in text, without tool calls"
    assert ToolConstraint(TOOLS, name="get_weather").refusal("calculator") == "tool_choice requires a call of 'get_weather'"
    assert ToolConstraint(TOOLS, name="get_weather").refusal("get_weather") is None
    assert ToolConstraint(TOOLS, "required").refusal("calculator") is None


def test_the_call_schema_for_schema_servers_is_one_call_of_the_allowed_tools():
    schema, unconstrained = call_schema(ToolConstraint(TOOLS, name="calculator"))
    assert schema["properties"]["name"] == {"const": "calculator"}
    assert schema["properties"]["arguments"] == CALC["function"]["parameters"]
    assert schema["additionalProperties"] is False and unconstrained == ()

    loose = tool("loose", {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}})
    schema, unconstrained = call_schema(ToolConstraint((CALC, loose), "required"))
    assert [b["properties"]["name"]["const"] for b in schema["anyOf"]] == ["calculator", "loose"]
    assert schema["anyOf"][1]["properties"]["arguments"] == {"type": "object"} and unconstrained == ("loose",)

    with pytest.raises(ValueError, match="'none' has no call schema"):
        call_schema(ToolConstraint(TOOLS, "none"))


def test_a_whole_grammar_llama_cpp_would_not_load_leaves_every_tool_free_rather_than_failing():
    def compiles(text: str) -> bool:
        return not text.startswith("root ::= text | call+") or "t0-arguments-expression-kv" not in text

    grammar = build_grammar(ToolConstraint(TOOLS, "auto"), compiles=compiles, cache=GrammarCache())

    assert grammar.unconstrained_tools == ("calculator", "get_weather")
    assert rules(grammar.text)["t0-arguments"] == "t0-object"
